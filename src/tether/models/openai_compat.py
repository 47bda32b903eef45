"""OpenAI-compatible Chat Completions over httpx: OpenAI, vLLM, Ollama, llama.cpp servers.

No vendor SDK: the wire format is small, and owning it means one place decides
timeouts, error mapping and what is (never) logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from pydantic_core import to_json

from tether.errors import (
    AuthenticationError,
    BadRequest,
    ContextLengthExceeded,
    InvalidResponse,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from tether.models.aiohttp_transport import AiohttpTransport
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
from tether.models.http import (
    header_request_id,
    redact,
    retry_after_seconds,
    transport_error,
)
from tether.types import Usage

log = logging.getLogger("tether.models.openai_compat")

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=60.0, write=30.0, pool=5.0)
_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


def _error_message(body: bytes, secrets: list[str]) -> tuple[str, str]:
    """(message, code) from an OpenAI-style error body, tolerating anything else. Secrets
    are redacted before anything is shortened, so no fragment of one survives a cut."""
    try:
        data = json.loads(body)
    except ValueError:
        return redact(body.decode("utf-8", "replace"), secrets)[:300], ""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = f"{error.get('code') or ''} {error.get('type') or ''}".strip()
        return redact(str(error.get("message", "")), secrets)[:500], code
    if isinstance(error, str):
        return redact(error, secrets)[:500], ""
    return redact(str(data), secrets)[:300], ""


# How OpenAI, vLLM and llama.cpp word "the prompt does not fit the context window".
_CONTEXT_MARKERS = (
    "context_length",
    "maximum context length",
    "exceed_context_size",
    "exceeds the available context",
    "too long",
)


def map_error(
    status: int, headers: httpx.Headers, body: bytes, secrets: list[str]
) -> ProviderError:
    message, code = _error_message(body, secrets)
    request_id = header_request_id(headers)
    text = f"provider answered {status}: {message}".rstrip(": ")
    if status in (401, 403):
        return AuthenticationError(text, request_id=request_id, status=status)
    if status == 429:
        return RateLimited(
            text, request_id=request_id, status=status, retry_after=retry_after_seconds(headers)
        )
    if status >= 500:
        return ProviderUnavailable(text, request_id=request_id, status=status)
    lowered = f"{code} {message}".lower()
    if any(marker in lowered for marker in _CONTEXT_MARKERS):
        return ContextLengthExceeded(text, request_id=request_id, status=status)
    return BadRequest(text, request_id=request_id, status=status)


def _usage(data: Any) -> Usage:
    if not isinstance(data, dict):
        return Usage()
    details = data.get("prompt_tokens_details") or {}
    return Usage(
        input_tokens=int(data.get("prompt_tokens") or 0),
        output_tokens=int(data.get("completion_tokens") or 0),
        cached_input_tokens=int(details.get("cached_tokens") or 0)
        if isinstance(details, dict)
        else 0,
    )


class OpenAICompatibleChat:
    """A `ChatModel` for any server speaking OpenAI's /v1/chat/completions."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        first_token_timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        name: str | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._name = name or f"openai-compat:{model}"
        self._transport = transport or AiohttpTransport()
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=timeout,
            transport=self._transport,
        )
        # Parsed once: httpx re-parses a string URL (and merges it with base_url) on every
        # request, ~0.1 ms of CPU each; an absolute httpx.URL is reused as it is.
        self._url = self._client.base_url.join("chat/completions")
        # What `build_request` would merge in on every call, merged once (~15 µs a call).
        self._post_headers = {
            **{k.decode("latin-1"): v.decode("latin-1") for k, v in self._client.headers.raw},
            "Content-Type": "application/json",
        }
        self._post_extensions = {"timeout": self._client.timeout.as_dict()}
        self._model = model
        self._secrets = [api_key] if api_key else []
        self._first_token_timeout = first_token_timeout

    @property
    def name(self) -> str:
        return self._name

    def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [
                {"role": m.role, "content": m.content, **({"name": m.name} if m.name else {})}
                for m in request.messages
            ],
            "max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stop:
            body["stop"] = list(request.stop)
        if request.tools:
            body["tools"] = [
                {"type": "function", "function": t.model_dump()} for t in request.tools
            ]
        if request.tool_choice is not None:
            body["tool_choice"] = (
                request.tool_choice
                if request.tool_choice in ("auto", "none", "required")
                else {"type": "function", "function": {"name": request.tool_choice}}
            )
        if request.response_format is not None:
            fmt = request.response_format
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": fmt.name, "schema": fmt.json_schema, "strict": fmt.strict},
            }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def _headers(self, request: ChatRequest) -> dict[str, str]:
        return {"Idempotency-Key": request.idempotency_key} if request.idempotency_key else {}

    def _transport_error(self, exc: httpx.HTTPError) -> ProviderError:
        return transport_error(exc, self._secrets)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        # Straight to the transport: the client's auth, redirect, cookie and hook layers
        # do nothing for this call (auth is a header, redirects are not followed) and cost
        # ~0.1 ms per request. The request carries the client's headers and timeout, as
        # `build_request` would make it, so what goes on the wire is the same.
        outgoing = httpx.Request(
            "POST",
            self._url,
            headers={**self._post_headers, **self._headers(request)},
            content=to_json(self._body(request, stream=False)),
            extensions=self._post_extensions,
        )
        try:
            response = await self._transport.handle_async_request(outgoing)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        request_id = header_request_id(response.headers)
        log.debug("chat %s -> %s request_id=%s", self._model, response.status_code, request_id)
        if response.status_code >= 400:
            raise map_error(response.status_code, response.headers, response.content, self._secrets)
        try:
            data = response.json()
            choice = data["choices"][0]
            message = choice["message"]
            calls = tuple(
                ToolCall(
                    id=c["id"],
                    name=c["function"]["name"],
                    arguments=c["function"].get("arguments") or "{}",
                )
                for c in message.get("tool_calls") or ()
            )
            return ChatResponse(
                text=message.get("content") or "",
                tool_calls=calls,
                usage=_usage(data.get("usage")),
                model=str(data.get("model") or self._model),
                finish_reason=_FINISH.get(str(choice.get("finish_reason")), "other"),
                request_id=request_id,
            )
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise InvalidResponse(
                f"malformed chat completion: {type(exc).__name__}: {exc}", request_id=request_id
            ) from None

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        body = self._body(request, stream=True)
        try:
            async with self._client.stream(
                "POST", self._url, json=body, headers=self._headers(request)
            ) as response:
                request_id = header_request_id(response.headers)
                if response.status_code >= 400:
                    raise map_error(
                        response.status_code,
                        response.headers,
                        await response.aread(),
                        self._secrets,
                    )
                async for event in self._events(response, request_id):
                    yield event
        except httpx.HTTPError as exc:
            error = self._transport_error(exc)
            yield ErrorEvent(error=str(error), kind=type(error).__name__)

    async def _events(
        self, response: httpx.Response, request_id: str | None
    ) -> AsyncIterator[StreamEvent]:
        lines = response.aiter_lines()
        calls: dict[int, dict[str, str]] = {}
        finish: FinishReason = "stop"
        usage: Usage | None = None
        loop = asyncio.get_running_loop()
        # Until the model produces something (a token, a tool call, a finish), keep-alive
        # comments and role-only chunks do not stop the first-token clock.
        first_deadline: float | None = loop.time() + self._first_token_timeout
        while True:
            try:
                if first_deadline is not None:
                    remaining = max(first_deadline - loop.time(), 0.0)
                    line = await asyncio.wait_for(anext(lines), remaining)
                else:
                    line = await anext(lines)
            except StopAsyncIteration:
                yield ErrorEvent(error="stream ended before [DONE]", kind="InvalidResponse")
                return
            except TimeoutError:
                yield ErrorEvent(
                    error=f"no output within the {self._first_token_timeout}s first-token timeout",
                    kind="Timeout",
                )
                return
            if not line.startswith("data:"):
                continue  # SSE comments, event names and keep-alive blank lines
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            try:
                chunk = json.loads(payload)
            except ValueError:
                yield ErrorEvent(
                    error=f"malformed SSE data: {redact(payload, self._secrets)[:100]!r}",
                    kind="InvalidResponse",
                )
                return
            if not isinstance(chunk, dict):
                yield ErrorEvent(error="SSE data is not a JSON object", kind="InvalidResponse")
                return
            if chunk.get("error"):
                # vLLM and OpenAI report a failure mid-stream as an error chunk (often
                # followed by [DONE]); it must not read as a normal finish.
                error = map_error(500, response.headers, payload.encode(), self._secrets)
                yield ErrorEvent(error=str(error), kind=type(error).__name__)
                return
            if any(
                (c.get("delta") or {}).get("content")
                or (c.get("delta") or {}).get("tool_calls")
                or c.get("finish_reason")
                for c in chunk.get("choices") or ()
            ):
                first_deadline = None
            if chunk.get("usage"):
                usage = _usage(chunk["usage"])
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    yield TokenEvent(text=delta["content"])
                for call in delta.get("tool_calls") or ():
                    slot = calls.setdefault(
                        int(call.get("index", 0)), {"id": "", "name": "", "arguments": ""}
                    )
                    fn = call.get("function") or {}
                    slot["id"] = call.get("id") or slot["id"]
                    slot["name"] = fn.get("name") or slot["name"]
                    slot["arguments"] += fn.get("arguments") or ""
                if choice.get("finish_reason"):
                    finish = _FINISH.get(str(choice["finish_reason"]), "other")
        for index in sorted(calls):
            slot = calls[index]
            yield ToolCallEvent(
                call=ToolCall(id=slot["id"], name=slot["name"], arguments=slot["arguments"] or "{}")
            )
        if usage is not None:
            yield UsageEvent(usage=usage)
        yield DoneEvent(finish_reason=finish, request_id=request_id)

    async def aclose(self) -> None:
        await self._client.aclose()
