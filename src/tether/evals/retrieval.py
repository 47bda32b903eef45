"""Retrieval evaluation on a BEIR-format dataset: quality metrics and latency."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from pydantic import BaseModel

from tether.evals.beir import BeirQuery, CorpusDoc
from tether.evals.metrics import hit_at_k, mrr_at_k, ndcg_at_k, percentile, recall_at_k
from tether.indexer import make_chunks, write_batch
from tether.ingest.drafts import ChunkDraft
from tether.ingest.ids import content_hash
from tether.models.embedder import Embedder
from tether.retrieval.retrieve import RetrievalConfig, search_vector
from tether.store.protocol import DocumentRecord, Scope, Store

BEIR_PREFIX = "beir:"


class RetrievalReport(BaseModel):
    queries: int
    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    hit_at_10: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    embed_p50_ms: float
    mode: str
    fusion: str

    def as_json(self) -> dict[str, float | int | str]:
        return {
            "queries": self.queries,
            "ndcg@10": self.ndcg_at_10,
            "recall@100": self.recall_at_100,
            "mrr@10": self.mrr_at_10,
            "hit@10": self.hit_at_10,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
            "latency_p99_ms": self.latency_p99_ms,
            "embed_p50_ms": self.embed_p50_ms,
            "mode": self.mode,
            "fusion": self.fusion,
        }


async def index_corpus(
    store: Store,
    embedder: Embedder,
    tenant_id: str,
    corpus: Sequence[CorpusDoc],
    *,
    batch_docs: int = 256,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Index each corpus document as one chunk (BEIR judges whole documents)."""
    written = 0
    known = await store.document_hashes(tenant_id, BEIR_PREFIX)
    for start in range(0, len(corpus), batch_docs):
        docs = []
        for doc in corpus[start : start + batch_docs]:
            source_id = BEIR_PREFIX + doc.id
            digest = content_hash(f"{doc.title}\x00{doc.text}".encode())
            if known.get(source_id) == digest:
                continue
            chunks = make_chunks(
                [ChunkDraft(text=doc.text)],
                source_id=source_id,
                tenant_id=tenant_id,
                title=doc.title,
                acl=("*",),
            )
            record = DocumentRecord(tenant_id, source_id, doc.title, digest, 1, datetime.now(UTC))
            docs.append((record, chunks))
        if docs:
            written += await write_batch(store, embedder, tenant_id, docs)
        if on_progress:
            on_progress(min(start + batch_docs, len(corpus)), len(corpus))
    return written


async def evaluate_retrieval(
    store: Store,
    embedder: Embedder,
    scope: Scope,
    queries: Sequence[BeirQuery],
    qrels: dict[str, dict[str, int]],
    *,
    config: RetrievalConfig = RetrievalConfig(),
) -> RetrievalReport:
    judged = [q for q in queries if q.id in qrels]
    embed_ms: list[float] = []
    vectors = []
    for query in judged:
        t0 = time.perf_counter()
        vectors.append((await embedder.embed([query.text], kind="query"))[0])
        embed_ms.append((time.perf_counter() - t0) * 1000)
    latency: list[float] = []
    sums = {"ndcg": 0.0, "recall": 0.0, "mrr": 0.0, "hit": 0.0}
    depth = max(100, config.candidates)
    for query, vector in zip(judged, vectors, strict=True):
        t0 = time.perf_counter()
        results = await search_vector(
            store,
            query.text,
            vector,
            scope=scope,
            k=100,
            config=RetrievalConfig(
                candidates=depth,
                fusion=config.fusion,
                rrf_k=config.rrf_k,
                dense_weight=config.dense_weight,
                mode=config.mode,
            ),
        )
        latency.append((time.perf_counter() - t0) * 1000)
        ranked: list[str] = []
        for item in results:
            doc = item.chunk.source_id.removeprefix(BEIR_PREFIX)
            if doc not in ranked:
                ranked.append(doc)
        rel = qrels[query.id]
        sums["ndcg"] += ndcg_at_k(ranked, rel, 10)
        sums["recall"] += recall_at_k(ranked, rel, 100)
        sums["mrr"] += mrr_at_k(ranked, rel, 10)
        sums["hit"] += hit_at_k(ranked, rel, 10)
    n = max(len(judged), 1)
    return RetrievalReport(
        queries=len(judged),
        ndcg_at_10=sums["ndcg"] / n,
        recall_at_100=sums["recall"] / n,
        mrr_at_10=sums["mrr"] / n,
        hit_at_10=sums["hit"] / n,
        latency_p50_ms=percentile(latency, 50),
        latency_p95_ms=percentile(latency, 95),
        latency_p99_ms=percentile(latency, 99),
        embed_p50_ms=percentile(embed_ms, 50),
        mode=config.mode,
        fusion=config.fusion if config.mode == "hybrid" else "-",
    )
