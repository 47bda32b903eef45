"""The real `tether` CLI in a subprocess: ingest, ask, demo and eval retrieval.

All commands share one embedding cache (TETHER_EMBED_CACHE) so only the first ingest pays
for the MiniLM embeddings; nothing touches the user's data or cache directories.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from tests.support.cli import REPO, Env, Run, make_env, tether

FIXTURES = REPO / "tests" / "fixtures"
DOCS = FIXTURES / "docs"
BAD = FIXTURES / "bad"
CHUNK_TAG = re.compile(r"\[(c[0-9a-f]{15})\]")
ANSWERABLE = "Why does the nightly backup job fail on the replica?"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    return make_env(tmp_path_factory.mktemp("cli"))


@pytest.fixture(scope="module")
def first_ingest(env: Env) -> Run:
    return tether(env, "ingest", str(DOCS))


@pytest.fixture(scope="module")
def second_ingest(env: Env, first_ingest: Run) -> Run:
    return tether(env, "ingest", str(DOCS))


@pytest.fixture(scope="module")
def asked(env: Env, first_ingest: Run) -> dict[str, object]:
    run = tether(env, "ask", ANSWERABLE, "--json")
    assert run.code == 0, run.err
    payload: dict[str, object] = json.loads(run.out)
    return payload


def _counts(text: str) -> dict[str, int]:
    found = re.search(
        r"(\d+) ingested, (\d+) unchanged, (\d+) removed, (\d+) failed; (\d+) chunks written",
        " ".join(text.split()),
    )
    assert found, text
    keys = ("ingested", "unchanged", "removed", "failed", "chunks")
    return dict(zip(keys, map(int, found.groups()), strict=True))


# -- ingest ----------------------------------------------------------------------------------


def test_ingest_fixture_docs_exits_0_and_prints_counts(first_ingest: Run) -> None:
    assert first_ingest.code == 0, first_ingest.err
    counts = _counts(first_ingest.out)
    n_files = len([p for p in DOCS.iterdir() if p.is_file() and not p.name.startswith(".")])
    assert counts["ingested"] == n_files
    assert counts["failed"] == 0 and counts["unchanged"] == 0 and counts["removed"] == 0
    assert counts["chunks"] >= n_files
    assert "tenant default" in first_ingest.out


def test_reingest_reports_everything_unchanged(first_ingest: Run, second_ingest: Run) -> None:
    assert second_ingest.code == 0, second_ingest.err
    before, after = _counts(first_ingest.out), _counts(second_ingest.out)
    assert after["ingested"] == 0
    assert after["unchanged"] == before["ingested"]
    assert after["chunks"] == 0 and after["failed"] == 0


def test_ingest_with_a_bad_file_exits_1_and_names_the_reason(env: Env, first_ingest: Run) -> None:
    folder = env.root / "mixed"
    folder.mkdir()
    shutil.copy(DOCS / "guide.md", folder / "guide.md")
    shutil.copy(BAD / "unknown.xyz", folder / "unknown.xyz")
    shutil.copy(BAD / "ragged.csv", folder / "ragged.csv")
    run = tether(env, "ingest", str(folder), "--store", f"sqlite:///{env.root / 'mixed.db'}")
    assert run.code == 1, run.out + run.err
    counts = _counts(run.out)
    assert counts["ingested"] == 1 and counts["failed"] == 2
    flat = " ".join(run.out.split())
    assert "unknown.xyz" in flat
    assert "unsupported file type '.xyz'" in flat
    assert "ragged.csv" in flat
    assert "line 5" in flat  # the ragged row


def test_ingest_of_a_missing_path_exits_1(env: Env) -> None:
    missing = env.root / "does-not-exist"
    run = tether(env, "ingest", str(missing), "--store", f"sqlite:///{env.root / 'missing.db'}")
    assert run.code == 1
    flat = " ".join(run.out.split())
    assert "no such file or folder" in flat
    assert _counts(run.out)["failed"] == 1


# -- ask -------------------------------------------------------------------------------------


def test_ask_json_shape_and_citations_within_retrieved(asked: dict[str, object]) -> None:
    assert {"summary", "citations", "confidence", "declined", "retrieved"} <= set(asked)
    confidence = asked["confidence"]
    assert isinstance(confidence, float) and 0.0 <= confidence <= 1.0
    retrieved = asked["retrieved"]
    assert isinstance(retrieved, list) and retrieved
    retrieved_ids = {r["chunk_id"] for r in retrieved}
    citations = asked["citations"]
    assert isinstance(citations, list)
    assert asked["declined"] is False
    assert citations
    assert {c["chunk_id"] for c in citations} <= retrieved_ids
    assert set(CHUNK_TAG.findall(str(asked["summary"]))) <= retrieved_ids
    assert any(c["source_id"].endswith("tickets.jsonl") for c in citations)
    scores = [r["score"] for r in retrieved]
    assert scores == sorted(scores, reverse=True)


def test_ask_human_output(env: Env, first_ingest: Run) -> None:
    run = tether(env, "ask", ANSWERABLE)
    assert run.code == 0, run.err
    assert "Q: " + ANSWERABLE in run.out
    assert "A: " in run.out
    assert CHUNK_TAG.search(run.out)


def test_ask_empty_question_exits_2_with_invalid_question(env: Env) -> None:
    run = tether(env, "ask", "")
    assert run.code == 2
    assert "InvalidQuestion" in run.err
    assert "Traceback" not in run.err


def test_ask_bogus_filter_exits_2_with_invalid_filter(env: Env) -> None:
    run = tether(env, "ask", ANSWERABLE, "--filter", "bogus")
    assert run.code == 2
    assert "InvalidFilter" in run.err
    assert "Traceback" not in run.err


def test_other_tenant_sees_none_of_the_default_documents(env: Env, first_ingest: Run) -> None:
    run = tether(env, "ask", ANSWERABLE, "--tenant", "other", "--json")
    assert run.code == 0, run.err
    payload = json.loads(run.out)
    assert payload["retrieved"] == []
    assert payload["citations"] == []
    assert payload["declined"] is True
    assert not CHUNK_TAG.search(payload["summary"])


# -- demo ------------------------------------------------------------------------------------


def test_demo_from_repo_root(env: Env) -> None:
    run = tether(env, "demo", cwd=REPO)
    assert run.code == 0, run.err
    questions = [line for line in run.out.splitlines() if line.startswith("Q:")]
    assert len(questions) == 3
    assert len(set(CHUNK_TAG.findall(run.out))) >= 1
    assert "0 failed" in " ".join(run.out.split())


def test_demo_outside_the_checkout_is_a_config_error(env: Env) -> None:
    run = tether(env, "demo", cwd=env.root)
    assert run.code == 2
    assert "ConfigError" in run.err


# -- eval retrieval --------------------------------------------------------------------------

_TOPICS = [
    ("volcano", "Magma rises through the volcano crater and erupts as glowing lava."),
    ("bakery", "The bakery proofs sourdough loaves overnight before baking them at dawn."),
    ("orbit", "Satellites stay in orbit because their velocity balances gravitational pull."),
    ("chess", "A chess opening such as the Sicilian defence fights for the centre squares."),
    ("coral", "Coral reefs bleach when warm seawater drives out their symbiotic algae."),
    ("violin", "Violin strings are tuned in fifths and played with a horsehair bow."),
    ("glacier", "Glaciers carve U-shaped valleys as compacted ice slowly grinds downhill."),
    ("tax", "Quarterly tax returns must be filed before the end of the following month."),
    ("bee", "Honey bees communicate the direction of flowers through a waggle dance."),
    ("router", "A network router forwards packets between subnets using routing tables."),
]


@pytest.fixture(scope="module")
def beir(env: Env) -> dict[str, Path]:
    folder = env.root / "beir"
    folder.mkdir()
    corpus = folder / "corpus.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"_id": f"d{i}", "title": name.title(), "text": text}) + "\n"
            for i, (name, text) in enumerate(_TOPICS)
        ),
        encoding="utf-8",
    )
    queries = folder / "queries.jsonl"
    rows = [
        {"_id": "q1", "text": _TOPICS[2][1]},  # the exact text of d2
        {"_id": "q2", "text": "Why do coral reefs bleach in warm seawater?"},
        {"_id": "q3", "text": "How do honey bees tell each other where flowers are?"},
        {"_id": "q4", "text": "An unjudged query is skipped."},
    ]
    queries.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    qrels = folder / "test.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\nq2\td4\t1\nq3\td8\t2\n")
    return {"corpus": corpus, "queries": queries, "qrels": qrels}


def test_eval_retrieval_writes_metrics_json(env: Env, beir: dict[str, Path]) -> None:
    out = env.root / "out.json"
    run = tether(
        env,
        "eval",
        "retrieval",
        "--corpus",
        str(beir["corpus"]),
        "--queries",
        str(beir["queries"]),
        "--qrels",
        str(beir["qrels"]),
        "--json",
        str(out),
    )
    assert run.code == 0, run.err
    metrics = json.loads(out.read_text(encoding="utf-8"))
    for key in ("ndcg@10", "recall@100", "mrr@10", "hit@10"):
        assert 0.0 <= metrics[key] <= 1.0, key
    for key in ("latency_p50_ms", "latency_p99_ms"):
        assert math.isfinite(metrics[key]) and metrics[key] >= 0.0, key
    assert metrics["latency_p50_ms"] <= metrics["latency_p99_ms"]
    assert metrics["queries"] == 3  # the unjudged query is not counted
    # Every query here has one clearly matching document (q1 is its exact text).
    assert metrics["hit@10"] == 1.0
    assert metrics["mrr@10"] == 1.0
    assert metrics["ndcg@10"] == pytest.approx(1.0)
    assert metrics["recall@100"] == 1.0
    assert "ndcg@10" in run.out


def test_eval_retrieval_with_a_perfect_match_query_alone(env: Env, beir: dict[str, Path]) -> None:
    qrels = env.root / "beir" / "one.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\n")
    out = env.root / "one.json"
    run = tether(
        env,
        "eval",
        "retrieval",
        "--corpus",
        str(beir["corpus"]),
        "--queries",
        str(beir["queries"]),
        "--qrels",
        str(qrels),
        "--mode",
        "bm25",
        "--json",
        str(out),
    )
    assert run.code == 0, run.err
    metrics = json.loads(out.read_text(encoding="utf-8"))
    assert metrics["queries"] == 1
    assert metrics["hit@10"] == 1.0
    assert metrics["mrr@10"] == 1.0
    assert metrics["mode"] == "bm25"


def test_eval_retrieval_bad_qrels_exits_2_with_dataset_error(
    env: Env, beir: dict[str, Path]
) -> None:
    bad = env.root / "beir" / "bad.tsv"
    bad.write_text("qid\tdocid\tscore\nq1\td2\t1\n")
    run = tether(
        env,
        "eval",
        "retrieval",
        "--corpus",
        str(beir["corpus"]),
        "--queries",
        str(beir["queries"]),
        "--qrels",
        str(bad),
    )
    assert run.code == 2
    assert "DatasetError" in run.err
    assert "bad.tsv" in " ".join(run.err.split())


def test_ask_with_the_fake_model_runs_the_llm_path_offline(env: Env, first_ingest: Run) -> None:
    usage_db = env.root / "usage.db"
    run = tether(
        Env(env.root, {**env.vars, "TETHER_USAGE_DB": str(usage_db)}),
        "ask",
        ANSWERABLE,
        "--json",
        "--model",
        "fake",
    )
    assert run.code == 0, run.err
    payload = json.loads(run.out)
    retrieved = {r["chunk_id"] for r in payload["retrieved"]}
    cited = [c["chunk_id"] for c in payload["citations"]]
    assert payload["model"] == "fake" and len(cited) == 1 and cited[0] in retrieved
    assert f"[{cited[0]}]" in payload["summary"]
    assert payload["usage"]["input_tokens"] > 0
    usage = tether(Env(env.root, {**env.vars, "TETHER_USAGE_DB": str(usage_db)}), "usage")
    assert usage.code == 0 and "fake" in usage.out


def test_ask_with_an_unknown_model_is_a_config_error(env: Env) -> None:
    run = tether(env, "ask", "anything", "--model", "mystery:model")
    assert run.code == 2 and "ConfigError" in run.err and "unknown model" in run.err


def test_a_feature_pin_chooses_model_and_prompt_and_rolling_back_is_a_config_change(
    env: Env, first_ingest: Run, tmp_path: Path
) -> None:
    config = tmp_path / "tether.toml"
    pinned = Env(env.root, {**env.vars, "TETHER_CONFIG": str(config)})
    config.write_text('[features.ask]\nmodel = "fake"\nprompt = "qa.answer@1"\n')
    run = tether(pinned, "ask", ANSWERABLE, "--json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["model"] == "fake"
    config.write_text('[features.ask]\nmodel = "fake"\nprompt = "qa.answer@9"\n')
    bad = tether(pinned, "ask", ANSWERABLE, "--json")
    assert bad.code == 2 and "has no version 9" in bad.err
    config.write_text('[features.ask]\nmodel = "extractive"\n')  # the rollback
    back = tether(pinned, "ask", ANSWERABLE, "--json")
    assert back.code == 0 and json.loads(back.out)["model"] == "extractive"
