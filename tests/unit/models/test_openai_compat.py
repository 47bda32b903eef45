"""OpenAICompatibleChat against httpx.MockTransport: the real client code at the transport seam."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tether.errors import (
    AuthenticationError,
    BadRequest,
    ContextLengthExceeded,
    InvalidResponse,
    ProviderUnavailable,
    RateLimited,
    Timeout,
)
from tether.models.chat import (
    ChatRequest,
    DoneEvent,
    ErrorEvent,
    JsonSchemaFormat,
    TokenEvent,
    ToolCallEvent,
    ToolSpec,
    UsageEvent,
)
from tether.models.openai_compat import OpenAICompatibleChat, retry_after_seconds
from tether.types import Message

KEY = "sk-test-0123456789abcdef"
REQUEST = ChatRequest(messages=(Message(role="user", content="hi"),), max_tokens=16)


def model(handler: httpx.MockTransport | None = None, **kwargs: object) -> OpenAICompatibleChat:
    return OpenAICompatibleChat(
        "http://llm.test/v1",
        "m1",
        api_key=KEY,
        transport=handler,
        **kwargs,  # type: ignore[arg-type]
    )


def completion(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "model": "m1",
        "choices": [
            {"message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": 7,
            "completion_tokens": 2,
            "prompt_tokens_details": {"cached_tokens": 3},
        },
    }
    body.update(overrides)
    return body


async def test_chat_sends_the_wire_format_and_parses_the_reply() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=completion(), headers={"x-request-id": "req-1"})

    request = ChatRequest(
        messages=(Message(role="system", content="be brief"), Message(role="user", content="hi")),
        max_tokens=32,
        temperature=0.0,
        tools=(ToolSpec(name="lookup", description="find", parameters={"type": "object"}),),
        tool_choice="lookup",
        response_format=JsonSchemaFormat(name="answer", schema={"type": "object"}),
        idempotency_key="idem-42",
    )
    reply = await model(httpx.MockTransport(handler)).chat(request)
    sent = seen[0]
    assert sent.url == "http://llm.test/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["idempotency-key"] == "idem-42"
    body = json.loads(sent.content)
    assert body["model"] == "m1" and body["max_tokens"] == 32 and body["temperature"] == 0.0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["tools"][0] == {
        "type": "function",
        "function": {"name": "lookup", "description": "find", "parameters": {"type": "object"}},
    }
    assert body["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert body["response_format"]["json_schema"] == {
        "name": "answer",
        "schema": {"type": "object"},
        "strict": True,
    }
    assert "stream" not in body
    assert reply.text == "hello" and reply.request_id == "req-1" and reply.finish_reason == "stop"
    assert (
        reply.usage.input_tokens,
        reply.usage.output_tokens,
        reply.usage.cached_input_tokens,
    ) == (
        7,
        2,
        3,
    )


async def test_chat_sends_exactly_what_the_httpx_client_would_build() -> None:
    """The non-streaming call builds its request itself (for speed): headers, body bytes
    and timeouts must stay those of `AsyncClient.build_request`."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=completion())

    chat = model(httpx.MockTransport(handler), timeout=httpx.Timeout(7.0, connect=2.0))
    request = ChatRequest(
        messages=(Message(role="user", content='héllo ✓ "quoted"'),),
        max_tokens=8,
        temperature=0.5,
        stop=("END",),
        idempotency_key="idem-7",
    )
    await chat.chat(request)
    expected = chat._client.build_request(
        "POST",
        "chat/completions",
        json=chat._body(request, stream=False),
        headers={"Idempotency-Key": "idem-7"},
    )
    sent = seen[0]
    assert sent.url == expected.url
    assert sorted(sent.headers.raw) == sorted(expected.headers.raw)
    assert sent.content == expected.read()
    assert sent.extensions["timeout"] == expected.extensions["timeout"]
    assert sent.extensions["timeout"]["connect"] == 2.0


async def test_chat_parses_tool_calls() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q": "x"}'},
            }
        ],
    }
    body = completion(choices=[{"message": message, "finish_reason": "tool_calls"}])
    reply = await model(httpx.MockTransport(lambda r: httpx.Response(200, json=body))).chat(REQUEST)
    assert reply.text == "" and reply.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [
        ("call_1", "lookup", '{"q": "x"}')
    ]


