"""RecordingTransport / ReplayTransport: record real HTTP traffic from MockProvider through the
real clients, then replay it with the server stopped."""

from __future__ import annotations

import gzip
import json
import os
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import pytest

from tether.errors import ProviderUnavailable, RateLimited, Timeout
from tether.models.anthropic import AnthropicChat
from tether.models.chat import (
    ChatRequest,
    DoneEvent,
    ErrorEvent,
    StreamEvent,
    TokenEvent,
    UsageEvent,
)
from tether.models.openai_compat import OpenAICompatibleChat
from tether.testing import (
    Fault,
    MockProvider,
    Recording,
    RecordingTransport,
    ReplayMismatch,
    ReplayTransport,
)
from tether.types import Message

SECRET = "sk-live-7f3c9a1e5b2d4c6a8e0f"
QUESTION = ChatRequest(messages=(Message(role="user", content="What is tether?"),), max_tokens=32)
OTHER = ChatRequest(messages=(Message(role="user", content="And why?"),), max_tokens=32)
REFERENCE = Path(__file__).parents[2] / "fixtures" / "recordings" / "openai_chat_and_stream.jsonl"


def openai(
    base_url: str, transport: httpx.AsyncBaseTransport, **kwargs: Any
) -> OpenAICompatibleChat:
    return OpenAICompatibleChat(base_url, "m", api_key=SECRET, transport=transport, **kwargs)


async def collect(model: OpenAICompatibleChat | AnthropicChat, request: ChatRequest) -> list[Any]:
    return [event async for event in model.stream(request)]


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def header(pairs: list[list[str]], name: str) -> list[str]:
    return [value for key, value in pairs if key.lower() == name]


# -- record, stop the server, replay ---------------------------------------------------


async def test_chat_stream_and_429_replay_identically_with_the_server_stopped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "session.jsonl"
    rate_limit_body = {
        "error": {
            "message": "Rate limit reached for key {authorization}.",
            "type": "requests",
            "code": "rate_limit_exceeded",
        }
    }
    with MockProvider() as mock:
        mock.script(
            [
                Fault.ok("Tether answers from your documents."),
                Fault.ok("It cites every claim it makes."),
                Fault.status(429, rate_limit_body, retry_after=0.25),
            ]
        )
        base_url = mock.base_url
        live = openai(base_url, RecordingTransport(path, secrets=[SECRET]))
        live_answer = await live.chat(QUESTION)
        live_events = await collect(live, QUESTION)
        with pytest.raises(RateLimited) as live_error:
            await live.chat(OTHER)
        await live.aclose()
        # The provider really saw the key, and the 429 body really echoed it.
        assert mock.chat_requests[2].header("authorization") == f"Bearer {SECRET}"
    assert not mock.running
    assert live_answer.text == "Tether answers from your documents."
    assert [type(e) for e in live_events][-2:] == [UsageEvent, DoneEvent]
    assert "".join(e.text for e in live_events if isinstance(e, TokenEvent)) == (
        "It cites every claim it makes."
    )

    raw = path.read_bytes()
    assert SECRET.encode() not in raw
    lines = records(path)
    assert [line["response"]["status"] for line in lines] == [200, 200, 429]
    assert all(header(line["request"]["headers"], "authorization") == ["***"] for line in lines)
    assert lines[1]["response"]["stream"] is True
    assert lines[1]["response"]["body"].endswith("data: [DONE]\n\n")
    assert (
        lines[2]["response"]["body"]["error"]["message"] == "Rate limit reached for key Bearer ***."
    )
    assert lines[0]["request"]["body"]["messages"] == [
        {"role": "user", "content": "What is tether?"}
    ]

    # Control: nothing answers at that address any more.
    with pytest.raises(ProviderUnavailable):
        await OpenAICompatibleChat(base_url, "m", api_key=SECRET).chat(QUESTION)

    replay = ReplayTransport(path)
    offline = openai(base_url, replay)
    assert await offline.chat(QUESTION) == live_answer
    assert await collect(offline, QUESTION) == live_events
    with pytest.raises(RateLimited) as replayed_error:
        await offline.chat(OTHER)
    assert str(replayed_error.value) == str(live_error.value)
    assert replayed_error.value.status == live_error.value.status == 429
    assert replayed_error.value.retry_after == live_error.value.retry_after == 0.25
    assert replayed_error.value.request_id == live_error.value.request_id is not None
    assert replay.unused == []


