"""SciFact on PostgreSQL next to the embedded store, same embeddings (copied, not re-embedded).

    uv run python -m benchmarks.pg_scifact      (after benchmarks.scifact built out/scifact.db)

Starts a throwaway PostgreSQL 18 + pgvector (the test suite's launcher), migrates the
SciFact store into it, and evaluates both backends on the train queries in one run.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import DATA, OUT, require, write
from tests.support.postgres import running_postgres
from tether.evals.beir import load_qrels, load_queries
from tether.evals.metrics import percentile
from tether.evals.retrieval import evaluate_retrieval
from tether.migrate import migrate
from tether.models.minilm import MiniLMEmbedder
from tether.retrieval.retrieve import RetrievalConfig, search_vector
from tether.store.postgres import PostgresStore
from tether.store.protocol import Scope, Store
from tether.store.sqlite import SQLiteStore


async def latency(
    store: Store, embedder: MiniLMEmbedder, queries: list, scope: Scope
) -> dict[str, float]:  # type: ignore[type-arg]
    vectors = embedder.embed_sync([q.text for q in queries])
    for q, v in zip(queries[:30], vectors[:30], strict=True):
        await search_vector(store, q.text, v, scope=scope, k=10)
    times = []
    for q, v in zip(queries, vectors, strict=True):
        start = time.perf_counter()
        await search_vector(store, q.text, v, scope=scope, k=10)
        times.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": round(statistics.median(times), 2), "p99_ms": round(percentile(times, 99), 2)}


async def main() -> None:
    folder = require(DATA / "scifact")
    sqlite_path = require(OUT / "scifact.db")
    queries = load_queries(folder / "queries.train.jsonl")
    qrels = load_qrels(folder / "qrels.train.tsv")
    judged = [q for q in queries if q.id in qrels]
    embedder = MiniLMEmbedder()
    scope = Scope("scifact")
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp, running_postgres(Path(tmp)) as pg:
        start = time.perf_counter()
        copied = await migrate(f"sqlite:///{sqlite_path}", pg.dsn, batch=500)
        result["migrate_seconds"] = round(time.perf_counter() - start, 1)
        result["migrated_chunks"] = sum(c.chunks for c in copied)
        sqlite = SQLiteStore(sqlite_path, embed_model=embedder.model_id, dim=embedder.dim)
        postgres = await PostgresStore.open(pg.dsn, embed_model=embedder.model_id, dim=embedder.dim)
        for name, store in (("sqlite", sqlite), ("postgres", postgres)):
            quality = {}
            for mode in ("bm25", "dense", "hybrid"):
                report = await evaluate_retrieval(
                    store, embedder, scope, queries, qrels, config=RetrievalConfig(mode=mode)
                )
                quality[mode] = round(report.ndcg_at_10, 4)
            result[name] = {
                "ndcg@10": quality,
                "retrieve": await latency(store, embedder, judged, scope),
            }
            print(name, result[name], flush=True)
        await postgres.close()
        await sqlite.close()
    print(result)
    write("pg_scifact", result)


if __name__ == "__main__":
    asyncio.run(main())