@pytest.mark.parametrize(
    ("status", "body", "headers", "error"),
    [
        (401, {"error": {"message": "bad key"}}, {}, AuthenticationError),
        (403, {"error": {"message": "forbidden"}}, {}, AuthenticationError),
        (429, {"error": {"message": "slow down"}}, {"retry-after": "2"}, RateLimited),
        (500, {"error": {"message": "oops"}}, {}, ProviderUnavailable),
        (502, b"<html>bad gateway</html>", {}, ProviderUnavailable),
        (503, {"error": "overloaded"}, {}, ProviderUnavailable),
        (
            400,
            {"error": {"message": "too many tokens", "code": "context_length_exceeded"}},
            {},
            ContextLengthExceeded,
        ),
        (
            400,
            {"error": {"message": "This model's maximum context length is 8192 tokens"}},
            {},
            ContextLengthExceeded,
        ),
        (
            400,
            {
                "error": {
                    "code": 400,
                    "type": "exceed_context_size_error",
                    "message": "request (3031 tokens) exceeds the available context size",
                }
            },
            {},
            ContextLengthExceeded,
        ),
        (400, {"error": {"message": "unknown field"}}, {}, BadRequest),
        (404, {"error": {"message": "no such model"}}, {}, BadRequest),
    ],
)
async def test_http_errors_map_to_typed_errors_with_request_id(
    status: int, body: object, headers: dict[str, str], error: type[Exception]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        all_headers = {"x-request-id": "req-9", **headers}
        if isinstance(body, bytes):
            return httpx.Response(status, content=body, headers=all_headers)
        return httpx.Response(status, json=body, headers=all_headers)

    with pytest.raises(error) as caught:
        await model(httpx.MockTransport(handler)).chat(REQUEST)
    assert caught.value.request_id == "req-9"  # type: ignore[attr-defined]
    assert caught.value.status == status  # type: ignore[attr-defined]
    assert "req-9" in str(caught.value)
    if error is RateLimited:
        assert caught.value.retry_after == 2.0  # type: ignore[attr-defined]
        assert caught.value.retryable  # type: ignore[attr-defined]
    if error in (BadRequest, ContextLengthExceeded, AuthenticationError):
        assert not caught.value.retryable  # type: ignore[attr-defined]


def test_retry_after_forms() -> None:
    assert retry_after_seconds(httpx.Headers({"retry-after": "3.5"})) == 3.5
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    date = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert retry_after_seconds(httpx.Headers({"retry-after": date}), now=1445412480.0) == 10.0
    assert retry_after_seconds(httpx.Headers({"retry-after": "soon"})) is None
    assert retry_after_seconds(httpx.Headers({})) is None


async def test_a_key_echoed_by_the_provider_is_redacted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"message": f"invalid key {KEY}"}})

    with pytest.raises(AuthenticationError) as caught:
        await model(httpx.MockTransport(handler)).chat(REQUEST)
    assert KEY not in str(caught.value) and "***" in str(caught.value)


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (httpx.ConnectError("connection refused"), ProviderUnavailable),
        (httpx.RemoteProtocolError("peer closed connection"), ProviderUnavailable),
        (httpx.ReadTimeout("read timed out"), Timeout),
        (httpx.ConnectTimeout("connect timed out"), Timeout),
    ],
)
async def test_transport_failures_map_to_typed_errors(exc: Exception, error: type) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(error):
        await model(httpx.MockTransport(handler)).chat(REQUEST)


@pytest.mark.parametrize(
    "body", [b"not json", b'{"choices": []}', b'{"choices": [{"delta": {}}]}', b"[]"]
)
async def test_malformed_success_bodies_are_invalid_response(body: bytes) -> None:
    handler = httpx.MockTransport(lambda r: httpx.Response(200, content=body))
    with pytest.raises(InvalidResponse):
        await model(handler).chat(REQUEST)


