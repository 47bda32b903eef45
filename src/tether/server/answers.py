"""`/v1/answer` (whole or as SSE), `/v1/answers/{id}` and `/v1/search`.

A streamed answer is persisted however the stream ends — complete, failed, or cut by
the client — with the text sent so far, so `GET /v1/answers/{request_id}` can fetch it.
A client disconnect cancels the generator: retrieval and the upstream model request are
abandoned at their next await (the model stream's connection is closed), and the
`finally` below records the outcome synchronously, as a cancelled task cannot await.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from tether.errors import TetherError
from tether.models.budget import calling_as
from tether.rag import (
    AnswerConfig,
    AnswerResult,
    AnswerToken,
    Finished,
    Retrieved,
    answer,
    stream_answer,
)
from tether.retrieval.retrieve import retrieve
from tether.server.answer_log import StoredAnswer
from tether.server.auth import Caller, reader, service_of
from tether.server.errors import ApiError, from_tether
from tether.server.service import RAG_MODEL, Service
from tether.server.wire import citation_payload, sse_response
from tether.store.filters import Filter, parse_filter
from tether.types import Answer, MetaValue

router = APIRouter(tags=["answers"])


class AnswerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=20_000)
    #: Metadata filters in the CLI's syntax: "key=value", "key=a|b", "key>=value".
    filters: list[str] = Field(default_factory=list, max_length=20)
    top_k: int | None = Field(default=None, ge=1, le=50)
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    stream: bool = False


class CitationOut(BaseModel):
    chunk_id: str
    source_id: str
    title: str
    section: str
    page: int | None
    snippet: str


class RetrievedOut(BaseModel):
    chunk_id: str
    source_id: str
    title: str
    section: str
    score: float


class AnswerResponse(BaseModel):
    request_id: str
    answer: Answer
    citations: list[CitationOut]
    retrieved: list[RetrievedOut]
    model: str
    usage: dict[str, int] | None
    timings_ms: dict[str, float]
    trace_id: str | None


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=20_000)
    filters: list[str] = Field(default_factory=list, max_length=20)
    top_k: int = Field(default=8, ge=1, le=100)


class SearchHit(BaseModel):
    chunk_id: str
    source_id: str
    title: str
    section: str
    page: int | None
    text: str
    score: float
    signals: dict[str, float]
    metadata: dict[str, MetaValue]


class SearchResponse(BaseModel):
    results: list[SearchHit]


def _filters(raw: list[str]) -> list[Filter]:
    return [parse_filter(item) for item in raw]


def _config(service: Service, body: AnswerRequest) -> AnswerConfig:
    config = service.answer_config
    if body.top_k is not None:
        config = dataclasses.replace(config, k=body.top_k)
    if body.max_tokens is not None:
        config = dataclasses.replace(config, max_tokens=body.max_tokens)
    return config


def _retrieved(result: AnswerResult) -> list[RetrievedOut]:
    return [
        RetrievedOut(
            chunk_id=r.chunk.id,
            source_id=r.chunk.source_id,
            title=r.chunk.title,
            section=r.chunk.section,
            score=r.score,
        )
        for r in result.retrieved
    ]


def answer_response(request_id: str, result: AnswerResult) -> AnswerResponse:
    chunks = {c.chunk.id: c.chunk for c in result.context}
    usage = result.usage
    return AnswerResponse(
        request_id=request_id,
        answer=result.answer,
        citations=[CitationOut(**citation_payload(c, chunks)) for c in result.answer.citations],
        retrieved=_retrieved(result),
        model=result.model,
        usage=None
        if usage is None
        else {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
        timings_ms=result.timings_ms,
        trace_id=result.trace_id,
    )


@router.post(
    "/v1/answer",
    response_model=AnswerResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def post_answer(
    body: AnswerRequest, request: Request, caller: Annotated[Caller, Depends(reader)]
) -> AnswerResponse | StreamingResponse:
    service = service_of(request)
    filters = _filters(body.filters)
    config = _config(service, body)
    request_id = request.state.request_id
    if body.stream:
        return sse_response(
            _sse(answer_events(service, caller, body.question, filters, config, request_id))
        )
    rt = service.runtime
    with calling_as(
        user=caller.key.id, feature="answer", tenant=caller.tenant, tier=caller.key.role
    ):
        result = await answer(
            body.question,
            store=rt.store,
            embedder=rt.embedder,
            scope=caller.scope,
            filters=filters,
            config=config,
            model=service.model_for(RAG_MODEL, caller.tenant),
        )
    service.answers.save(
        request_id,
        tenant=caller.tenant,
        key_id=caller.key.id,
        status="complete",
        question=body.question,
        partial=result.answer.summary,
        answer=result.answer,
        retrieved=[r.chunk.id for r in result.retrieved],
        trace_id=result.trace_id,
    )
    return answer_response(request_id, result)


EventName = Literal["retrieval", "token", "citation", "tool_status", "done", "error"]


async def answer_events(
    service: Service,
    caller: Caller,
    question: str,
    filters: list[Filter],
    config: AnswerConfig,
    request_id: str,
) -> AsyncGenerator[tuple[EventName, dict[str, Any]], None]:
    """The streamed answer as (event, data) pairs, persisted however it ends."""
    rt = service.runtime
    sent: list[str] = []
    retrieved: list[str] = []
    trace_id: str | None = None
    final: AnswerResult | None = None
    error: str | None = None
    try:
        with calling_as(
            user=caller.key.id, feature="answer", tenant=caller.tenant, tier=caller.key.role
        ):
            yield "tool_status", {"tool": "search_docs", "status": "running"}
            started = time.perf_counter()
            try:
                async for event in stream_answer(
                    question,
                    store=rt.store,
                    embedder=rt.embedder,
                    scope=caller.scope,
                    filters=filters,
                    config=config,
                    model=service.model_for(RAG_MODEL, caller.tenant),
                ):
                    if isinstance(event, AnswerToken):
                        sent.append(event.text)
                        yield "token", {"text": event.text}
                    elif isinstance(event, Retrieved):
                        retrieved = [r.chunk.id for r in event.retrieved]
                        trace_id = event.trace_id
                        yield (
                            "tool_status",
                            {
                                "tool": "search_docs",
                                "status": "done",
                                "ms": round((time.perf_counter() - started) * 1000, 1),
                            },
                        )
                        yield (
                            "retrieval",
                            {
                                "request_id": request_id,
                                "chunks": [
                                    {
                                        "chunk_id": r.chunk.id,
                                        "source_id": r.chunk.source_id,
                                        "title": r.chunk.title,
                                        "section": r.chunk.section,
                                        "score": r.score,
                                    }
                                    for r in event.retrieved
                                ],
                            },
                        )
                    elif isinstance(event, Finished):
                        final = event.result
                        chunks = {c.chunk.id: c.chunk for c in final.context}
                        for citation in final.answer.citations:
                            yield "citation", citation_payload(citation, chunks)
                        yield "done", answer_response(request_id, final).model_dump(mode="json")
            except TetherError as exc:
                api = from_tether(exc)
                error = f"{type(exc).__name__}: {exc}"
                yield "error", {"type": api.type, "message": api.message, "status": api.status}
    finally:
        if final is not None:
            status: Literal["complete", "cancelled", "failed"] = "complete"
        else:
            status = "failed" if error else "cancelled"
        service.answers.save(
            request_id,
            tenant=caller.tenant,
            key_id=caller.key.id,
            status=status,
            question=question,
            partial="".join(sent),
            answer=final.answer if final else None,
            retrieved=retrieved,
            trace_id=trace_id,
            error=error,
        )


async def _sse(
    events: AsyncGenerator[tuple[EventName, dict[str, Any]], None],
) -> AsyncIterator[str]:
    try:
        async for name, data in events:
            yield f"event: {name}\ndata: {json.dumps(data)}\n\n"
    finally:
        await events.aclose()


@router.get("/v1/answers/{request_id}", response_model=StoredAnswer)
async def get_answer(
    request_id: str, request: Request, caller: Annotated[Caller, Depends(reader)]
) -> StoredAnswer:
    found = service_of(request).answers.get(caller.tenant, request_id)
    if found is None:
        raise ApiError(
            404, "not_found", f"no answer with request id {request_id!r} for this tenant"
        )
    return found


@router.post("/v1/search", response_model=SearchResponse)
async def post_search(
    body: SearchRequest, request: Request, caller: Annotated[Caller, Depends(reader)]
) -> SearchResponse:
    service = service_of(request)
    rt = service.runtime
    config = service.answer_config
    hits = await retrieve(
        rt.store,
        rt.embedder,
        body.query,
        scope=caller.scope,
        filters=_filters(body.filters),
        k=body.top_k,
        config=config.retrieval,
    )
    return SearchResponse(
        results=[
            SearchHit(
                chunk_id=h.chunk.id,
                source_id=h.chunk.source_id,
                title=h.chunk.title,
                section=h.chunk.section,
                page=h.chunk.page,
                text=h.chunk.text,
                score=h.score,
                signals=h.signals,
                metadata=h.chunk.metadata,
            )
            for h in hits
        ]
    )