async def test_without_secrets_a_key_echoed_in_a_body_reaches_the_fixture(tmp_path: Path) -> None:
    """Control for the test above: header redaction alone does not catch the echo."""
    path = tmp_path / "leaky.jsonl"
    with MockProvider() as mock:
        mock.script([Fault.status(401, echo_authorization=True)])
        model = openai(mock.base_url, RecordingTransport(path))
        with pytest.raises(Exception, match="Incorrect API key"):
            await model.chat(QUESTION)
        await model.aclose()
    (line,) = records(path)
    assert header(line["request"]["headers"], "authorization") == ["***"]
    assert SECRET.encode() in path.read_bytes()


async def test_secrets_are_scrubbed_from_url_bodies_and_streams(tmp_path: Path) -> None:
    path = tmp_path / "secrets.jsonl"
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": f"my key is {SECRET}, keep it"}],
        "stream": True,
    }
    with MockProvider() as mock:
        mock.script([Fault.ok(f"your key {SECRET} is safe")])
        url = f"{mock.base_url}/chat/completions?key={SECRET}"
        transport = RecordingTransport(path, secrets=[SECRET])
        async with httpx.AsyncClient(transport=transport) as client:
            live = (await client.post(url, json=body)).text
        assert SECRET in live  # the provider echoed it in the SSE body
    raw = path.read_bytes()
    assert SECRET.encode() not in raw
    (line,) = records(path)
    assert line["request"]["url"].endswith("/chat/completions?key=***")
    assert line["request"]["body"]["messages"][0]["content"] == "my key is ***, keep it"
    deltas = [
        json.loads(event[len("data: ") :])["choices"][0]["delta"]
        for event in line["response"]["body"].split("\n\n")
        if event.startswith("data: {")
    ]
    assert "".join(d.get("content", "") for d in deltas) == "your key *** is safe"

    # The caller still sends the real key; `secrets` redacts it before matching.
    async with httpx.AsyncClient(transport=ReplayTransport(path)) as client:
        with pytest.raises(ReplayMismatch):
            await client.post(url, json=body)
    async with httpx.AsyncClient(transport=ReplayTransport(path, secrets=[SECRET])) as client:
        replayed = (await client.post(url, json=body)).text
    assert replayed == live.replace(SECRET, "***")


async def test_redacted_headers_read_stars_in_both_directions(tmp_path: Path) -> None:
    path = tmp_path / "headers.jsonl"
    sensitive = {"Set-Cookie": "sid=abc123", "OpenAI-Organization": "org-42", "X-Kept": "yes"}
    with MockProvider() as mock:
        mock.script([Fault.ok("hi", headers=sensitive)])
        request_headers = {
            "x-api-key": "k1",
            "api-key": "k2",
            "Cookie": "sid=abc123",
            "X-Trace": "trace-7",
        }
        async with httpx.AsyncClient(transport=RecordingTransport(path)) as client:
            response = await client.post(
                f"{mock.base_url}/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                headers=request_headers,
            )
        assert response.headers["set-cookie"] == "sid=abc123"  # the caller sees real values
    (line,) = records(path)
    sent, got = line["request"]["headers"], line["response"]["headers"]
    for name in ("x-api-key", "api-key", "cookie"):
        assert header(sent, name) == ["***"]
    assert header(sent, "x-trace") == ["trace-7"]
    assert header(got, "set-cookie") == header(got, "openai-organization") == ["***"]
    assert header(got, "x-kept") == ["yes"]
    assert header(got, "content-type") == ["application/json"]


async def test_redact_headers_replaces_the_default_list(tmp_path: Path) -> None:
    path = tmp_path / "custom.jsonl"
    with MockProvider() as mock:
        model = openai(mock.base_url, RecordingTransport(path, redact_headers=["X-Request-Id"]))
        await model.chat(QUESTION)
        await model.aclose()
    (line,) = records(path)
    assert header(line["response"]["headers"], "x-request-id") == ["***"]
    assert header(line["request"]["headers"], "authorization") == [f"Bearer {SECRET}"]


# -- matching --------------------------------------------------------------------------


async def record_chats(path: Path, faults: list[Fault], requests: list[ChatRequest]) -> str:
    with MockProvider() as mock:
        mock.script(faults)
        model = openai(mock.base_url, RecordingTransport(path, secrets=[SECRET]))
        for request in requests:
            await model.chat(request)
        await model.aclose()
        return mock.base_url