def sse(*chunks: object, done: bool = True) -> bytes:
    lines = [f"data: {json.dumps(c)}\n\n" for c in chunks]
    if done:
        lines.append("data: [DONE]\n\n")
    return (": keep-alive\n\n" + "".join(lines)).encode()


def delta(content: str | None = None, **extra: object) -> dict[str, object]:
    d: dict[str, object] = {"content": content} if content is not None else {}
    d.update(extra)
    return {"choices": [{"index": 0, "delta": d, "finish_reason": None}]}


async def collect(m: OpenAICompatibleChat) -> list[object]:
    return [event async for event in m.stream(REQUEST)]


async def test_stream_yields_tokens_tool_calls_usage_and_done() -> None:
    body = sse(
        delta("Hel"),
        delta("lo"),
        delta(
            tool_calls=[
                {"index": 0, "id": "call_1", "function": {"name": "lookup", "arguments": '{"q"'}}
            ]
        ),
        delta(tool_calls=[{"index": 0, "function": {"arguments": ': "x"}'}}]),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 4}},
    )
    seen: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, content=body, headers={"x-request-id": "req-s"})

    events = await collect(model(httpx.MockTransport(handler)))
    assert seen[0]["stream"] is True and seen[0]["stream_options"] == {"include_usage": True}
    assert [e.text for e in events if isinstance(e, TokenEvent)] == ["Hel", "lo"]
    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert [(c.id, c.name, c.arguments) for c in calls] == [("call_1", "lookup", '{"q": "x"}')]
    usage = [e.usage for e in events if isinstance(e, UsageEvent)]
    assert [(u.input_tokens, u.output_tokens) for u in usage] == [(5, 4)]
    assert isinstance(events[-1], DoneEvent)
    assert events[-1].finish_reason == "tool_calls" and events[-1].request_id == "req-s"


async def test_truncated_stream_ends_with_an_error_event() -> None:
    handler = httpx.MockTransport(
        lambda r: httpx.Response(200, content=sse(delta("par"), done=False))
    )
    events = await collect(model(handler))
    assert [type(e).__name__ for e in events] == ["TokenEvent", "ErrorEvent"]
    assert isinstance(events[-1], ErrorEvent) and events[-1].kind == "InvalidResponse"


async def test_malformed_sse_data_ends_with_an_error_event() -> None:
    content = b"data: {not json\n\n"
    handler = httpx.MockTransport(lambda r: httpx.Response(200, content=content))
    events = await collect(model(handler))
    assert len(events) == 1 and isinstance(events[0], ErrorEvent)
    assert events[0].kind == "InvalidResponse"


async def test_stream_http_error_raises_before_any_event() -> None:
    handler = httpx.MockTransport(
        lambda r: httpx.Response(
            429, json={"error": {"message": "x"}}, headers={"retry-after": "1"}
        )
    )
    with pytest.raises(RateLimited):
        await collect(model(handler))


class SlowStream(httpx.AsyncByteStream):
    """Sends its chunks with a delay before each; records whether it was closed."""

    def __init__(self, chunks: list[bytes], delay: float) -> None:
        self.chunks = chunks
        self.delay = delay
        self.closed = False
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            await asyncio.sleep(self.delay)
            self.sent += 1
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


async def test_first_token_timeout_ends_the_stream_promptly() -> None:
    stream = SlowStream([sse(delta("late"))], delay=5.0)
    handler = httpx.MockTransport(lambda r: httpx.Response(200, stream=stream))
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = await collect(model(handler, first_token_timeout=0.2))
    assert loop.time() - started < 2.0
    assert len(events) == 1 and isinstance(events[0], ErrorEvent) and events[0].kind == "Timeout"
    assert stream.closed


async def test_closing_the_consumer_closes_the_upstream_response() -> None:
    chunks = [f"data: {json.dumps(delta(str(i)))}\n\n".encode() for i in range(100)]
    stream = SlowStream(chunks, delay=0.001)
    handler = httpx.MockTransport(lambda r: httpx.Response(200, stream=stream))
    events = model(handler).stream(REQUEST)
    first = await anext(events)
    assert isinstance(first, TokenEvent)
    await events.aclose()  # type: ignore[attr-defined]
    assert stream.closed
    assert stream.sent < 100
