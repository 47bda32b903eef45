"""Anthropic's Messages API over httpx, as a `ChatModel`.

No vendor SDK, same rules as the OpenAI-compatible client: one place decides timeouts,
error mapping and what is (never) logged; the API key never appears in an error.

How tether's request maps onto the wire:

* system messages are hoisted into the top-level `system` field (joined by blank lines);
  the Messages API has no system role.
* `response_format` (json_schema) has no direct equivalent, so it becomes a forced tool
  call: a tool named after the schema, whose `input_schema` is the schema, with
  `tool_choice {"type": "tool"}`. The tool's input comes back as JSON text in
  `ChatResponse.text` (streamed as `TokenEvent`s), so `tether.structured` works unchanged.
  The forced call is not reported in `tool_calls`, and it finishes as "stop".
* `tool_choice` "auto"/"none"/"required"/<name> -> `{"type": "auto"|"none"|"any"|"tool"}`.
* role "tool" messages are not supported: `Message` carries neither the assistant's
  `tool_use` blocks nor a tool-use id, and Anthropic rejects a `tool_result` that does not
  answer a `tool_use` in the previous turn. They raise `BadRequest` before any request.
* `temperature` is clamped to Anthropic's 0..1 range; `Message.name` is not sent.
* usage: `input_tokens` counts every prompt token (uncached + cache reads + cache writes,
  which Anthropic reports apart), matching `tether.pricing.cost_usd`;
  `cached_input_tokens` = cache reads, `cache_write_tokens` = cache writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import httpx

from tether.errors import (
    AuthenticationError,
    BadRequest,
    ConfigError,
    ContextLengthExceeded,
    InvalidResponse,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    Timeout,
)
from tether.models.chat import (
    ChatRequest,
    ChatResponse,
    DoneEvent,
    ErrorEvent,
    FinishReason,
    StreamEvent,
    TokenEvent,
    ToolCall,
    ToolCallEvent,
    UsageEvent,
)
from tether.models.http import header_request_id, redact, retry_after_seconds, transport_error
from tether.types import Usage

log = logging.getLogger("tether.models.anthropic")

ANTHROPIC_BASE_URL = "https://api.anthropic.com/v1"
ANTHROPIC_VERSION = "2023-06-01"
# Non-streaming replies arrive in one piece after the whole generation, hence the longer read.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=120.0, write=30.0, pool=5.0)

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic's error `type`s, for SSE `error` events (which carry no HTTP status).
_ERROR_TYPES: dict[str, type[ProviderError]] = {
    "authentication_error": AuthenticationError,
    "permission_error": AuthenticationError,
    "rate_limit_error": RateLimited,
    "overloaded_error": ProviderUnavailable,
    "api_error": ProviderUnavailable,
    "timeout_error": Timeout,
    "invalid_request_error": BadRequest,
    "not_found_error": BadRequest,
    "request_too_large": BadRequest,
    "billing_error": BadRequest,
}

# How Anthropic words "the prompt does not fit the context window".
_CONTEXT_MARKERS = (
    "prompt is too long",
    "input is too long",
    "exceed context limit",
    "context window",
    "context length",
)


def _error_body(body: bytes, secrets: list[str]) -> tuple[str, str, str | None]:
    """(message, error type, request id) from an Anthropic error body, tolerating anything.
    Secrets are redacted before the message is shortened."""
    try:
        data = json.loads(body)
    except ValueError:
        return redact(body.decode("utf-8", "replace"), secrets)[:300], "", None
    if not isinstance(data, dict):
        return redact(str(data), secrets)[:300], "", None
    body_request_id = data.get("request_id")
    found_id = str(body_request_id) if body_request_id else None
    error = data.get("error")
    if isinstance(error, dict):
        message = redact(str(error.get("message", "")), secrets)[:500]
        return message, str(error.get("type") or ""), found_id
    if isinstance(error, str):
        return redact(error, secrets)[:500], "", found_id
    return redact(str(data), secrets)[:300], "", found_id


def _is_context_overflow(error_type: str, message: str) -> bool:
    lowered = f"{error_type} {message}".lower()
    return any(marker in lowered for marker in _CONTEXT_MARKERS)


def map_error(
    status: int, headers: httpx.Headers, body: bytes, secrets: list[str]
) -> ProviderError:
    """The typed error for an HTTP error response (the key redacted from its message)."""
    message, error_type, body_request_id = _error_body(body, secrets)
    found_id = header_request_id(headers) or body_request_id
    detail = f"{error_type}: {message}" if error_type else message
    text = f"provider answered {status}: {detail}".rstrip(": ")
    if status in (401, 403):
        return AuthenticationError(text, request_id=found_id, status=status)
    if status == 429:
        return RateLimited(
            text, request_id=found_id, status=status, retry_after=retry_after_seconds(headers)
        )
    if status >= 500:  # 529 is Anthropic's "overloaded"
        return ProviderUnavailable(text, request_id=found_id, status=status)
    if _is_context_overflow(error_type, message):
        return ContextLengthExceeded(text, request_id=found_id, status=status)
    return BadRequest(text, request_id=found_id, status=status)


def _stream_error(data: dict[str, Any], secrets: list[str]) -> ErrorEvent:
    """An SSE `error` event as an ErrorEvent whose kind names the ProviderError class."""
    error = data.get("error")
    error_type = str(error.get("type") or "") if isinstance(error, dict) else ""
    message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
    message = redact(message, secrets)[:500]
    kind: type[ProviderError] = _ERROR_TYPES.get(error_type, ProviderUnavailable)
    if kind is BadRequest and _is_context_overflow(error_type, message):
        kind = ContextLengthExceeded
    return ErrorEvent(error=f"{error_type or 'error'}: {message}", kind=kind.__name__)


def _count(data: dict[str, Any], key: str) -> int:
    return int(data.get(key) or 0)


def _usage(data: Any) -> Usage:
    if not isinstance(data, dict):
        return Usage()
    cache_read = _count(data, "cache_read_input_tokens")
    cache_write = _count(data, "cache_creation_input_tokens")
    return Usage(
        input_tokens=_count(data, "input_tokens") + cache_read + cache_write,
        output_tokens=_count(data, "output_tokens"),
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


def _finish(stop_reason: Any, *, user_tool_called: bool) -> FinishReason:
    reason = _FINISH.get(str(stop_reason), "other")
    if reason == "tool_calls" and not user_tool_called:
        return "stop"  # only the forced response_format tool ran: that is the answer
    return reason


class AnthropicChat:
    """A `ChatModel` for Anthropic's POST /v1/messages."""

    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        base_url: str = ANTHROPIC_BASE_URL,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        first_token_timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not api_key:
            raise ConfigError("anthropic: models need an API key (ANTHROPIC_API_KEY)")
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers={"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION},
            timeout=timeout,
            transport=transport,
        )
        self._model = model
        self._secrets = [api_key]
        self._first_token_timeout = first_token_timeout

    @property
    def name(self) -> str:
        return f"anthropic:{self._model}"

    def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        system: list[str] = []
        messages: list[dict[str, Any]] = []
        for m in request.messages:
            if m.role == "system":
                system.append(m.content)
            elif m.role == "tool":
                raise BadRequest(
                    "anthropic: role 'tool' messages are not supported (a Message cannot "
                    "carry the tool_use id a tool_result must answer)"
                )
            else:
                messages.append({"role": m.role, "content": m.content})
        body: dict[str, Any] = {
            "model": self._model,
            "max_tokens": request.max_tokens,
            "messages": messages,
        }
        if system:
            body["system"] = "\n\n".join(system)
        if request.temperature is not None:
            body["temperature"] = min(request.temperature, 1.0)
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        tools: list[dict[str, Any]] = []
        for t in request.tools:
            spec: dict[str, Any] = {"name": t.name, "input_schema": t.parameters}
            if t.description:
                spec["description"] = t.description
            tools.append(spec)
        if tools and request.tool_choice is not None:
            choice = request.tool_choice
            body["tool_choice"] = (
                {"type": {"auto": "auto", "none": "none", "required": "any"}[choice]}
                if choice in ("auto", "none", "required")
                else {"type": "tool", "name": choice}
            )
        if (fmt := request.response_format) is not None:
            if any(t.name == fmt.name for t in request.tools):
                raise BadRequest(
                    f"anthropic: response_format {fmt.name!r} has the name of a tool; rename one"
                )
            tools.append(
                {
                    "name": fmt.name,
                    "description": f"Give the answer as the {fmt.name} object: call this "
                    "tool with it as the input.",
                    "input_schema": fmt.json_schema,
                }
            )
            body["tool_choice"] = {"type": "tool", "name": fmt.name}
        if tools:
            body["tools"] = tools
        if stream:
            body["stream"] = True
        return body

    def _headers(self, request: ChatRequest) -> dict[str, str]:
        return {"Idempotency-Key": request.idempotency_key} if request.idempotency_key else {}

    def _transport_error(self, exc: httpx.HTTPError) -> ProviderError:
        return transport_error(exc, self._secrets)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        body = self._body(request, stream=False)
        try:
            response = await self._client.post(
                "messages", json=body, headers=self._headers(request)
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        request_id = header_request_id(response.headers)
        log.debug("chat %s -> %s request_id=%s", self._model, response.status_code, request_id)
        if response.status_code >= 400:
            raise map_error(response.status_code, response.headers, response.content, self._secrets)
        fmt_name = request.response_format.name if request.response_format else None
        try:
            return self._parse(response.json(), fmt_name, request_id)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            message = redact(f"{type(exc).__name__}: {exc}", self._secrets)
            raise InvalidResponse(
                f"malformed messages response: {message}", request_id=request_id
            ) from None

    def _parse(self, data: Any, fmt_name: str | None, request_id: str | None) -> ChatResponse:
        if not isinstance(data, dict) or data.get("type", "message") != "message":
            raise ValueError(f"not a message object: {str(data)[:100]}")
        content = data["content"]
        if not isinstance(content, list):
            raise TypeError("content is not a list")
        texts: list[str] = []
        calls: list[ToolCall] = []
        answer: str | None = None
        for block in content:
            kind = block["type"]
            if kind == "text":
                texts.append(str(block["text"]))
            elif kind == "tool_use":
                if not isinstance(block["input"], dict):
                    raise TypeError("tool_use input is not an object")
                arguments = json.dumps(block["input"], ensure_ascii=False)
                if fmt_name is not None and block["name"] == fmt_name:
                    answer = arguments
                else:
                    calls.append(ToolCall(id=block["id"], name=block["name"], arguments=arguments))
            # thinking, redacted_thinking, server tool blocks: not part of the answer
        return ChatResponse(
            text=answer if answer is not None else "".join(texts),
            tool_calls=tuple(calls),
            usage=_usage(data.get("usage")),
            model=str(data.get("model") or self._model),
            finish_reason=_finish(data.get("stop_reason"), user_tool_called=bool(calls)),
            request_id=request_id,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        body = self._body(request, stream=True)
        fmt_name = request.response_format.name if request.response_format else None
        try:
            async with self._client.stream(
                "POST", "messages", json=body, headers=self._headers(request)
            ) as response:
                request_id = header_request_id(response.headers)
                log.debug(
                    "stream %s -> %s request_id=%s", self._model, response.status_code, request_id
                )
                if response.status_code >= 400:
                    raise map_error(
                        response.status_code,
                        response.headers,
                        await response.aread(),
                        self._secrets,
                    )
                async with aclosing(self._events(response, request_id, fmt_name)) as events:
                    async for event in events:
                        yield event
        except httpx.HTTPError as exc:
            error = self._transport_error(exc)
            yield ErrorEvent(error=str(error), kind=type(error).__name__)

    async def _events(
        self, response: httpx.Response, request_id: str | None, fmt_name: str | None
    ) -> AsyncGenerator[StreamEvent, None]:
        """SSE lines -> events. The first-token timeout runs until the model's first output
        (a content block, a message delta, the end or an error), so pings do not reset it."""
        lines = response.aiter_lines()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._first_token_timeout
        state = _StreamState(fmt_name, request_id, self._secrets)
        data: list[str] = []
        while True:
            line: str | None
            try:
                if state.started:
                    line = await anext(lines)
                else:
                    line = await asyncio.wait_for(anext(lines), max(deadline - loop.time(), 0.0))
            except StopAsyncIteration:
                line = None
            except TimeoutError:
                yield ErrorEvent(
                    error=f"no output within the {self._first_token_timeout}s first-token timeout",
                    kind="Timeout",
                )
                return
            if line:
                if line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                continue  # `event:` names (each payload repeats its type), comments, ids
            if data:  # a blank line (or the end) dispatches the event
                payload = "\n".join(data)
                data = []
                try:
                    event = json.loads(payload)
                    if not isinstance(event, dict):
                        raise ValueError("not an object")
                    out = state.feed(event)
                except (ValueError, KeyError, TypeError) as exc:
                    message = redact(f"{exc} in {payload[:100]!r}", self._secrets)
                    yield ErrorEvent(
                        error=f"malformed SSE event: {message}", kind="InvalidResponse"
                    )
                    return
                for item in out:
                    yield item
                if state.finished:
                    return
            if line is None:
                yield ErrorEvent(error="stream ended before message_stop", kind="InvalidResponse")
                return

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclass
class _Block:
    kind: str
    id: str = ""
    name: str = ""
    arguments: str = ""
    initial: dict[str, Any] = field(default_factory=dict)
    done: bool = False


class _StreamState:
    """Folds Anthropic's stream events into tether's, one event at a time."""

    def __init__(self, fmt_name: str | None, request_id: str | None, secrets: list[str]) -> None:
        self.fmt_name = fmt_name
        self.request_id = request_id
        self.secrets = secrets
        self.blocks: dict[int, _Block] = {}
        self.usage: dict[str, Any] = {}
        self.stop_reason: Any = None
        self.user_tool_called = False
        self.started = False
        self.finished = False

    def _is_answer(self, block: _Block) -> bool:
        return block.kind == "tool_use" and block.name == self.fmt_name

    def _close(self, block: _Block) -> list[StreamEvent]:
        if block.done or block.kind != "tool_use":
            return []
        block.done = True
        arguments = block.arguments or json.dumps(block.initial, ensure_ascii=False)
        if self._is_answer(block):
            # Deltas were already streamed as tokens; an input given whole is sent now.
            return [] if block.arguments else [TokenEvent(text=arguments)]
        self.user_tool_called = True
        return [ToolCallEvent(call=ToolCall(id=block.id, name=block.name, arguments=arguments))]

    def feed(self, event: dict[str, Any]) -> list[StreamEvent]:
        kind = event.get("type")
        if kind == "message_start":
            usage = event["message"].get("usage")
            if isinstance(usage, dict):
                self.usage.update(usage)
            return []
        if kind == "ping":
            return []
        if kind == "error":
            self.finished = True
            return [_stream_error(event, self.secrets)]
        self.started = True
        if kind == "content_block_start":
            raw = event["content_block"]
            block = _Block(kind=str(raw["type"]))
            self.blocks[int(event["index"])] = block
            if block.kind == "tool_use":
                block.id, block.name = str(raw["id"]), str(raw["name"])
                block.initial = dict(raw.get("input") or {})
            elif block.kind == "text" and raw.get("text"):
                return [TokenEvent(text=str(raw["text"]))]
            return []
        if kind == "content_block_delta":
            block = self.blocks[int(event["index"])]
            delta = event["delta"]
            if delta["type"] == "text_delta" and delta["text"]:
                return [TokenEvent(text=str(delta["text"]))]
            if delta["type"] == "input_json_delta" and delta["partial_json"]:
                block.arguments += str(delta["partial_json"])
                if self._is_answer(block):
                    return [TokenEvent(text=str(delta["partial_json"]))]
            return []  # thinking, signature and citation deltas are not part of the answer
        if kind == "content_block_stop":
            return self._close(self.blocks[int(event["index"])])
        if kind == "message_delta":
            self.stop_reason = (event.get("delta") or {}).get("stop_reason") or self.stop_reason
            usage = event.get("usage")
            if isinstance(usage, dict):  # cumulative: later counts replace earlier ones
                self.usage.update({k: v for k, v in usage.items() if v is not None})
            return []
        if kind == "message_stop":
            self.finished = True
            out: list[StreamEvent] = []
            for index in sorted(self.blocks):
                out += self._close(self.blocks[index])
            out.append(UsageEvent(usage=_usage(self.usage)))
            out.append(
                DoneEvent(
                    finish_reason=_finish(self.stop_reason, user_tool_called=self.user_tool_called),
                    request_id=self.request_id,
                )
            )
            return out
        return []  # event types added to the API later are ignored, as Anthropic advises
