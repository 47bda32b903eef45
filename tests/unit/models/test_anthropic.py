"""AnthropicChat against httpx.MockTransport: the real client code at the transport seam."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from pydantic import BaseModel

from tether.errors import (
    AuthenticationError,
    BadRequest,
    ConfigError,
    ContextLengthExceeded,
    InvalidResponse,
    ProviderUnavailable,
    RateLimited,
    Timeout,
)
from tether.models.anthropic import AnthropicChat
from tether.models.chat import (
    ChatRequest,
    DoneEvent,
    ErrorEvent,
    JsonSchemaFormat,
    StreamEvent,
    TokenEvent,
    ToolCallEvent,
    ToolSpec,
    UsageEvent,
)
from tether.models.retry import RetryingChatModel, RetryPolicy
from tether.structured import generate
from tether.types import Message

KEY = "sk-ant-test-0123456789abcdef"
REQUEST = ChatRequest(messages=(Message(role="user", content="hi"),), max_tokens=16)
Handler = Callable[[httpx.Request], httpx.Response]


def model(handler: Handler | None = None, **kwargs: object) -> AnthropicChat:
    transport = httpx.MockTransport(handler) if handler is not None else None
    return AnthropicChat(
        "claude-test",
        api_key=KEY,
        base_url="http://anthropic.test/v1",
        transport=transport,
        **kwargs,  # type: ignore[arg-type]
    )


def message(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test-20250101",
        "content": [{"type": "text", "text": "hello"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 7,
            "output_tokens": 2,
            "cache_read_input_tokens": 3,
            "cache_creation_input_tokens": 4,
        },
    }
    body.update(overrides)
    return body


def recording(
    reply: dict[str, object], seen: list[httpx.Request], headers: dict[str, str] | None = None
) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=reply, headers=headers or {})

    return handler


# --- request wire format -----------------------------------------------------------------


async def test_chat_sends_the_messages_wire_format() -> None:
    seen: list[httpx.Request] = []
    request = ChatRequest(
        messages=(
            Message(role="system", content="be brief"),
            Message(role="user", content="hi"),
            Message(role="assistant", content="hello"),
            Message(role="system", content="cite sources"),
            Message(role="user", content="why?", name="alice"),
        ),
        max_tokens=32,
        temperature=0.0,
        tools=(ToolSpec(name="lookup", description="find", parameters={"type": "object"}),),
        tool_choice="lookup",
        stop=("END",),
        idempotency_key="idem-42",
    )
    await model(recording(message(), seen)).chat(request)
    sent = seen[0]
    assert sent.method == "POST" and sent.url == "http://anthropic.test/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["idempotency-key"] == "idem-42"
    assert "authorization" not in sent.headers
    body = json.loads(sent.content)
    assert body["model"] == "claude-test" and body["max_tokens"] == 32
    assert body["temperature"] == 0.0 and body["stop_sequences"] == ["END"]
    assert body["system"] == "be brief\n\ncite sources"
    assert body["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "why?"},
    ]
    assert body["tools"] == [
        {"name": "lookup", "description": "find", "input_schema": {"type": "object"}}
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "lookup"}
    assert "stream" not in body


async def test_a_minimal_request_omits_optional_fields() -> None:
    seen: list[httpx.Request] = []
    await model(recording(message(), seen)).chat(REQUEST)
    body = json.loads(seen[0].content)
    assert set(body) == {"model", "max_tokens", "messages"}
    assert "idempotency-key" not in seen[0].headers


async def test_temperature_is_clamped_to_anthropics_range() -> None:
    seen: list[httpx.Request] = []
    request = REQUEST.model_copy(update={"temperature": 1.7})
    await model(recording(message(), seen)).chat(request)
    assert json.loads(seen[0].content)["temperature"] == 1.0


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ("lookup", {"type": "tool", "name": "lookup"}),
    ],
)
async def test_tool_choice_maps_to_anthropic_types(choice: str, wire: dict[str, str]) -> None:
    seen: list[httpx.Request] = []
    request = REQUEST.model_copy(
        update={"tools": (ToolSpec(name="lookup"),), "tool_choice": choice}
    )
    await model(recording(message(), seen)).chat(request)
    body = json.loads(seen[0].content)
    assert body["tool_choice"] == wire
    assert body["tools"] == [{"name": "lookup", "input_schema": {"type": "object"}}]


async def test_tool_choice_without_tools_is_not_sent() -> None:
    seen: list[httpx.Request] = []
    await model(recording(message(), seen)).chat(REQUEST.model_copy(update={"tool_choice": "auto"}))
    body = json.loads(seen[0].content)
    assert "tool_choice" not in body and "tools" not in body


SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
JSON_REQUEST = REQUEST.model_copy(
    update={"response_format": JsonSchemaFormat(name="Place", schema=SCHEMA)}
)


async def test_response_format_becomes_a_forced_tool_and_its_input_the_text() -> None:
    seen: list[httpx.Request] = []
    reply = message(
        content=[
            {"type": "tool_use", "id": "toolu_1", "name": "Place", "input": {"city": "Zürich"}}
        ],
        stop_reason="tool_use",
    )
    response = await model(recording(reply, seen)).chat(JSON_REQUEST)
    body = json.loads(seen[0].content)
    assert "response_format" not in body
    assert [t["name"] for t in body["tools"]] == ["Place"]
    assert body["tools"][0]["input_schema"] == SCHEMA
    assert body["tool_choice"] == {"type": "tool", "name": "Place"}
    assert json.loads(response.text) == {"city": "Zürich"}
    assert response.tool_calls == ()
    assert response.finish_reason == "stop"


async def test_response_format_alongside_tools_forces_the_format_tool() -> None:
    seen: list[httpx.Request] = []
    request = JSON_REQUEST.model_copy(
        update={"tools": (ToolSpec(name="lookup"),), "tool_choice": "auto"}
    )
    reply = message(
        content=[{"type": "tool_use", "id": "t", "name": "Place", "input": {"city": "Oslo"}}],
        stop_reason="tool_use",
    )
    response = await model(recording(reply, seen)).chat(request)
    body = json.loads(seen[0].content)
    assert [t["name"] for t in body["tools"]] == ["lookup", "Place"]
    assert body["tool_choice"] == {"type": "tool", "name": "Place"}
    assert response.text == '{"city": "Oslo"}'


async def test_a_format_reply_without_the_tool_falls_back_to_the_text() -> None:
    reply = message(content=[{"type": "text", "text": '{"city": "Rome"}'}])
    response = await model(recording(reply, [])).chat(JSON_REQUEST)
    assert response.text == '{"city": "Rome"}'


async def test_a_format_named_like_a_tool_is_rejected_before_sending() -> None:
    seen: list[httpx.Request] = []
    request = JSON_REQUEST.model_copy(update={"tools": (ToolSpec(name="Place"),)})
    with pytest.raises(BadRequest, match="Place"):
        await model(recording(message(), seen)).chat(request)
    assert seen == []


async def test_tool_role_messages_are_rejected_before_sending() -> None:
    seen: list[httpx.Request] = []
    request = ChatRequest(
        messages=(Message(role="user", content="hi"), Message(role="tool", content="42"))
    )
    m = model(recording(message(), seen))
    with pytest.raises(BadRequest, match="tool"):
        await m.chat(request)
    with pytest.raises(BadRequest, match="tool"):
        await collect(m, request)
    assert seen == []


def test_name_and_key_requirement() -> None:
    assert model().name == "anthropic:claude-test"
    with pytest.raises(ConfigError):
        AnthropicChat("claude-test", api_key="")


# --- response parsing --------------------------------------------------------------------


async def test_chat_parses_text_usage_model_and_request_id() -> None:
    reply = message(
        content=[
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "hel"},
            {"type": "text", "text": "lo"},
        ]
    )
    response = await model(recording(reply, [], {"request-id": "req_1"})).chat(REQUEST)
    assert response.text == "hello"
    assert response.request_id == "req_1"
    assert response.model == "claude-test-20250101"
    assert response.finish_reason == "stop"
    usage = response.usage
    # input_tokens counts every prompt token: 7 uncached + 3 cache reads + 4 cache writes.
    assert (
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
        usage.cache_write_tokens,
    ) == (14, 2, 3, 4)


async def test_chat_parses_tool_use_blocks_into_tool_calls() -> None:
    reply = message(
        content=[
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x", "n": 2}},
            {"type": "tool_use", "id": "toolu_2", "name": "lookup", "input": {}},
        ],
        stop_reason="tool_use",
    )
    response = await model(recording(reply, [])).chat(REQUEST)
    assert response.text == "Let me look." and response.finish_reason == "tool_calls"
    calls = [(c.id, c.name, json.loads(c.arguments)) for c in response.tool_calls]
    assert calls == [("toolu_1", "lookup", {"q": "x", "n": 2}), ("toolu_2", "lookup", {})]


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("pause_turn", "other"),
        (None, "other"),
    ],
)
async def test_stop_reasons_map_to_finish_reasons(stop_reason: str | None, finish: str) -> None:
    response = await model(recording(message(stop_reason=stop_reason), [])).chat(REQUEST)
    assert response.finish_reason == finish


async def test_missing_cache_fields_count_as_zero() -> None:
    reply = message(usage={"input_tokens": 5, "output_tokens": 1})
    usage = (await model(recording(reply, [])).chat(REQUEST)).usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens) == (5, 0, 0)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"type": "message", "content": "hello"}',
        b'{"type": "message", "content": [{"text": "no type"}]}',
        b'{"type": "message", "content": [{"type": "tool_use", "id": "t", "name": "x", "input": 3}]}',
        b'{"type": "error", "error": {"type": "api_error", "message": "boom"}}',
        b'{"type": "message", "content": [], "usage": {"input_tokens": -1}}',
    ],
)
async def test_malformed_success_bodies_are_invalid_response(body: bytes) -> None:
    m = model(lambda r: httpx.Response(200, content=body, headers={"request-id": "req_m"}))
    with pytest.raises(InvalidResponse) as caught:
        await m.chat(REQUEST)
    assert caught.value.request_id == "req_m"


# --- errors -------------------------------------------------------------------------------


def error_body(kind: str, text: str) -> dict[str, object]:
    return {"type": "error", "error": {"type": kind, "message": text}}


@pytest.mark.parametrize(
    ("status", "body", "headers", "error"),
    [
        (401, error_body("authentication_error", "invalid x-api-key"), {}, AuthenticationError),
        (403, error_body("permission_error", "no access"), {}, AuthenticationError),
        (429, error_body("rate_limit_error", "slow down"), {"retry-after": "7"}, RateLimited),
        (500, error_body("api_error", "internal"), {}, ProviderUnavailable),
        (502, b"<html>bad gateway</html>", {}, ProviderUnavailable),
        (503, error_body("api_error", "unavailable"), {}, ProviderUnavailable),
        (529, error_body("overloaded_error", "Overloaded"), {}, ProviderUnavailable),
        (
            400,
            error_body(
                "invalid_request_error", "prompt is too long: 208656 tokens > 200000 maximum"
            ),
            {},
            ContextLengthExceeded,
        ),
        (
            400,
            error_body(
                "invalid_request_error",
                "input length and `max_tokens` exceed context limit: 199000 + 4096 > 200000",
            ),
            {},
            ContextLengthExceeded,
        ),
        (400, error_body("invalid_request_error", "max_tokens: Field required"), {}, BadRequest),
        (404, error_body("not_found_error", "model: claude-nope"), {}, BadRequest),
        (413, error_body("request_too_large", "Request exceeds the maximum size"), {}, BadRequest),
    ],
)
async def test_http_errors_map_to_typed_errors_with_request_id(
    status: int, body: object, headers: dict[str, str], error: type[Exception]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        all_headers = {"request-id": "req_9", **headers}
        if isinstance(body, bytes):
            return httpx.Response(status, content=body, headers=all_headers)
        return httpx.Response(status, json=body, headers=all_headers)

    with pytest.raises(error) as caught:
        await model(handler).chat(REQUEST)
    assert type(caught.value) is error
    assert caught.value.request_id == "req_9"  # type: ignore[attr-defined]
    assert caught.value.status == status  # type: ignore[attr-defined]
    assert "req_9" in str(caught.value) and str(status) in str(caught.value)
    if error is RateLimited:
        assert caught.value.retry_after == 7.0  # type: ignore[attr-defined]
    retryable = error in (RateLimited, ProviderUnavailable)
    assert caught.value.retryable is retryable  # type: ignore[attr-defined]


async def test_429_without_retry_after_has_no_hint() -> None:
    m = model(lambda r: httpx.Response(429, json=error_body("rate_limit_error", "x")))
    with pytest.raises(RateLimited) as caught:
        await m.chat(REQUEST)
    assert caught.value.retry_after is None


async def test_the_request_id_in_the_error_body_is_used_without_the_header() -> None:
    body = {**error_body("overloaded_error", "Overloaded"), "request_id": "req_body"}
    with pytest.raises(ProviderUnavailable) as caught:
        await model(lambda r: httpx.Response(529, json=body)).chat(REQUEST)
    assert caught.value.request_id == "req_body" and "Overloaded" in str(caught.value)


@pytest.mark.parametrize("status", [400, 401, 429, 529])
async def test_a_key_echoed_by_the_provider_is_redacted(status: int) -> None:
    body = error_body("authentication_error", f"invalid x-api-key {KEY}")
    with pytest.raises(Exception) as caught:
        await model(lambda r: httpx.Response(status, json=body)).chat(REQUEST)
    assert KEY not in str(caught.value) and "***" in str(caught.value)
    assert KEY not in repr(caught.value.args)


async def test_a_key_in_a_transport_error_is_redacted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect with key {KEY}")

    with pytest.raises(ProviderUnavailable) as caught:
        await model(handler).chat(REQUEST)
    assert KEY not in str(caught.value) and "***" in str(caught.value)
    events = await collect(model(handler))
    assert len(events) == 1 and isinstance(events[0], ErrorEvent)
    assert KEY not in events[0].error and events[0].kind == "ProviderUnavailable"


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (httpx.ConnectError("connection refused"), ProviderUnavailable),
        (httpx.RemoteProtocolError("peer closed connection"), ProviderUnavailable),
        (httpx.ReadTimeout("read timed out"), Timeout),
        (httpx.ConnectTimeout("connect timed out"), Timeout),
        (httpx.PoolTimeout("pool timed out"), Timeout),
    ],
)
async def test_transport_failures_map_to_typed_errors(exc: Exception, error: type) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(error):
        await model(handler).chat(REQUEST)


# --- streaming ----------------------------------------------------------------------------


def sse(*events: dict[str, object], stop: bool = True, ping: bool = True) -> bytes:
    """Anthropic-style SSE: `event:` then `data:` lines, a ping after message_start."""
    items = list(events) + ([{"type": "message_stop"}] if stop else [])
    out = []
    for i, event in enumerate(items):
        out.append(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n")
        if ping and i == 0:
            out.append('event: ping\ndata: {"type": "ping"}\n\n')
    return "".join(out).encode()


def start(**usage: int) -> dict[str, object]:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 5, "output_tokens": 1, **usage},
        },
    }


def text_block(index: int) -> dict[str, object]:
    return {
        "type": "content_block_start",
        "index": index,
        "content_block": {"type": "text", "text": ""},
    }


def tool_block(index: int, id: str, name: str) -> dict[str, object]:
    return {
        "type": "content_block_start",
        "index": index,
        "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}},
    }


def text_delta(index: int, text: str) -> dict[str, object]:
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "text_delta", "text": text},
    }


def json_delta(index: int, partial: str) -> dict[str, object]:
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "input_json_delta", "partial_json": partial},
    }


def block_stop(index: int) -> dict[str, object]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str, **usage: int) -> dict[str, object]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": usage,
    }


async def collect(m: AnthropicChat, request: ChatRequest = REQUEST) -> list[StreamEvent]:
    return [event async for event in m.stream(request)]


def streaming(body: bytes, seen: list[httpx.Request] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(
            200,
            content=body,
            headers={"content-type": "text/event-stream", "request-id": "req_s"},
        )

    return handler


async def test_stream_yields_tokens_one_tool_call_usage_and_done() -> None:
    body = sse(
        start(cache_read_input_tokens=10, cache_creation_input_tokens=20),
        text_block(0),
        text_delta(0, "Hel"),
        text_delta(0, "lo"),
        block_stop(0),
        tool_block(1, "toolu_1", "lookup"),
        json_delta(1, ""),
        json_delta(1, '{"q"'),
        json_delta(1, ': "x"}'),
        block_stop(1),
        message_delta("tool_use", output_tokens=9),
    )
    seen: list[httpx.Request] = []
    events = await collect(model(streaming(body, seen)))
    sent = json.loads(seen[0].content)
    assert sent["stream"] is True and seen[0].headers["x-api-key"] == KEY
    assert [type(e).__name__ for e in events] == [
        "TokenEvent",
        "TokenEvent",
        "ToolCallEvent",
        "UsageEvent",
        "DoneEvent",
    ]
    assert [e.text for e in events if isinstance(e, TokenEvent)] == ["Hel", "lo"]
    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert [(c.id, c.name, c.arguments) for c in calls] == [("toolu_1", "lookup", '{"q": "x"}')]
    usage = next(e.usage for e in events if isinstance(e, UsageEvent))
    assert (
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
        usage.cache_write_tokens,
    ) == (35, 9, 10, 20)
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert done.finish_reason == "tool_calls" and done.request_id == "req_s"


async def test_stream_usage_in_the_final_message_delta_replaces_the_start_counts() -> None:
    body = sse(
        start(),
        text_block(0),
        text_delta(0, "ok"),
        block_stop(0),
        message_delta("max_tokens", input_tokens=6, output_tokens=16, cache_read_input_tokens=2),
    )
    events = await collect(model(streaming(body)))
    usage = next(e.usage for e in events if isinstance(e, UsageEvent))
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens) == (8, 16, 2)
    assert isinstance(events[-1], DoneEvent) and events[-1].finish_reason == "length"


async def test_stream_with_response_format_streams_the_tool_input_as_tokens() -> None:
    body = sse(
        start(),
        tool_block(0, "toolu_1", "Place"),
        json_delta(0, '{"city": '),
        json_delta(0, '"Oslo"}'),
        block_stop(0),
        message_delta("tool_use", output_tokens=5),
    )
    seen: list[httpx.Request] = []
    events = await collect(model(streaming(body, seen)), JSON_REQUEST)
    assert json.loads(seen[0].content)["tool_choice"] == {"type": "tool", "name": "Place"}
    tokens = [e.text for e in events if isinstance(e, TokenEvent)]
    assert json.loads("".join(tokens)) == {"city": "Oslo"}
    assert not any(isinstance(e, ToolCallEvent) for e in events)
    assert isinstance(events[-1], DoneEvent) and events[-1].finish_reason == "stop"


async def test_a_tool_input_given_whole_at_block_start_is_used() -> None:
    block = tool_block(0, "toolu_1", "lookup")
    block["content_block"] = {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "lookup",
        "input": {"q": 1},
    }
    body = sse(start(), block, block_stop(0), message_delta("tool_use", output_tokens=3))
    events = await collect(model(streaming(body)))
    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert [json.loads(c.arguments) for c in calls] == [{"q": 1}]


@pytest.mark.parametrize(
    ("error_type", "text", "kind"),
    [
        ("overloaded_error", "Overloaded", "ProviderUnavailable"),
        ("api_error", "Internal server error", "ProviderUnavailable"),
        ("rate_limit_error", "slow down", "RateLimited"),
        (
            "invalid_request_error",
            "prompt is too long: 300000 tokens > 200000",
            "ContextLengthExceeded",
        ),
        ("invalid_request_error", "bad field", "BadRequest"),
        ("timeout_error", "took too long", "Timeout"),
        ("something_new", "?", "ProviderUnavailable"),
    ],
)
async def test_a_mid_stream_error_event_ends_the_stream_with_its_kind(
    error_type: str, text: str, kind: str
) -> None:
    body = sse(
        start(),
        text_block(0),
        text_delta(0, "par"),
        {"type": "error", "error": {"type": error_type, "message": text}},
        text_delta(0, "never seen"),
        stop=True,
    )
    events = await collect(model(streaming(body)))
    assert [type(e).__name__ for e in events] == ["TokenEvent", "ErrorEvent"]
    error = events[-1]
    assert isinstance(error, ErrorEvent) and error.kind == kind and text in error.error


async def test_a_key_echoed_in_a_stream_error_event_is_redacted() -> None:
    body = sse(start(), {"type": "error", "error": {"type": "api_error", "message": f"k={KEY}"}})
    events = await collect(model(streaming(body)))
    assert isinstance(events[-1], ErrorEvent)
    assert KEY not in events[-1].error and "***" in events[-1].error


async def test_truncated_stream_ends_with_an_invalid_response_event() -> None:
    body = sse(start(), text_block(0), text_delta(0, "par"), stop=False)
    events = await collect(model(streaming(body)))
    assert [type(e).__name__ for e in events] == ["TokenEvent", "ErrorEvent"]
    assert isinstance(events[-1], ErrorEvent) and events[-1].kind == "InvalidResponse"


async def test_a_truncated_tool_call_is_not_reported_as_complete() -> None:
    body = sse(start(), tool_block(0, "t1", "lookup"), json_delta(0, '{"q": "x'), stop=False)
    events = await collect(model(streaming(body)))
    assert [type(e).__name__ for e in events] == ["ErrorEvent"]
    assert isinstance(events[0], ErrorEvent) and events[0].kind == "InvalidResponse"


@pytest.mark.parametrize(
    "content",
    [
        b"event: content_block_delta\ndata: {not json\n\n",
        b'data: {"type": "content_block_delta", "index": 3, "delta": {"type": "text_delta"}}\n\n',
        b"data: [1, 2]\n\n",
    ],
)
async def test_malformed_sse_data_ends_with_an_error_event(content: bytes) -> None:
    events = await collect(model(lambda r: httpx.Response(200, content=content)))
    assert len(events) == 1 and isinstance(events[0], ErrorEvent)
    assert events[0].kind == "InvalidResponse"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (529, error_body("overloaded_error", "Overloaded"), ProviderUnavailable),
        (429, error_body("rate_limit_error", "x"), RateLimited),
        (401, error_body("authentication_error", "bad key"), AuthenticationError),
    ],
)
async def test_stream_http_error_raises_before_any_event(
    status: int, body: dict[str, object], error: type[Exception]
) -> None:
    m = model(lambda r: httpx.Response(status, json=body, headers={"request-id": "req_e"}))
    with pytest.raises(error) as caught:
        await collect(m)
    assert caught.value.request_id == "req_e"  # type: ignore[attr-defined]


class SlowStream(httpx.AsyncByteStream):
    """Sends each chunk after its own delay; records whether it was closed."""

    def __init__(self, chunks: list[tuple[float, bytes]]) -> None:
        self.chunks = chunks
        self.closed = False
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for delay, chunk in self.chunks:
            await asyncio.sleep(delay)
            self.sent += 1
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


async def test_first_token_timeout_ends_the_stream_promptly() -> None:
    stream = SlowStream([(5.0, sse(start(), text_block(0), text_delta(0, "late")))])
    m = model(lambda r: httpx.Response(200, stream=stream), first_token_timeout=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = await collect(m)
    assert loop.time() - started < 2.0
    assert len(events) == 1 and isinstance(events[0], ErrorEvent) and events[0].kind == "Timeout"
    assert stream.closed


async def test_pings_do_not_reset_the_first_token_timeout() -> None:
    ping = b'event: ping\ndata: {"type": "ping"}\n\n'
    chunks = [(0.0, sse(start(), stop=False, ping=False))] + [(0.05, ping)] * 40
    stream = SlowStream([*chunks, (0.0, sse(text_block(0), text_delta(0, "late"), ping=False))])
    m = model(lambda r: httpx.Response(200, stream=stream), first_token_timeout=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = await collect(m)
    assert loop.time() - started < 1.5
    assert len(events) == 1 and isinstance(events[0], ErrorEvent) and events[0].kind == "Timeout"
    assert stream.sent < len(stream.chunks)


async def test_a_slow_stream_after_the_first_token_is_not_cut_off() -> None:
    chunks = [
        (0.0, sse(start(), text_block(0), text_delta(0, "a"), stop=False)),
        (0.3, sse(text_delta(0, "b"), block_stop(0), message_delta("end_turn"), ping=False)),
    ]
    stream = SlowStream(chunks)
    m = model(lambda r: httpx.Response(200, stream=stream), first_token_timeout=0.2)
    events = await collect(m)
    assert [e.text for e in events if isinstance(e, TokenEvent)] == ["a", "b"]
    assert isinstance(events[-1], DoneEvent)


async def test_closing_the_consumer_closes_the_upstream_response() -> None:
    chunks = [(0.0, sse(start(), text_block(0), stop=False))] + [
        (0.001, sse(text_delta(0, str(i)), stop=False, ping=False)) for i in range(100)
    ]
    stream = SlowStream(chunks)
    events = model(lambda r: httpx.Response(200, stream=stream)).stream(REQUEST)
    first = await anext(events)
    assert isinstance(first, TokenEvent) and first.text == "0"
    await events.aclose()  # type: ignore[attr-defined]
    assert stream.closed
    assert stream.sent < len(chunks)


async def test_a_connection_dropped_mid_stream_ends_with_an_error_event() -> None:
    class Dropping(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield sse(start(), text_block(0), text_delta(0, "par"), stop=False)
            raise httpx.ReadError("connection reset")

    events = await collect(model(lambda r: httpx.Response(200, stream=Dropping())))
    assert [type(e).__name__ for e in events] == ["TokenEvent", "ErrorEvent"]
    assert isinstance(events[-1], ErrorEvent) and events[-1].kind == "ProviderUnavailable"


async def test_an_overloaded_error_event_before_any_output_is_retried() -> None:
    bodies = [
        sse(
            start(),
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        ),
        sse(start(), text_block(0), text_delta(0, "ok"), block_stop(0), message_delta("end_turn")),
    ]
    keys: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get("idempotency-key"))
        return httpx.Response(200, content=bodies[len(keys) - 1])

    async def no_sleep(seconds: float) -> None:
        return None

    retrying = RetryingChatModel(model(handler), RetryPolicy(max_attempts=3), sleep=no_sleep)
    events = [e async for e in retrying.stream(REQUEST)]
    assert [e.text for e in events if isinstance(e, TokenEvent)] == ["ok"]
    assert len(keys) == 2 and keys[0] is not None and keys[0] == keys[1]


# --- structured output through the forced tool -------------------------------------------


class Place(BaseModel):
    city: str
    population: int


async def test_structured_generate_returns_the_model_through_the_forced_tool() -> None:
    seen: list[dict[str, object]] = []
    replies = [
        {"city": "Oslo"},  # missing population: generate repairs
        {"city": "Oslo", "population": 709000},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        tool_input = replies[len(seen) - 1]
        return httpx.Response(
            200,
            json=message(
                content=[{"type": "tool_use", "id": "t", "name": "Place", "input": tool_input}],
                stop_reason="tool_use",
            ),
        )

    messages = [
        Message(role="system", content="Answer in JSON."),
        Message(role="user", content="Capital of Norway?"),
    ]
    result = await generate(model(handler), messages, Place)
    assert result.value == Place(city="Oslo", population=709000)
    assert len(result.responses) == 2
    first = seen[0]
    assert first["system"] == "Answer in JSON."
    assert first["tool_choice"] == {"type": "tool", "name": "Place"}
    tools = first["tools"]
    assert isinstance(tools, list) and tools[0]["name"] == "Place"
    assert tools[0]["input_schema"]["required"] == ["city", "population"]
    # The repair turn shows the model its own JSON as an ordinary assistant message.
    repair = seen[1]["messages"]
    assert isinstance(repair, list) and [m["role"] for m in repair] == ["user", "assistant", "user"]
    assert json.loads(repair[1]["content"]) == {"city": "Oslo"}
    assert "population" in repair[2]["content"]


@pytest.mark.parametrize(
    "body",
    [
        (
            '{"type": "error", "error": {"type": "authentication_error", "message": "'
            + "x" * 470
            + f' key {KEY} was rejected"}}}}'
        ).encode(),
        ("y" * 280 + f" key {KEY} rejected").encode(),
    ],
)
def test_no_fragment_of_an_echoed_key_survives_truncation(body: bytes) -> None:
    from tether.models.anthropic import map_error

    error = map_error(401, httpx.Headers(), body, [KEY])
    text = str(error)
    assert KEY[:12] not in text and KEY[-12:] not in text
