"""The `ChatModel` protocol: typed requests, responses and stream events.

Every provider implements it; retry, budget, cache and tracing wrap it (see
ARCHITECTURE.md), so nothing above this layer knows which wire format is underneath.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, Protocol, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from tether.types import Message, Usage


class ToolSpec(BaseModel):
    """A function the model may call, described by a JSON schema for its arguments."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


class ToolCall(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    #: The raw JSON text of the arguments, exactly as the model produced it.
    arguments: str


class JsonSchemaFormat(BaseModel):
    """Ask the provider for output that validates against `schema` (strict where supported)."""

    model_config = ConfigDict(frozen=True)

    type: Literal["json_schema"] = "json_schema"
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    json_schema: dict[str, Any] = Field(alias="schema")
    strict: bool = True


class ChatRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    messages: tuple[Message, ...]
    max_tokens: int = Field(default=512, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: Literal["auto", "none", "required"] | str | None = None
    response_format: JsonSchemaFormat | None = None
    stop: tuple[str, ...] = ()
    #: Sent as the Idempotency-Key header so a retried write is not billed twice.
    idempotency_key: str | None = None


FinishReason: TypeAlias = Literal["stop", "length", "tool_calls", "content_filter", "other"]


class ChatResponse(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    model: str = ""
    finish_reason: FinishReason = "stop"
    request_id: str | None = None


class TokenEvent(BaseModel):
    type: Literal["token"] = "token"
    text: str


class ToolCallEvent(BaseModel):
    type: Literal["tool_call"] = "tool_call"
    call: ToolCall


class UsageEvent(BaseModel):
    type: Literal["usage"] = "usage"
    usage: Usage


class DoneEvent(BaseModel):
    type: Literal["done"] = "done"
    finish_reason: FinishReason = "stop"
    request_id: str | None = None


class ErrorEvent(BaseModel):
    type: Literal["error"] = "error"
    error: str
    kind: str


StreamEvent: TypeAlias = Annotated[
    TokenEvent | ToolCallEvent | UsageEvent | DoneEvent | ErrorEvent, Field(discriminator="type")
]


class ChatModel(Protocol):
    """A chat model. `stream` yields typed events and ends with `done` (or raises a
    ProviderError before anything was yielded); closing the iterator early closes the
    upstream connection."""

    @property
    def name(self) -> str: ...

    async def chat(self, request: ChatRequest) -> ChatResponse: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]: ...


class StreamTally:
    """What wrappers need to know about a stream they pass through: whether anything was
    delivered, the reported usage, how it ended, and when the first token came."""

    def __init__(self) -> None:
        self.delivered = False
        self.usage: Usage | None = None
        self.request_id: str | None = None
        self.outcome = "aborted"
        self.first_token_at: float | None = None

    def see(self, event: StreamEvent, now: float) -> None:
        self.delivered = True
        if isinstance(event, TokenEvent) and self.first_token_at is None:
            self.first_token_at = now
        elif isinstance(event, UsageEvent):
            self.usage = event.usage
        elif isinstance(event, DoneEvent):
            self.outcome, self.request_id = "ok", event.request_id
        elif isinstance(event, ErrorEvent):
            self.outcome = event.kind

    def failed(self, exc: BaseException) -> None:
        self.outcome = type(exc).__name__
