"""A quality gate on real data: hybrid retrieval on a SciFact slice must beat either side.

Reads ../shared/data/scifact (skips with a message where absent). Uses the real embedded
stack (MiniLM int8 + FTS5) on 60 judged queries, their relevant documents and 240
seeded distractors, so it runs in ~15 s; the full figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tether.evals.beir import load_corpus, load_qrels, load_queries
from tether.evals.retrieval import evaluate_retrieval, index_corpus
from tether.models.minilm import MiniLMEmbedder
from tether.retrieval.retrieve import RetrievalConfig
from tether.store.protocol import Scope
from tether.store.sqlite import SQLiteStore

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "scifact"


@pytest.fixture(scope="module")
def scifact_slice() -> tuple[list, list, dict[str, dict[str, int]]]:  # type: ignore[type-arg]
    if not (DATA / "corpus.jsonl").is_file():
        pytest.skip(f"SciFact not found at {DATA} (public data lives in ../shared/data)")
    qrels = load_qrels(DATA / "qrels.train.tsv")
    queries = [q for q in load_queries(DATA / "queries.train.jsonl") if q.id in qrels][:60]
    wanted = {doc for q in queries for doc in qrels[q.id]}
    corpus = load_corpus(DATA / "corpus.jsonl")
    others = [d for d in corpus if d.id not in wanted]
    docs = [d for d in corpus if d.id in wanted] + random.Random(13).sample(others, 240)
    return docs, queries, {q.id: qrels[q.id] for q in queries}


async def test_hybrid_beats_each_side_on_scifact_slice(
    scifact_slice: tuple[list, list, dict[str, dict[str, int]]],  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    docs, queries, qrels = scifact_slice
    embedder = MiniLMEmbedder()
    store = SQLiteStore(tmp_path / "s.db", embed_model=embedder.model_id, dim=embedder.dim)
    scope = Scope("scifact")
    try:
        assert await index_corpus(store, embedder, scope.tenant_id, docs) == len(docs)
        scores = {}
        for mode in ("bm25", "dense", "hybrid"):
            report = await evaluate_retrieval(
                store, embedder, scope, queries, qrels, config=RetrievalConfig(mode=mode)
            )
            assert report.queries == len(queries)
            scores[mode] = report.ndcg_at_10
    finally:
        await store.close()
    assert scores["hybrid"] > scores["bm25"], scores
    assert scores["hybrid"] > scores["dense"], scores
    assert scores["hybrid"] >= 0.80, scores
