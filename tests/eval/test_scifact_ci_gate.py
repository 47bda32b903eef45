"""The CI quality gate: hybrid retrieval on the full SciFact train split must clear the
nDCG@10 floor in configs/eval-thresholds.toml, through the real CLI; a deliberately broken
setting (dense weight 1.0, i.e. no keyword side) must fail the same gate with exit 1.

Indexes 5,183 abstracts with the embedded MiniLM (about 3.5 minutes on 2 cores); the
broken run reuses the index. Skips where ../shared/data/scifact is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import REPO, Env, make_env, tether

DATA = REPO.parent / "shared" / "data" / "scifact"
THRESHOLDS = REPO / "configs" / "eval-thresholds.toml"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    if not (DATA / "corpus.jsonl").is_file():
        pytest.skip(f"SciFact not found at {DATA} (public data lives in ../shared/data)")
    return make_env(tmp_path_factory.mktemp("scifact-gate"), TETHER_TRACES_DB="off")


def gate(env: Env, out: Path) -> tuple[int, str, dict[str, object]]:
    run = tether(
        env,
        "eval",
        "retrieval",
        "--corpus",
        str(DATA / "corpus.jsonl"),
        "--queries",
        str(DATA / "queries.train.jsonl"),
        "--qrels",
        str(DATA / "qrels.train.tsv"),
        "--store",
        f"sqlite:///{env.root / 'scifact.db'}",
        "--thresholds",
        str(THRESHOLDS),
        "--json",
        str(out),
        timeout=1200,
    )
    assert run.code in (0, 1), run.err
    return run.code, run.out, json.loads(out.read_text())


def test_the_default_stack_passes_and_a_broken_setting_fails(env: Env) -> None:
    code, out, metrics = gate(env, env.root / "default.json")
    assert code == 0, out
    assert metrics["queries"] == 809
    assert metrics["ndcg@10"] >= 0.73  # type: ignore[operator]
    broken = make_env(env.root, TETHER_TRACES_DB="off", TETHER_DENSE_WEIGHT="1.0")
    code, out, metrics = gate(broken, env.root / "broken.json")
    assert code == 1
    assert "threshold failed: ndcg@10" in out
    assert metrics["ndcg@10"] < 0.73  # type: ignore[operator]
