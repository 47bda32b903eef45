"""The public evaluation data in ../shared/data: a folder of it, or a clear skip."""

from __future__ import annotations

from pathlib import Path

import pytest

#: ../shared/data beside the repository (CI clones it with ../shared next to it).
DATA = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()


def shared_data(folder: str) -> Path:
    path = DATA / folder
    if not path.is_dir():
        pytest.skip(
            f"public data folder {path} is absent (expected ../shared/data beside the repo)"
        )
    return path