async def test_a_changed_body_raises_replay_mismatch_naming_the_nearest_recording(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mismatch.jsonl"
    base_url = await record_chats(path, [], [QUESTION, OTHER])
    changed = ChatRequest(messages=(Message(role="user", content="What is tether??"),))
    model = openai(base_url, replay := ReplayTransport(path))
    with pytest.raises(ReplayMismatch) as caught:
        await model.chat(changed)
    assert isinstance(caught.value, AssertionError)
    message = str(caught.value)
    assert f"POST {base_url}/chat/completions" in message
    assert str(path) in message
    assert "nearest recording: line 1:" in message
    assert "$.messages[0].content: request 'What is tether??' != recorded 'What is tether?'" in (
        message
    )
    assert "$.max_tokens" not in message  # only the first difference is named
    assert len(replay.unused) == 2  # a mismatch serves nothing


async def test_identical_requests_are_served_in_recorded_order(tmp_path: Path) -> None:
    path = tmp_path / "order.jsonl"
    faults = [Fault.ok("first"), Fault.ok("second"), Fault.ok("third")]
    base_url = await record_chats(path, faults, [QUESTION, QUESTION, QUESTION])
    replay = ReplayTransport(path)
    model = openai(base_url, replay)
    answers = [await model.chat(QUESTION) for _ in range(3)]
    assert [a.text for a in answers] == ["first", "second", "third"]
    assert [a.request_id for a in answers] == ["req-mock-1", "req-mock-2", "req-mock-3"]
    with pytest.raises(ReplayMismatch, match=r"3 matching recording\(s\) were already served"):
        await model.chat(QUESTION)


async def test_unused_lists_recordings_never_served(tmp_path: Path) -> None:
    path = tmp_path / "unused.jsonl"
    base_url = await record_chats(path, [], [QUESTION, OTHER, QUESTION])
    replay = ReplayTransport(path)
    assert [r.line for r in replay.unused] == [1, 2, 3]
    await openai(base_url, replay).chat(OTHER)
    unused = replay.unused
    assert [r.line for r in unused] == [1, 3]
    assert all(isinstance(r, Recording) and r.method == "POST" for r in unused)
    assert unused[0].request_body["messages"][0]["content"] == "What is tether?"
    assert unused[0].describe() == f"line 1: POST {base_url}/chat/completions -> 200"


async def test_match_fields_choose_what_must_agree(tmp_path: Path) -> None:
    path = tmp_path / "loose.jsonl"
    await record_chats(path, [Fault.ok("recorded")], [QUESTION])
    # "path" ignores scheme, host and port; leaving out "body" accepts any body.
    loose = openai("http://elsewhere.invalid/v1", ReplayTransport(path, match=("method", "path")))
    assert (await loose.chat(OTHER)).text == "recorded"
    strict = openai("http://elsewhere.invalid/v1", ReplayTransport(path))
    with pytest.raises(ReplayMismatch, match="url differs"):
        await strict.chat(QUESTION)
    with pytest.raises(ValueError, match="match must be"):
        ReplayTransport(path, match=("method", "headers"))  # type: ignore[list-item]
    with pytest.raises(ValueError, match="match must be"):
        ReplayTransport(path, match=())


async def test_an_empty_fixture_says_so(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(ReplayMismatch, match="holds no recordings"):
        await openai("http://x.invalid/v1", ReplayTransport(path)).chat(QUESTION)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"version": 2, "request": {}}', "unsupported recording version 2"),
        ("not json", "not a valid recording"),
        ('{"version": 1, "request": {"method": "GET", "url": "http://x/"}}', "response or an"),
    ],
)
def test_a_malformed_fixture_names_file_and_line(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n" + text + "\n")
    with pytest.raises(ValueError, match=error) as caught:
        ReplayTransport(path)
    assert f"{path}:2:" in str(caught.value)


# -- streams ---------------------------------------------------------------------------


async def test_recording_passes_the_stream_through_as_it_arrives(tmp_path: Path) -> None:
    path = tmp_path / "stall.jsonl"
    stall = 0.6
    with MockProvider() as mock:
        mock.script([Fault.stall_body(stall, after_chunks=1, text="alpha beta gamma")])
        recorder = RecordingTransport(path)
        model = openai(mock.base_url, recorder)
        events: list[StreamEvent] = []
        first_token_at: float | None = None
        lines_at_first_token = -1
        async for event in model.stream(QUESTION):
            if first_token_at is None and isinstance(event, TokenEvent):
                first_token_at = time.monotonic()
                lines_at_first_token = recorder.recorded
            events.append(event)
        done_at = time.monotonic()
        await model.aclose()
        base_url = mock.base_url
    assert first_token_at is not None
    # The first token reached the caller while the server was still holding the rest.
    assert done_at - first_token_at >= stall - 0.1
    assert lines_at_first_token == 0  # the line is written when the stream closes
    assert recorder.recorded == 1
    assert [e.text for e in events if isinstance(e, TokenEvent)] == ["alpha ", "beta ", "gamma"]
    (line,) = records(path)
    assert line["response"]["body"].count("data: ") == 6  # 3 tokens, finish, usage, [DONE]
    assert line["response"]["body"].endswith("data: [DONE]\n\n")

    started = time.monotonic()
    assert await collect(openai(base_url, ReplayTransport(path)), QUESTION) == events
    assert time.monotonic() - started < stall / 2  # replay does not reproduce the stall


async def test_replayed_streams_arrive_one_sse_event_per_chunk(tmp_path: Path) -> None:
    path = tmp_path / "chunks.jsonl"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with MockProvider() as mock:
        mock.script([Fault.ok("one two three")])
        url = f"{mock.base_url}/chat/completions"
        async with httpx.AsyncClient(transport=RecordingTransport(path)) as client:
            await client.post(url, json=body)
    async with (
        httpx.AsyncClient(transport=ReplayTransport(path)) as client,
        client.stream("POST", url, json=body) as response,
    ):
        chunks = [chunk async for chunk in response.aiter_raw()]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert len(chunks) == 5  # three deltas, the finish chunk, [DONE]
    assert all(chunk.endswith(b"\n\n") and chunk.count(b"data: ") == 1 for chunk in chunks)
    (line,) = records(path)
    assert line["response"]["read_to_end"] is True  # httpx read the body to its end
    assert b"".join(chunks).decode() == line["response"]["body"]


async def test_a_stream_closed_early_is_recorded_as_far_as_it_was_read(tmp_path: Path) -> None:
    path = tmp_path / "early.jsonl"
    with MockProvider() as mock:
        mock.script([Fault.stall_body(5.0, after_chunks=1, text="alpha beta")])
        model = openai(mock.base_url, RecordingTransport(path))
        async with aclosing(model.stream(QUESTION)) as events:
            first = await anext(events)
        assert first == TokenEvent(text="alpha ")
        await model.aclose()
    (line,) = records(path)
    assert line["response"]["read_to_end"] is False
    assert line["response"]["body"].count("data: ") == 1


async def test_a_connection_reset_mid_stream_replays_as_the_same_error(tmp_path: Path) -> None:
    path = tmp_path / "reset.jsonl"
    with MockProvider() as mock:
        mock.script([Fault.reset_mid_stream(after_chunks=2, text="one two three")])
        base_url = mock.base_url
        live = openai(base_url, RecordingTransport(path, secrets=[SECRET]))
        live_events = await collect(live, QUESTION)
        await live.aclose()
    assert [type(e) for e in live_events] == [TokenEvent, TokenEvent, ErrorEvent]
    assert live_events[-1].kind == "ProviderUnavailable"
    (line,) = records(path)
    assert line["response"]["read_to_end"] is False
    assert line["error"]["type"] in ("RemoteProtocolError", "ReadError")
    assert await collect(openai(base_url, ReplayTransport(path)), QUESTION) == live_events


async def test_a_timeout_before_any_response_replays_as_the_same_error(tmp_path: Path) -> None:
    path = tmp_path / "timeout.jsonl"
    short = httpx.Timeout(5.0, read=0.2)
    with MockProvider() as mock:
        mock.script([Fault.slow_first_byte(3.0)])
        base_url = mock.base_url
        live = openai(base_url, RecordingTransport(path), timeout=short)
        with pytest.raises(Timeout) as live_error:
            await live.chat(QUESTION)
        await live.aclose()
    (line,) = records(path)
    assert line["response"] is None and line["error"]["type"] == "ReadTimeout"
    offline = openai(base_url, ReplayTransport(path), timeout=short)
    with pytest.raises(Timeout) as replayed_error:
        await offline.chat(QUESTION)
    assert str(replayed_error.value) == str(live_error.value)


# -- bodies and other clients ----------------------------------------------------------


async def test_gzip_bodies_are_recorded_decoded_and_replayed_without_encoding(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gzip.jsonl"
    payload = {"answer": "compressed", "n": [1, 2, 3]}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            content=gzip.compress(json.dumps(payload).encode()),
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )

    url = "http://gzip.test/data"
    recorder = RecordingTransport(path, httpx.MockTransport(handler))
    async with httpx.AsyncClient(transport=recorder) as client:
        assert (await client.get(url)).json() == payload
    (line,) = records(path)
    assert line["response"]["body"] == payload and line["response"]["content_decoded"] is True
    assert header(line["response"]["headers"], "content-encoding") == ["gzip"]
    async with httpx.AsyncClient(transport=ReplayTransport(path)) as client:
        replayed = await client.get(url)
    assert replayed.json() == payload
    assert "content-encoding" not in replayed.headers
    assert replayed.headers["content-length"] == str(len(replayed.content))


async def test_text_and_binary_request_bodies_are_matched_exactly(tmp_path: Path) -> None:
    path = tmp_path / "bodies.jsonl"
    echo = httpx.MockTransport(lambda r: httpx.Response(200, content=r.content[::-1]))
    binary, text = b"\x00\xffraw\x80", b"plain text, not json"
    async with httpx.AsyncClient(transport=RecordingTransport(path, echo)) as client:
        await client.post("http://echo.test/", content=binary)
        await client.post("http://echo.test/", content=text)
    first, second = records(path)
    assert first["request"]["body_encoding"] == first["response"]["body_encoding"] == "base64"
    assert second["request"]["body_encoding"] == "text"
    assert second["request"]["body"] == "plain text, not json"
    async with httpx.AsyncClient(transport=ReplayTransport(path)) as client:
        assert (await client.post("http://echo.test/", content=text)).content == text[::-1]
        assert (await client.post("http://echo.test/", content=binary)).content == binary[::-1]
        with pytest.raises(ReplayMismatch, match="from character 0"):
            await client.post("http://echo.test/", content=b"Plain text")


def anthropic_sse() -> bytes:
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-test",
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": 5, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 2},
        },
        {"type": "message_stop"},
    ]
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


