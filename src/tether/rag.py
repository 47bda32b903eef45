"""`answer()`: retrieve -> pack -> answer -> citation check. Composition only."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from tether.citations import verify
from tether.errors import InvalidQuestion
from tether.models.embedder import Embedder
from tether.models.extractive import ExtractiveOptions, extractive_answer
from tether.retrieval.pack import PackOptions, pack
from tether.retrieval.rerank import Reranker
from tether.retrieval.retrieve import RetrievalConfig, retrieve
from tether.store.filters import Filter
from tether.store.protocol import Scope, Store
from tether.tokens import TokenCounter
from tether.types import Answer, ScoredChunk


@dataclass(frozen=True)
class AnswerConfig:
    k: int = 8
    max_question_chars: int = 2000
    retrieval: RetrievalConfig = RetrievalConfig()
    packing: PackOptions = PackOptions()
    extractive: ExtractiveOptions = ExtractiveOptions()


@dataclass
class AnswerResult:
    answer: Answer
    retrieved: list[ScoredChunk]
    context: list[ScoredChunk]
    timings_ms: dict[str, float] = field(default_factory=dict)


def check_question(question: str, max_chars: int) -> str:
    text = question.strip()
    if not text:
        raise InvalidQuestion("the question is empty")
    if len(text) > max_chars:
        raise InvalidQuestion(f"the question is {len(text)} characters; the limit is {max_chars}")
    return text


async def answer(
    question: str,
    *,
    store: Store,
    embedder: Embedder,
    scope: Scope,
    filters: Sequence[Filter] = (),
    config: AnswerConfig = AnswerConfig(),
    reranker: Reranker | None = None,
    counter: TokenCounter | None = None,
) -> AnswerResult:
    text = check_question(question, config.max_question_chars)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    retrieved = await retrieve(
        store,
        embedder,
        text,
        scope=scope,
        filters=filters,
        k=config.k,
        config=config.retrieval,
        reranker=reranker,
    )
    t1 = time.perf_counter()
    context = pack(retrieved, config.packing, counter=counter)
    t2 = time.perf_counter()
    result = await extractive_answer(text, context, embedder, config.extractive)
    verify(result, [item.chunk.id for item in context])
    t3 = time.perf_counter()
    timings.update(
        retrieve=(t1 - t0) * 1000,
        pack=(t2 - t1) * 1000,
        answer=(t3 - t2) * 1000,
        total=(t3 - t0) * 1000,
    )
    return AnswerResult(answer=result, retrieved=retrieved, context=context, timings_ms=timings)
