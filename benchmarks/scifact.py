"""SciFact (train queries): retrieval quality by mode and fusion, and retrieve() latency.

    uv run python benchmarks/scifact.py [--quick]

Builds (or reuses) benchmarks/out/scifact.db with the default embedded stack.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import numpy as np

from benchmarks.common import DATA, OUT, require, write
from tether.evals.beir import load_corpus, load_qrels, load_queries
from tether.evals.metrics import percentile
from tether.evals.retrieval import evaluate_retrieval, index_corpus
from tether.models.minilm import MiniLMEmbedder
from tether.retrieval.retrieve import RetrievalConfig, search_vector
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
    write("scifact", {"split": "train", "docs": len(corpus), "quality": quality, "latency": timing})
    await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="only the first five configs")
    asyncio.run(main(parser.parse_args().quick))