async def test_anthropic_streams_record_and_replay_with_the_api_key_redacted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "anthropic.jsonl"
    provider = httpx.MockTransport(
        lambda r: httpx.Response(
            200,
            content=anthropic_sse(),
            headers={"content-type": "text/event-stream", "request-id": "req_a1"},
        )
    )
    base_url = "http://anthropic.test/v1"
    live = AnthropicChat(
        "claude-test",
        api_key=SECRET,
        base_url=base_url,
        transport=RecordingTransport(path, provider),
    )
    live_events = await collect(live, QUESTION)
    assert [e.text for e in live_events if isinstance(e, TokenEvent)] == ["Hel", "lo"]
    assert SECRET.encode() not in path.read_bytes()
    (line,) = records(path)
    assert header(line["request"]["headers"], "x-api-key") == ["***"]
    assert line["request"]["url"] == f"{base_url}/messages"
    offline = AnthropicChat(
        "claude-test", api_key="unused", base_url=base_url, transport=ReplayTransport(path)
    )
    assert await collect(offline, QUESTION) == live_events


async def test_recordings_append_unless_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "append.jsonl"
    await record_chats(path, [], [QUESTION])
    await record_chats(path, [], [OTHER])
    assert len(records(path)) == 2
    RecordingTransport(path, overwrite=True)
    assert path.read_bytes() == b""


