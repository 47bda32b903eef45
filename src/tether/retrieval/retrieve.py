"""`retrieve()`: the plain function from a question to ranked, permitted chunks."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from tether.models.embedder import Embedder, Vectors
from tether.observability.tracing import tracer
from tether.retrieval.fusion import FusionMethod, fuse
from tether.retrieval.rerank import KeepOrder, Reranker
from tether.store.filters import Filter
from tether.store.protocol import Scope, Store
from tether.types import ScoredChunk


@dataclass(frozen=True)
class RetrievalConfig:
    candidates: int = 100
    fusion: FusionMethod = "convex"
    rrf_k: int = 60
    dense_weight: float = 0.5
    #: "hybrid", or one side alone for ablations.
    mode: str = "hybrid"


async def search_vector(
    store: Store,
    query: str,
    vector: Vectors | None,
    *,
    scope: Scope,
    filters: Sequence[Filter] = (),
    k: int = 8,
    config: RetrievalConfig = RetrievalConfig(),
    reranker: Reranker | None = None,
) -> list[ScoredChunk]:
    """Retrieval given an already embedded query (what the latency target measures)."""
    use_keyword = config.mode in ("hybrid", "bm25")
    use_dense = config.mode in ("hybrid", "dense") and vector is not None
    keyword, dense = await asyncio.gather(
        store.keyword_search(scope, query, filters, config.candidates) if use_keyword else _none(),
        store.vector_search(scope, vector, filters, config.candidates)
        if use_dense and vector is not None
        else _none(),
    )
    if use_keyword and use_dense:
        fused = fuse(
            keyword,
            dense,
            method=config.fusion,
            rrf_k=config.rrf_k,
            dense_weight=config.dense_weight,
        )
    else:
        fused = list(keyword or dense)
    top = fused[:k]
    chunks = await store.get_chunks(scope, [cid for cid, _ in top])
    keyword_rank = {cid: rank for rank, (cid, _) in enumerate(keyword, start=1)}
    dense_score = dict(dense)
    scores = dict(top)
    results = [
        ScoredChunk(
            chunk=chunk,
            score=scores[chunk.id],
            signals={
                **(
                    {"bm25_rank": float(keyword_rank[chunk.id])} if chunk.id in keyword_rank else {}
                ),
                **({"dense": dense_score[chunk.id]} if chunk.id in dense_score else {}),
            },
        )
        for chunk in chunks
    ]
    if reranker is None:
        return await KeepOrder().rerank(query, results)
    with tracer().start_as_current_span("tether.rerank") as span:
        span.set_attribute("tether.rerank.in", len(results))
        return await reranker.rerank(query, results)


async def _none() -> list[tuple[str, float]]:
    return []


async def embed_query(embedder: Embedder, query: str, config: RetrievalConfig) -> Vectors | None:
    """The query's vector, or None when the mode searches keywords alone."""
    if config.mode == "bm25":
        return None
    with tracer().start_as_current_span(
        "tether.embed", attributes={"tether.embed.model": embedder.model_id}
    ):
        vector: Vectors = (await embedder.embed([query], kind="query"))[0]
        return vector


async def retrieve(
    store: Store,
    embedder: Embedder,
    query: str,
    *,
    scope: Scope,
    filters: Sequence[Filter] = (),
    k: int = 8,
    config: RetrievalConfig = RetrievalConfig(),
    reranker: Reranker | None = None,
) -> list[ScoredChunk]:
    """Hybrid search: BM25 and dense candidates inside the scope, fused, top k."""
    vector = await embed_query(embedder, query, config)
    return await search_vector(
        store, query, vector, scope=scope, filters=filters, k=k, config=config, reranker=reranker
    )
