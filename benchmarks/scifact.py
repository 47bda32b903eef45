"""SciFact (train queries): retrieval quality by mode and fusion, and retrieve() latency.

    uv run python benchmarks/scifact.py [--quick]

Builds (or reuses) benchmarks/out/scifact.db with the default embedded stack.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.common import DATA, OUT, require, write
from tether.evals.beir import BeirQuery, load_corpus, load_qrels, load_queries
from tether.evals.metrics import ndcg_at_k, percentile
from tether.evals.retrieval import evaluate_retrieval, index_corpus
from tether.lexical import query_terms
from tether.models.minilm import MiniLMEmbedder
from tether.retrieval.retrieve import RetrievalConfig, search_vector
from tether.store.bm25 import BM25Params, build_postings
from tether.store.protocol import Scope
from tether.store.sqlite import SQLiteStore

CONFIGS = [
    ("bm25", RetrievalConfig(mode="bm25")),
    ("dense", RetrievalConfig(mode="dense")),
    ("hybrid rrf k=60", RetrievalConfig(fusion="rrf", rrf_k=60)),
    ("hybrid rrf k=20", RetrievalConfig(fusion="rrf", rrf_k=20)),
    ("hybrid convex w=0.5 (default)", RetrievalConfig(fusion="convex", dense_weight=0.5)),
    ("hybrid convex w=0.4", RetrievalConfig(fusion="convex", dense_weight=0.4)),
    ("hybrid convex w=0.6", RetrievalConfig(fusion="convex", dense_weight=0.6)),
    ("hybrid zconvex w=0.5", RetrievalConfig(fusion="zconvex", dense_weight=0.5)),
]


def bm25_sweep(
    db_path: Path, tenant: str, queries: list[BeirQuery], qrels: dict[str, dict[str, int]]
) -> dict[str, float]:
    """BM25-only nDCG@10 for a grid of k1, b and title weight, on FTS5's postings."""
    db = sqlite3.connect(db_path)
    (part,) = db.execute("SELECT part FROM tenants WHERE tenant_id = ?", (tenant,)).fetchone()
    db.execute(f"CREATE VIRTUAL TABLE temp.v USING fts5vocab(main, fts_{part}, 'instance')")
    db.execute(
        "CREATE VIRTUAL TABLE temp.p USING fts5(t, tokenize='porter unicode61 remove_diacritics 2')"
    )
    db.execute("CREATE VIRTUAL TABLE temp.pv USING fts5vocab(temp, p, 'instance')")
    column = {"title": 0, "section": 1, "text": 2}
    rows = [
        (t, d, column[c], n)
        for t, d, c, n in db.execute(
            "SELECT term, doc, col, COUNT(*) FROM temp.v GROUP BY term, doc, col"
        )
    ]
    ids = db.execute(
        "SELECT rowid, source_id FROM chunks WHERE tenant_id = ? ORDER BY rowid", (tenant,)
    ).fetchall()
    rowids = np.array([r for r, _ in ids], dtype=np.int64)
    docs = [s.removeprefix("beir:") for _, s in ids]
    judged = [q for q in queries if q.id in qrels]
    terms = []
    for q in judged:
        db.execute("INSERT INTO temp.p (rowid, t) VALUES (1, ?)", (" ".join(query_terms(q.text)),))
        terms.append([t for (t,) in db.execute("SELECT term FROM temp.pv ORDER BY offset")])
        db.execute("DELETE FROM temp.p")
    results = {}
    for k1 in (0.9, 1.2, 1.5):
        for b in (0.5, 0.75, 0.9):
            for title in (1.0, 2.0, 3.0):
                postings = build_postings(
                    rows, rowids, BM25Params(k1=k1, b=b, weights=(title, 1.0, 1.0))
                )
                total = 0.0
                for q, qt in zip(judged, terms, strict=True):
                    scores = postings.scores(qt)
                    top = np.argsort(-scores, kind="stable")[:10]
                    total += ndcg_at_k([docs[i] for i in top if scores[i] > 0], qrels[q.id], 10)
                key = f"k1={k1} b={b} title={title}"
                results[key] = round(total / len(judged), 4)
                print(f"bm25 {key}: {results[key]}")
    return results


async def main(quick: bool) -> None:
    folder = require(DATA / "scifact")
    corpus = load_corpus(folder / "corpus.jsonl")
    queries = load_queries(folder / "queries.train.jsonl")
    qrels = load_qrels(folder / "qrels.train.tsv")
    embedder = MiniLMEmbedder()
    OUT.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(OUT / "scifact.db", embed_model=embedder.model_id, dim=embedder.dim)
    scope = Scope("scifact")
    t0 = time.perf_counter()
    written = await index_corpus(store, embedder, scope.tenant_id, corpus)
    print(f"indexed {written} new docs in {time.perf_counter() - t0:.1f}s")

    # Latency first, on a fresh process, before the long quality loops.
    # Latency of retrieve() with the query already embedded, k=10, default config.
    judged = [q for q in queries if q.id in qrels]
    vectors = embedder.embed_sync([q.text for q in judged])
    config = RetrievalConfig()
    for q, v in zip(judged[:50], vectors[:50], strict=True):  # warm-up
        await search_vector(store, q.text, v, scope=scope, k=10, config=config)
    latency = []
    for q, v in zip(judged, vectors, strict=True):
        start = time.perf_counter()
        await search_vector(store, q.text, v, scope=scope, k=10, config=config)
        latency.append((time.perf_counter() - start) * 1000)
    embed_ms = []
    for q in judged:
        start = time.perf_counter()
        await embedder.embed([q.text], kind="query")
        embed_ms.append((time.perf_counter() - start) * 1000)
    timing = {
        "retrieve_p50_ms": round(statistics.median(latency), 2),
        "retrieve_p99_ms": round(percentile(latency, 99), 2),
        "query_embed_p50_ms": round(statistics.median(embed_ms), 2),
        "query_embed_p99_ms": round(percentile(embed_ms, 99), 2),
        "queries": len(judged),
        "mean_query_words": round(float(np.mean([len(q.text.split()) for q in judged])), 1),
    }
    print(timing)

    quality = {}
    for name, config in CONFIGS[:5] if quick else CONFIGS:
        report = await evaluate_retrieval(store, embedder, scope, queries, qrels, config=config)
        quality[name] = {
            "ndcg@10": round(report.ndcg_at_10, 4),
            "recall@100": round(report.recall_at_100, 4),
            "mrr@10": round(report.mrr_at_10, 4),
            "hit@10": round(report.hit_at_10, 4),
        }
        print(f"{name:32s} {quality[name]}")

    sweep = {} if quick else bm25_sweep(OUT / "scifact.db", scope.tenant_id, queries, qrels)
    write(
        "scifact",
        {
            "split": "train",
            "docs": len(corpus),
            "quality": quality,
            "latency": timing,
            "bm25_sweep": sweep,
        },
    )
    await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="only the first five configs")
    asyncio.run(main(parser.parse_args().quick))
