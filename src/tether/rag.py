"""`answer()`: retrieve -> pack -> answer -> citation check. Composition only."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span, StatusCode
from pydantic import ValidationError
from pydantic_core import from_json

from tether import prompts
from tether.citations import TAG, cited_ids, verify
from tether.errors import InvalidQuestion
from tether.models.budget import current_caller
from tether.models.chat import (
    ChatModel,
    ChatRequest,
    ErrorEvent,
    JsonSchemaFormat,
    StreamEvent,
    TokenEvent,
    UsageEvent,
)
from tether.models.embedder import Embedder, Vectors
from tether.models.extractive import DECLINE_TEXT, ExtractiveOptions, extractive_answer
from tether.observability.tracing import capture_content, trace_id_of, tracer, using_prompt
from tether.prompts.qa_answer_v1 import QAInputs, QAOutput, Source
from tether.retrieval.pack import PackOptions, pack
from tether.retrieval.rerank import Reranker
from tether.retrieval.retrieve import RetrievalConfig, embed_query, search_vector
from tether.store.filters import Filter
from tether.store.protocol import Scope, Store
from tether.structured import generate, strict_schema
from tether.tokens import TokenCounter
from tether.types import Answer, Chunk, Citation, Message, ScoredChunk, Usage


@dataclass(frozen=True)
class AnswerConfig:
    k: int = 8
    max_question_chars: int = 2000
    retrieval: RetrievalConfig = RetrievalConfig()
    packing: PackOptions = PackOptions()
    extractive: ExtractiveOptions = ExtractiveOptions()
    #: qa.answer version for LLM answers; None means the latest registered.
    prompt_version: int | None = None
    max_tokens: int = 512
    #: Total generate + repair attempts for an LLM answer.
    attempts: int = 3


@dataclass
class AnswerResult:
    answer: Answer
    retrieved: list[ScoredChunk]
    context: list[ScoredChunk]
    timings_ms: dict[str, float] = field(default_factory=dict)
    usage: Usage | None = None
    model: str = "extractive"
    #: The request's OpenTelemetry trace id (hex), when tracing is on.
    trace_id: str | None = None


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
    model: ChatModel | None = None,
) -> AnswerResult:
    """Answer from the store: extractively when `model` is None, else with the model
    through the qa.answer prompt, structured output and the citation check."""
    text = check_question(question, config.max_question_chars)
    root_attributes = _root_attributes(text, scope, model)
    with tracer().start_as_current_span("tether.answer", attributes=root_attributes) as root:
        t0 = time.perf_counter()
        stage = await _retrieve_and_pack(
            text, store, embedder, scope, filters, config, reranker, counter
        )
        t2 = time.perf_counter()
        usage: Usage | None = None
        if model is None:
            result = await _extractive(text, stage, embedder, config)
        else:
            result, usage = await llm_answer(text, stage.context, model, config)
        return _finish(root, stage, result, usage, model, t0, t2)


async def _extractive(text: str, stage: Stage, embedder: Embedder, config: AnswerConfig) -> Answer:
    with tracer().start_as_current_span("tether.extractive"):
        return await extractive_answer(
            text, stage.context, embedder, config.extractive, question_vector=stage.vector
        )


def _finish(
    root: Span,
    stage: Stage,
    result: Answer,
    usage: Usage | None,
    model: ChatModel | None,
    t0: float,
    t2: float,
) -> AnswerResult:
    """The citation check, then the result with its timings and trace id."""
    _check_citations(result, stage.context)
    root.set_attribute("tether.declined", result.declined)
    return AnswerResult(
        answer=result,
        retrieved=stage.retrieved,
        context=stage.context,
        timings_ms=_timings(stage.timings, t0, t2),
        usage=usage,
        model=model.name if model else "extractive",
        trace_id=trace_id_of(root),
    )


def _root_attributes(text: str, scope: Scope, model: ChatModel | None) -> dict[str, str | int]:
    caller = current_caller()
    attributes: dict[str, str | int] = {
        "tether.tenant": scope.tenant_id,
        "tether.feature": caller.feature,
        "tether.user.tier": caller.tier,
        "tether.model": model.name if model else "extractive",
        "tether.question.chars": len(text),
    }
    if capture_content():
        attributes["tether.question"] = text
    return attributes


def _timings(stages: dict[str, float], t0: float, t2: float) -> dict[str, float]:
    t3 = time.perf_counter()
    return {**stages, "answer": (t3 - t2) * 1000, "total": (t3 - t0) * 1000}


@dataclass(frozen=True)
class Stage:
    retrieved: list[ScoredChunk]
    context: list[ScoredChunk]
    #: The question's embedding, reused by the extractive answerer.
    vector: Vectors | None
    timings: dict[str, float]


async def _retrieve_and_pack(
    text: str,
    store: Store,
    embedder: Embedder,
    scope: Scope,
    filters: Sequence[Filter],
    config: AnswerConfig,
    reranker: Reranker | None,
    counter: TokenCounter | None,
) -> Stage:
    t0 = time.perf_counter()
    with tracer().start_as_current_span("tether.retrieve") as span:
        vector = await embed_query(embedder, text, config.retrieval)
        retrieved = await search_vector(
            store,
            text,
            vector,
            scope=scope,
            filters=filters,
            k=config.k,
            config=config.retrieval,
            reranker=reranker,
        )
        span.set_attributes(
            {
                "tether.retrieval.mode": config.retrieval.mode,
                "tether.fusion": config.retrieval.fusion,
                "tether.k": config.k,
                "tether.filters": len(filters),
                "tether.retrieved.ids": [r.chunk.id for r in retrieved],
            }
        )
    t1 = time.perf_counter()
    with tracer().start_as_current_span("tether.pack") as span:
        context = pack(retrieved, config.packing, counter=counter)
        span.set_attributes(
            {
                "tether.context.ids": [c.chunk.id for c in context],
                "tether.context.chars": sum(len(c.chunk.text) for c in context),
            }
        )
    t2 = time.perf_counter()
    return Stage(
        retrieved, context, vector, {"retrieve": (t1 - t0) * 1000, "pack": (t2 - t1) * 1000}
    )


def _check_citations(result: Answer, context: list[ScoredChunk]) -> None:
    with tracer().start_as_current_span("tether.citations") as span:
        verify(result, [item.chunk.id for item in context])
        span.set_attributes(
            {
                "tether.cited.ids": [c.chunk_id for c in result.citations],
                "tether.declined": result.declined,
                "tether.confidence": result.confidence,
                "tether.flags": len(result.flags),
            }
        )


@dataclass(frozen=True)
class Retrieved:
    """First event of a streamed answer: what retrieval found and what was packed."""

    retrieved: list[ScoredChunk]
    context: list[ScoredChunk]
    #: The answer's trace, known from the start so a cut stream can still point to it.
    trace_id: str | None = None


@dataclass(frozen=True)
class AnswerToken:
    text: str


@dataclass(frozen=True)
class Finished:
    """Last event: the checked answer. It is authoritative: if a streamed model output
    failed validation, the answer was produced again and differs from the tokens sent."""

    result: AnswerResult


AnswerEvent = Retrieved | AnswerToken | Finished
_WORD = re.compile(r"\S+\s*|\s+")


async def stream_answer(
    question: str,
    *,
    store: Store,
    embedder: Embedder,
    scope: Scope,
    filters: Sequence[Filter] = (),
    config: AnswerConfig = AnswerConfig(),
    reranker: Reranker | None = None,
    counter: TokenCounter | None = None,
    model: ChatModel | None = None,
) -> AsyncIterator[AnswerEvent]:
    """`answer()` as events: `Retrieved`, then `AnswerToken`s as the model writes the
    answer text, then `Finished`. Closing the iterator early (a client went away) closes
    the upstream model stream; the spans end with the error recorded."""
    text = check_question(question, config.max_question_chars)
    with tracer().start_as_current_span(
        "tether.answer", attributes={**_root_attributes(text, scope, model), "tether.stream": True}
    ) as root:
        try:
            t0 = time.perf_counter()
            stage = await _retrieve_and_pack(
                text, store, embedder, scope, filters, config, reranker, counter
            )
            yield Retrieved(stage.retrieved, stage.context, trace_id_of(root))
            t2 = time.perf_counter()
            usage: Usage | None = None
            if model is None:
                result = await _extractive(text, stage, embedder, config)
                for piece in _WORD.findall(result.summary):
                    yield AnswerToken(piece)
            else:
                outcome: list[tuple[Answer, Usage | None]] = []
                async for piece in _stream_llm(text, stage.context, model, config, outcome):
                    yield AnswerToken(piece)
                result, usage = outcome[0]
            yield Finished(_finish(root, stage, result, usage, model, t0, t2))
        except (GeneratorExit, asyncio.CancelledError):
            # The consumer went away (a client hung up): the trace says so.
            root.set_attribute("tether.cancelled", True)
            root.set_status(StatusCode.ERROR, "cancelled: the consumer stopped reading")
            raise


def _cited(out: QAOutput) -> list[str]:
    return list(dict.fromkeys([*cited_ids(out.answer), *out.cited_ids]))


def _qa_messages(
    question: str, chunks: dict[str, Chunk], config: AnswerConfig
) -> tuple[str, list[Message], dict[str, Any]]:
    """(prompt key, rendered messages, wire schema) for a qa.answer call."""
    prompt = prompts.get("qa.answer", config.prompt_version)
    with tracer().start_as_current_span(
        "tether.prompt.render", attributes={"tether.prompt.id": prompt.key}
    ) as span:
        messages = prompt.render(
            QAInputs(
                question=question,
                sources=[
                    Source(id=c.id, title=c.title, section=c.section, text=c.text)
                    for c in chunks.values()
                ],
            )
        )
        span.set_attribute("tether.prompt.chars", sum(len(m.content) for m in messages))
    # Where the provider enforces the schema, cited_ids can only be ids from the context.
    wire = strict_schema(QAOutput)
    wire["properties"]["cited_ids"]["items"] = {"type": "string", "enum": list(chunks)}
    wire["properties"]["cited_ids"]["maxItems"] = len(chunks)
    # A bounded answer string lets a looping small model still close its JSON.
    wire["properties"]["answer"]["maxLength"] = 1200
    # Grammar-based servers (llama.cpp) ignore numeric ranges; an enum they do enforce.
    wire["properties"]["confidence"] = {"type": "number", "enum": [i / 10 for i in range(11)]}
    return prompt.key, list(messages), wire


def _to_answer(out: QAOutput, chunks: dict[str, Chunk]) -> Answer:
    """The checked Answer: citations outside the context dropped and flagged; an answer
    left citing nothing becomes a decline."""
    flags: list[str] = []
    unknown = [cid for cid in _cited(out) if cid not in chunks]
    summary = out.answer
    if unknown:
        summary = TAG.sub(lambda m: m.group(0) if m.group(1) in chunks else "", summary)
        flags.append(f"dropped citations of chunks that were not in the context: {unknown}")
    used = [cid for cid in _cited(out) if cid in chunks]
    if out.declined or not used:
        if not out.declined:
            flags.append("the model's answer cited no source in the context; declined instead")
        return Answer(summary=DECLINE_TEXT, confidence=out.confidence, declined=True, flags=flags)
    citations = [
        Citation(
            chunk_id=cid,
            source_id=chunks[cid].source_id,
            title=chunks[cid].title,
            section=chunks[cid].section,
            page=chunks[cid].page,
        )
        for cid in used
    ]
    return Answer(
        summary=" ".join(summary.split()),
        citations=citations,
        confidence=out.confidence,
        declined=False,
        flags=flags,
    )


async def llm_answer(
    question: str, context: list[ScoredChunk], model: ChatModel, config: AnswerConfig
) -> tuple[Answer, Usage | None]:
    """qa.answer through `generate`: citations naming chunks outside the context are sent
    back for repair; if the last attempt still has them they are dropped and flagged."""
    if not context:
        return Answer(summary=DECLINE_TEXT, confidence=1.0, declined=True), None
    chunks = {item.chunk.id: item.chunk for item in context}

    def check(out: QAOutput) -> list[str]:
        problems = []
        unknown = [cid for cid in _cited(out) if cid not in chunks]
        if unknown:
            problems.append(f"these cited ids are not among the sources: {unknown}")
        if not out.declined and not any(cid in chunks for cid in _cited(out)):
            problems.append("an answer that is not declined must cite at least one source id")
        return problems

    prompt_key, messages, wire = _qa_messages(question, chunks, config)
    with using_prompt(prompt_key):
        generation = await generate(
            model,
            messages,
            QAOutput,
            check=check,
            max_attempts=config.attempts,
            max_tokens=config.max_tokens,
            accept_with_problems=True,
            wire_schema=wire,
        )
    return _to_answer(generation.value, chunks), generation.usage


async def _stream_llm(
    question: str,
    context: list[ScoredChunk],
    model: ChatModel,
    config: AnswerConfig,
    outcome: list[tuple[Answer, Usage | None]],
) -> AsyncIterator[str]:
    """Stream the `answer` field of qa.answer's JSON as the model writes it (parsing the
    partial JSON on every token), then validate the whole. An invalid output falls back
    to `llm_answer` (with its repair loop), whose answer supersedes the streamed text."""
    if not context:
        outcome.append((Answer(summary=DECLINE_TEXT, confidence=1.0, declined=True), None))
        return
    chunks = {item.chunk.id: item.chunk for item in context}
    prompt_key, messages, wire = _qa_messages(question, chunks, config)
    request = ChatRequest(
        messages=tuple(messages),
        max_tokens=config.max_tokens,
        temperature=0.0,
        response_format=JsonSchemaFormat(name="QAOutput", schema=wire),
    )
    raw: list[str] = []
    sent = 0
    usage: Usage | None = None
    with using_prompt(prompt_key):
        stream = model.stream(request)
        try:
            async for event in stream:
                if isinstance(event, UsageEvent):
                    usage = event.usage
                elif isinstance(event, ErrorEvent):
                    break
                elif isinstance(event, TokenEvent):
                    raw.append(event.text)
                    text = _partial_answer("".join(raw))
                    if len(text) > sent:
                        yield text[sent:]
                        sent = len(text)
        finally:
            await _aclose(stream)
    try:
        out = QAOutput.model_validate_json("".join(raw))
    except ValidationError:
        answer_, retry_usage = await llm_answer(question, context, model, config)
        answer_.flags.append("the streamed output was not valid; answered again")
        outcome.append((answer_, retry_usage))
        return
    outcome.append((_to_answer(out, chunks), usage))


def _partial_answer(raw: str) -> str:
    """The `answer` string of a JSON object that may still be incomplete."""
    try:
        value = from_json(raw, allow_partial="trailing-strings")
    except ValueError:
        return ""
    found = value.get("answer") if isinstance(value, dict) else None
    return found if isinstance(found, str) else ""


async def _aclose(stream: AsyncIterator[StreamEvent]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
