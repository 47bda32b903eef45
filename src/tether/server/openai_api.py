"""`POST /v1/chat/completions`, OpenAI-compatible, so any OpenAI client or chat UI works.

`model: "tether-rag"` answers the last user message from the caller's knowledge base;
other names pass through to the configured gateway models with budgets, the response
cache and tracing. Citations travel in an extension field the OpenAI clients keep:
`citations` on the completion (and on the last stream chunk), a list of
`{chunk_id, source_id, title, section, page, snippet}`.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from tether.errors import TetherError
from tether.models.budget import calling_as
from tether.models.chat import (
    ChatModel,
    ChatRequest,
    DoneEvent,
    ErrorEvent,
    JsonSchemaFormat,
    TokenEvent,
    ToolCallEvent,
    ToolSpec,
    UsageEvent,
)
from tether.models.http import timing_upstream
from tether.rag import answer
from tether.server.answers import answer_events
from tether.server.auth import Caller, reader, service_of
from tether.server.errors import ApiError, error_body, from_tether
from tether.server.service import RAG_MODEL, Service
from tether.server.wire import FastJSONResponse, citation_payload, sse_response
from tether.types import Message, Usage

router = APIRouter(tags=["openai"])


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ToolCallFunction(BaseModel):
    name: str
    arguments: str


class ToolCallIn(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        for part in self.content:
            if part.type != "text":
                raise ApiError(
                    400,
                    "invalid_request_error",
                    f"content parts of type {part.type!r} are not supported",
                )
        return "".join(part.text or "" for part in self.content)


class FunctionDef(BaseModel):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


class ToolDef(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionDef


class JsonSchemaSpec(BaseModel):
    name: str
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_schema"]
    json_schema: JsonSchemaSpec | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The Chat Completions fields tether honours. Sampling knobs it cannot pass on are
    accepted only at their neutral values, so nothing is silently ignored."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=500)
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=32768)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=1.0, le=1.0)
    n: int | None = Field(default=None, ge=1, le=1)
    presence_penalty: float | None = Field(default=None, ge=0.0, le=0.0)
    frequency_penalty: float | None = Field(default=None, ge=0.0, le=0.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[ToolDef] | None = None
    tool_choice: Literal["auto", "none", "required"] | None = None
    response_format: ResponseFormat | None = None
    user: str | None = Field(default=None, max_length=256)


def _usage_json(usage: Usage | None) -> dict[str, int]:
    usage = usage or Usage()
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _to_chat_request(body: ChatCompletionRequest) -> ChatRequest:
    messages = []
    for m in body.messages:
        if m.role == "tool" or m.tool_calls:
            raise ApiError(
                400,
                "invalid_request_error",
                "tool messages are not passed through yet; send text messages",
            )
        role = "system" if m.role == "developer" else m.role
        messages.append(Message(role=role, content=m.text(), name=m.name))
    response_format = None
    if body.response_format is not None and body.response_format.type == "json_schema":
        spec = body.response_format.json_schema
        if spec is None:
            raise ApiError(400, "invalid_request_error", "response_format.json_schema is required")
        response_format = JsonSchemaFormat(
            name=spec.name, schema=spec.schema_, strict=spec.strict is not False
        )
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    return ChatRequest(
        messages=tuple(messages),
        max_tokens=body.max_completion_tokens or body.max_tokens or 1024,
        temperature=body.temperature,
        tools=tuple(
            ToolSpec(
                name=t.function.name,
                description=t.function.description,
                parameters=t.function.parameters,
            )
            for t in body.tools or ()
        ),
        tool_choice=body.tool_choice,
        response_format=response_format,
        stop=stop,
    )


def _question(body: ChatCompletionRequest) -> str:
    for message in reversed(body.messages):
        if message.role == "user":
            return message.text()
    raise ApiError(400, "invalid_request_error", f"{RAG_MODEL} needs a user message to answer")


@router.get("/v1/models")
async def list_models(
    request: Request, caller: Annotated[Caller, Depends(reader)]
) -> dict[str, Any]:
    service = service_of(request)
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "tether"}
            for name in service.models
        ],
    }


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    caller: Annotated[Caller, Depends(reader)],
) -> JSONResponse | StreamingResponse:
    service = service_of(request)
    completion_id = "chatcmpl-" + secrets.token_hex(16)
    user = f"{caller.key.id}:{body.user}" if body.user else caller.key.id
    if body.model == RAG_MODEL:
        question = _question(body)
        if body.stream:
            return sse_response(_rag_stream(service, caller, question, completion_id))
        return await _rag_complete(service, caller, question, completion_id, user)
    model = service.model_for(body.model, caller.tenant)
    if model is None:
        raise ApiError(
            404,
            "invalid_request_error",
            f"unknown model {body.model!r}; this server has {', '.join(service.models)}",
            code="model_not_found",
        )
    chat_request = _to_chat_request(body)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return sse_response(
            _pass_stream(
                model, chat_request, body.model, completion_id, caller, user, include_usage
            )
        )
    with (
        calling_as(user=user, feature="gateway", tenant=caller.tenant, tier=caller.key.role),
        timing_upstream() as upstream,
    ):
        response = await model.chat(chat_request)
    request.state.model_ms = upstream[0]
    message: dict[str, Any] = {"role": "assistant", "content": response.text}
    if response.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in response.tool_calls
        ]
    payload = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": _finish(response.finish_reason)}
        ],
        "usage": _usage_json(response.usage),
    }
    return FastJSONResponse(payload)


def _finish(reason: str) -> str:
    return reason if reason in ("stop", "length", "tool_calls", "content_filter") else "stop"


def _chunk(
    completion_id: str, model: str, delta: dict[str, Any], finish: str | None = None, **extra: Any
) -> str:
    payload = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(payload)}\n\n"


def _stream_error(exc: TetherError) -> str:
    api = from_tether(exc)
    return f"data: {json.dumps(error_body(api.type, api.message, api.code))}\n\n"


async def _pass_stream(
    model: ChatModel,
    chat_request: ChatRequest,
    name: str,
    completion_id: str,
    caller: Caller,
    user: str,
    include_usage: bool,
) -> AsyncIterator[str]:
    usage: Usage | None = None
    tool_index = 0
    with calling_as(user=user, feature="gateway", tenant=caller.tenant, tier=caller.key.role):
        yield _chunk(completion_id, name, {"role": "assistant", "content": ""})
        try:
            async for event in model.stream(chat_request):
                if isinstance(event, TokenEvent):
                    yield _chunk(completion_id, name, {"content": event.text})
                elif isinstance(event, ToolCallEvent):
                    call = event.call
                    delta = {
                        "tool_calls": [
                            {
                                "index": tool_index,
                                "id": call.id,
                                "type": "function",
                                "function": {"name": call.name, "arguments": call.arguments},
                            }
                        ]
                    }
                    tool_index += 1
                    yield _chunk(completion_id, name, delta)
                elif isinstance(event, UsageEvent):
                    usage = event.usage
                elif isinstance(event, DoneEvent):
                    yield _chunk(completion_id, name, {}, _finish(event.finish_reason))
                elif isinstance(event, ErrorEvent):
                    yield f"data: {json.dumps(error_body('upstream_error', event.error, event.kind))}\n\n"
                    return
        except TetherError as exc:
            yield _stream_error(exc)
            return
    if include_usage:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": name,
            "choices": [],
            "usage": _usage_json(usage),
        }
        yield f"data: {json.dumps(payload)}\n\n"
    yield "data: [DONE]\n\n"


async def _rag_complete(
    service: Service, caller: Caller, question: str, completion_id: str, user: str
) -> JSONResponse:
    rt = service.runtime
    with calling_as(user=user, feature="answer", tenant=caller.tenant, tier=caller.key.role):
        result = await answer(
            question,
            store=rt.store,
            embedder=rt.embedder,
            scope=caller.scope,
            config=service.answer_config,
            model=service.model_for(RAG_MODEL, caller.tenant),
        )
    chunks = {c.chunk.id: c.chunk for c in result.context}
    service.answers.save(
        completion_id,
        tenant=caller.tenant,
        key_id=caller.key.id,
        status="complete",
        question=question,
        partial=result.answer.summary,
        answer=result.answer,
        retrieved=[r.chunk.id for r in result.retrieved],
        trace_id=result.trace_id,
    )
    return FastJSONResponse(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": RAG_MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.answer.summary},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage_json(result.usage),
            "citations": [citation_payload(c, chunks) for c in result.answer.citations],
            "declined": result.answer.declined,
            "trace_id": result.trace_id,
        }
    )


async def _rag_stream(
    service: Service,
    caller: Caller,
    question: str,
    completion_id: str,
) -> AsyncIterator[str]:
    yield _chunk(completion_id, RAG_MODEL, {"role": "assistant", "content": ""})
    events = answer_events(service, caller, question, [], service.answer_config, completion_id)
    try:
        async for name, data in events:
            if name == "token":
                yield _chunk(completion_id, RAG_MODEL, {"content": data["text"]})
            elif name == "done":
                yield _chunk(
                    completion_id,
                    RAG_MODEL,
                    {},
                    "stop",
                    citations=data["citations"],
                    answer=data["answer"],
                    trace_id=data["trace_id"],
                )
            elif name == "error":
                yield f"data: {json.dumps(error_body(data['type'], data['message']))}\n\n"
                return
    finally:
        await events.aclose()
    yield "data: [DONE]\n\n"
