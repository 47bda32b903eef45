"""The real client stack — RetryingChatModel(OpenAICompatibleChat) — against MockProvider,
one scripted fault at a time, over real sockets and real timeouts.

Every test asserts how many attempts reached the server and bounds the elapsed time;
every test also checks (at teardown) that the API key never shows up in any log record,
raised error or error event.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tether.errors import (
    AuthenticationError,
    ContextLengthExceeded,
    InvalidResponse,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    Timeout,
)
from tether.models.chat import (
    ChatRequest,
    DoneEvent,
    ErrorEvent,
    StreamEvent,
    TokenEvent,
    UsageEvent,
)
from tether.models.openai_compat import OpenAICompatibleChat
from tether.models.retry import RetryingChatModel, RetryPolicy
from tether.testing import Fault, MockProvider
from tether.types import Message

SECRET = "sk-9c1f4e7a2b8d6053e4a17f92c0b5d3e8a6f1c7b2"
TIMEOUT = httpx.Timeout(connect=1, read=0.5, write=1, pool=1)
FIRST_TOKEN_TIMEOUT = 0.3
POLICY = RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.2, deadline=5)
REQUEST = ChatRequest(messages=(Message(role="user", content="hi"),), max_tokens=16)


@dataclass
class Harness:
    mock: MockProvider
    model: RetryingChatModel
    #: str() and repr() of every error raised and every error event seen.
    seen: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    async def chat(self, request: ChatRequest = REQUEST) -> str:
        self.started = time.monotonic()
        try:
            return (await self.model.chat(request)).text
        except ProviderError as exc:
            self.seen += [str(exc), repr(exc)]
            raise

    async def stream(self, request: ChatRequest = REQUEST) -> list[StreamEvent]:
        self.started = time.monotonic()
        events: list[StreamEvent] = []
        try:
            async for event in self.model.stream(request):
                events.append(event)
        except ProviderError as exc:
            self.seen += [str(exc), repr(exc)]
            raise
        self.seen += [repr(e) for e in events if isinstance(e, ErrorEvent)]
        return events

    def arrivals(self) -> list[float]:
        return [r.arrived_at for r in self.mock.chat_requests]

    def gaps(self) -> list[float]:
        times = self.arrivals()
        return [later - earlier for earlier, later in itertools.pairwise(times)]

    def attempts(self) -> int:
        return len(self.mock.chat_requests)

    def idempotency_keys(self) -> list[str | None]:
        return [r.header("idempotency-key") for r in self.mock.chat_requests]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TokenEvent))


def secret_fragments(length: int = 8) -> list[str]:
    return [SECRET[i : i + length] for i in range(len(SECRET) - length + 1)]


@pytest.fixture
def mock() -> Iterator[MockProvider]:
    with MockProvider() as running:
        yield running


@pytest.fixture
async def harness(mock: MockProvider, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Harness]:
    caplog.set_level(logging.DEBUG)  # the root logger: httpx, httpcore, tether, everything
    inner = OpenAICompatibleChat(
        mock.base_url,
        "m",
        api_key=SECRET,
        timeout=TIMEOUT,
        first_token_timeout=FIRST_TOKEN_TIMEOUT,
    )
    harness = Harness(mock, RetryingChatModel(inner, POLICY))
    yield harness
    await inner.aclose()
    # The key was in play: every request carried it...
    assert mock.chat_requests
    assert all(r.header("authorization") == f"Bearer {SECRET}" for r in mock.chat_requests)
    # ...and nothing the caller can see or log repeats it.
    records = [r for when in ("setup", "call", "teardown") for r in caplog.get_records(when)]
    assert any(r.name.startswith(("httpx", "aiohttp", "tether")) for r in records), (
        "nothing logged?"
    )
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    texts = [formatter.format(record) for record in records] + harness.seen
    texts += [repr(record.args) for record in records]
    assert not [text for text in texts if SECRET in text]


# -- 429 -------------------------------------------------------------------------------


async def test_rate_limit_waits_at_least_retry_after(harness: Harness) -> None:
    harness.mock.script([Fault.status(429, retry_after=0.25), Fault.ok("hello")])
    assert await harness.chat() == "hello"
    assert harness.attempts() == 2
    [gap] = harness.gaps()
    assert gap >= 0.25
    assert harness.elapsed() < 1.0
    assert harness.idempotency_keys()[0]
    assert len(set(harness.idempotency_keys())) == 1


async def test_rate_limited_stream_is_retried_before_its_first_event(harness: Harness) -> None:
    harness.mock.script([Fault.status(429, retry_after=0.2), Fault.ok("streamed after wait")])
    events = await harness.stream()
    assert text_of(events) == "streamed after wait"
    assert isinstance(events[-1], DoneEvent)
    assert any(isinstance(e, UsageEvent) for e in events)
    assert harness.attempts() == 2
    assert harness.gaps()[0] >= 0.2
    assert len(set(harness.idempotency_keys())) == 1


async def test_retry_after_past_the_deadline_fails_at_once(harness: Harness) -> None:
    harness.mock.script([Fault.status(429, retry_after=30), Fault.ok()])
    with pytest.raises(RateLimited) as caught:
        await harness.chat()
    assert caught.value.retry_after == 30
    assert harness.attempts() == 1
    assert harness.elapsed() < 1.0  # did not sleep 30 s into a 5 s deadline


# -- 5xx -------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [500, 502, 503])
async def test_server_error_is_retried_then_succeeds(harness: Harness, code: int) -> None:
    harness.mock.script([Fault.status(code), Fault.ok("recovered")])
    assert await harness.chat() == "recovered"
    assert harness.attempts() == 2
    assert harness.elapsed() < 1.0
    assert len(set(harness.idempotency_keys())) == 1


@pytest.mark.parametrize("code", [500, 502, 503])
async def test_server_errors_exhaust_max_attempts(harness: Harness, code: int) -> None:
    harness.mock.script([Fault.status(code)] * 3 + [Fault.ok("never reached")])
    with pytest.raises(ProviderUnavailable) as caught:
        await harness.chat()
    assert caught.value.status == code
    assert harness.attempts() == POLICY.max_attempts == 3
    assert harness.mock.pending == 1
    # Two backoffs of at most 0.05 and 0.1 s: far under the 5 s deadline.
    assert harness.elapsed() < 1.5
    assert len(set(harness.idempotency_keys())) == 1


async def test_user_idempotency_key_arrives_on_every_attempt(harness: Harness) -> None:
    harness.mock.script([Fault.status(503), Fault.status(502), Fault.ok("third time")])
    request = REQUEST.model_copy(update={"idempotency_key": "order-42"})
    assert await harness.chat(request) == "third time"
    assert harness.idempotency_keys() == ["order-42"] * 3


async def test_each_call_gets_its_own_idempotency_key(harness: Harness) -> None:
    harness.mock.script([Fault.status(503), Fault.ok("a"), Fault.status(500), Fault.ok("b")])
    assert await harness.chat() == "a"
    assert await harness.chat() == "b"
    keys = harness.idempotency_keys()
    assert len(keys) == 4
    assert keys[0] == keys[1] and keys[2] == keys[3] and keys[0] != keys[2]


# -- timeouts --------------------------------------------------------------------------


async def test_slow_first_byte_past_the_read_timeout_is_retried(harness: Harness) -> None:
    harness.mock.script([Fault.slow_first_byte(2.0), Fault.ok("on time")])
    assert await harness.chat() == "on time"
    assert harness.attempts() == 2
    [gap] = harness.gaps()
    assert 0.5 <= gap < 0.9  # the 0.5 s read timeout, then a backoff of at most 0.05 s
    assert harness.elapsed() < 1.5
    assert len(set(harness.idempotency_keys())) == 1


async def test_slow_first_byte_every_time_exhausts_into_timeout(harness: Harness) -> None:
    harness.mock.script([Fault.slow_first_byte(2.0)] * 3)
    with pytest.raises(Timeout):
        await harness.chat()
    assert harness.attempts() == 3
    assert 1.5 <= harness.elapsed() < 2.5  # three read timeouts, not three 2 s waits
    assert len(set(harness.idempotency_keys())) == 1


async def test_read_timeout_mid_body_is_retried(harness: Harness) -> None:
    harness.mock.script([Fault.stall_body(2.0), Fault.ok("whole body")])
    assert await harness.chat() == "whole body"
    assert harness.attempts() == 2
    assert 0.5 <= harness.gaps()[0] < 0.9
    assert harness.elapsed() < 1.5
    assert len(set(harness.idempotency_keys())) == 1


async def test_stream_silent_after_headers_hits_first_token_timeout_and_retries(
    harness: Harness,
) -> None:
    harness.mock.script([Fault.stall_body(2.0, after_chunks=0), Fault.ok("second stream")])
    events = await harness.stream()
    assert text_of(events) == "second stream"
    assert isinstance(events[-1], DoneEvent)
    assert harness.attempts() == 2
    # The 0.3 s first-token timeout fired, not the 0.5 s read timeout.
    assert FIRST_TOKEN_TIMEOUT <= harness.gaps()[0] < 0.5
    assert len(set(harness.idempotency_keys())) == 1


async def test_keep_alive_comments_do_not_count_as_the_first_token(harness: Harness) -> None:
    # Gateways send SSE comments while the model has produced nothing yet; the client's
    # parser skips them as non-data, so they must not satisfy the first-token timeout.
    harness.mock.script(
        [Fault.stall_body(1.0, after_chunks=0, keepalive=0.1), Fault.ok("second stream")]
    )
    events = await harness.stream()
    assert harness.attempts() == 2
    assert text_of(events) == "second stream"
    assert FIRST_TOKEN_TIMEOUT <= harness.gaps()[0] < 0.5
    assert harness.elapsed() < 0.9


async def test_stream_stalling_after_tokens_ends_with_timeout_event_unretried(
    harness: Harness,
) -> None:
    harness.mock.script([Fault.stall_body(2.0, after_chunks=2), Fault.ok()])
    events = await harness.stream()
    assert text_of(events) == "Hello from "
    last = events[-1]
    assert isinstance(last, ErrorEvent) and last.kind == "Timeout"
    assert not any(isinstance(e, DoneEvent) for e in events)
    assert harness.attempts() == 1
    assert 0.5 <= harness.elapsed() < 1.2


# -- broken connections ----------------------------------------------------------------


async def test_connection_reset_mid_stream_yields_tokens_then_error_unretried(
    harness: Harness,
) -> None:
    harness.mock.script([Fault.reset_mid_stream(after_chunks=2), Fault.ok()])
    events = await harness.stream()
    assert [type(e) for e in events] == [TokenEvent, TokenEvent, ErrorEvent]
    assert text_of(events) == "Hello from "
    last = events[-1]
    assert isinstance(last, ErrorEvent) and last.kind == "ProviderUnavailable"
    assert harness.attempts() == 1
    assert harness.mock.pending == 1
    assert harness.elapsed() < 1.0


async def test_connection_reset_before_the_first_event_is_retried(harness: Harness) -> None:
    harness.mock.script([Fault.reset_mid_stream(after_chunks=0), Fault.ok("clean retry")])
    events = await harness.stream()
    assert text_of(events) == "clean retry"
    assert isinstance(events[-1], DoneEvent)
    assert harness.attempts() == 2
    assert harness.elapsed() < 1.0
    assert len(set(harness.idempotency_keys())) == 1


async def test_connection_reset_mid_body_of_a_chat_is_retried(harness: Harness) -> None:
    harness.mock.script([Fault.reset_mid_stream(), Fault.ok("after reset")])
    assert await harness.chat() == "after reset"
    assert harness.attempts() == 2
    assert harness.elapsed() < 1.0
    assert len(set(harness.idempotency_keys())) == 1


# -- bad answers: never retried --------------------------------------------------------


async def test_malformed_json_is_invalid_response_unretried(harness: Harness) -> None:
    harness.mock.script([Fault.malformed_json(), Fault.ok()])
    with pytest.raises(InvalidResponse):
        await harness.chat()
    assert harness.attempts() == 1
    assert harness.mock.pending == 1
    assert harness.elapsed() < 1.0


async def test_malformed_sse_data_is_an_invalid_response_event_unretried(
    harness: Harness,
) -> None:
    harness.mock.script([Fault.malformed_json("{oops"), Fault.ok()])
    events = await harness.stream()
    assert len(events) == 1
    [event] = events
    assert isinstance(event, ErrorEvent) and event.kind == "InvalidResponse"
    assert harness.attempts() == 1


async def test_error_event_mid_stream_is_reported_not_done(harness: Harness) -> None:
    # OpenAI and vLLM report a failure during generation as `data: {"error": ...}`
    # (vLLM then sends `data: [DONE]`): the caller must not see a successful finish.
    harness.mock.script([Fault.stream_error(after_chunks=2, message="engine died"), Fault.ok()])
    events = await harness.stream()
    assert text_of(events) == "Hello from "
    assert not any(isinstance(e, DoneEvent) for e in events)
    last = events[-1]
    assert isinstance(last, ErrorEvent)
    assert "engine died" in last.error
    assert harness.attempts() == 1
    assert harness.elapsed() < 1.0


async def test_truncated_sse_ends_with_invalid_response_event_unretried(
    harness: Harness,
) -> None:
    harness.mock.script([Fault.truncated_sse(after_chunks=2), Fault.ok()])
    events = await harness.stream()
    assert text_of(events) == "Hello from "
    last = events[-1]
    assert isinstance(last, ErrorEvent) and last.kind == "InvalidResponse"
    assert not any(isinstance(e, DoneEvent) for e in events)
    assert harness.attempts() == 1
    assert harness.elapsed() < 1.0


@pytest.mark.parametrize("streaming", [False, True], ids=["chat", "stream"])
async def test_context_length_400_is_not_retried(harness: Harness, streaming: bool) -> None:
    harness.mock.script([Fault.context_length_exceeded(), Fault.ok()])
    with pytest.raises(ContextLengthExceeded) as caught:
        await (harness.stream() if streaming else harness.chat())
    assert caught.value.status == 400
    assert harness.attempts() == 1
    assert harness.elapsed() < 1.0


@pytest.mark.parametrize("streaming", [False, True], ids=["chat", "stream"])
async def test_401_echoing_the_key_is_redacted_and_not_retried(
    harness: Harness, streaming: bool
) -> None:
    harness.mock.script([Fault.status(401, echo_authorization=True), Fault.ok()])
    with pytest.raises(AuthenticationError) as caught:
        await (harness.stream() if streaming else harness.chat())
    assert caught.value.status == 401
    # The server did echo the key; the error shows where it was, not what it was.
    assert "Incorrect API key provided: Bearer ***" in str(caught.value)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
    assert harness.attempts() == 1
    assert harness.elapsed() < 1.0


@pytest.mark.parametrize(
    "body",
    [
        # OpenAI-style JSON: the client keeps the first 500 characters of error.message.
        {"error": {"message": "x" * 470 + " key {authorization} was rejected"}},
        # Not JSON: the client keeps the first 300 bytes of the body.
        "y" * 270 + " key {authorization} was rejected",
    ],
    ids=["json-message", "plain-body"],
)
async def test_no_fragment_of_an_echoed_key_survives_truncation(
    harness: Harness, body: str | dict[str, object]
) -> None:
    # A long error text puts the echoed key across the client's truncation boundary.
    harness.mock.script([Fault.status(401, body), Fault.ok()])
    with pytest.raises(AuthenticationError) as caught:
        await harness.chat()
    assert harness.attempts() == 1
    shown = f"{caught.value} {caught.value!r}"
    assert not [part for part in secret_fragments() if part in shown]
