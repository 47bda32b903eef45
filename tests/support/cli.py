"""Running the real `tether` CLI in a subprocess with an isolated environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Env:
    root: Path
    vars: Mapping[str, str]


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def make_env(root: Path, **extra: str) -> Env:
    """Every state file under `root`, no TETHER_* setting inherited from the caller."""
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("TETHER_")}
    base.update(
        TETHER_STORE=f"sqlite:///{root / 't.db'}",
        TETHER_EMBED_CACHE=str(root / "cache.db"),
        TETHER_CONFIG=str(root / "none.toml"),
        TETHER_TRACES_DB=str(root / "traces.db"),
        TETHER_USAGE_DB=str(root / "usage.db"),
        TETHER_RESPONSE_CACHE=str(root / "responses.db"),
        TETHER_KEYS_DB=str(root / "keys.db"),
        TETHER_ANSWERS_DB=str(root / "answers.db"),
        TETHER_UPLOADS_DB=str(root / "uploads.db"),
        TETHER_AGENT_DB=str(root / "agent.db"),
        TETHER_MEMORY_DB=str(root / "memory.db"),
        # Wide, plain output: rich would otherwise wrap tables at 80 columns.
        COLUMNS="400",
        NO_COLOR="1",
        TERM="dumb",
    )
    base.update(extra)
    return Env(root, base)


def tether(env: Env, *args: str, cwd: Path = REPO, timeout: float = 300) -> Run:
    proc = subprocess.run(
        [sys.executable, "-c", "from tether.cli import main; main()", *args],
        env=dict(env.vars),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)