# -- a committed fixture ---------------------------------------------------------------


async def record_reference(path: Path) -> None:
    """Rebuild the committed fixture: `TETHER_RERECORD=1 uv run pytest -k committed`."""
    with MockProvider() as mock:
        mock.script([Fault.ok("Recorded once, replayed forever."), Fault.ok("Streamed too.")])
        model = openai(mock.base_url, RecordingTransport(path, secrets=[SECRET], overwrite=True))
        await model.chat(QUESTION)
        await collect(model, OTHER)
        await model.aclose()


async def test_the_committed_recording_replays_with_no_server_at_all() -> None:
    if os.environ.get("TETHER_RERECORD"):
        await record_reference(REFERENCE)
    assert SECRET.encode() not in REFERENCE.read_bytes()
    replay = ReplayTransport(REFERENCE, match=("method", "path", "body"))
    model = OpenAICompatibleChat("http://provider.invalid/v1", "m", transport=replay)
    answer = await model.chat(QUESTION)
    assert (answer.text, answer.finish_reason, answer.request_id) == (
        "Recorded once, replayed forever.",
        "stop",
        "req-mock-1",
    )
    assert answer.usage.input_tokens == 3 and answer.usage.output_tokens == 4
    events = await collect(model, OTHER)
    assert [e.text for e in events if isinstance(e, TokenEvent)] == ["Streamed ", "too."]
    assert events[-1] == DoneEvent(finish_reason="stop", request_id="req-mock-2")
    assert replay.unused == []
