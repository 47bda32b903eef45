"""RetryingChatModel: retries exactly what is safe, bounded by attempts and a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tether.errors import (
    AuthenticationError,
    BadRequest,
    ContextLengthExceeded,
    ProviderUnavailable,
    RateLimited,
    Timeout,
)
from tether.models.chat import (
    ChatRequest,
    ChatResponse,
    DoneEvent,
    ErrorEvent,
    StreamEvent,
    TokenEvent,
)
from tether.models.fake import FakeChatModel
from tether.models.retry import RetryingChatModel, RetryPolicy
from tether.types import Message

REQUEST = ChatRequest(messages=(Message(role="user", content="hi"),))


def wrapped(
    script: list[ChatResponse | str | Exception], policy: RetryPolicy = RetryPolicy()
) -> tuple[RetryingChatModel, FakeChatModel, list[float]]:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    fake = FakeChatModel(script)
    return RetryingChatModel(fake, policy, sleep=sleep, rng=lambda: 1.0), fake, sleeps


async def test_rate_limit_waits_what_retry_after_says() -> None:
    model, _, sleeps = wrapped([RateLimited("slow", retry_after=1.5), "ok"])
    assert (await model.chat(REQUEST)).text == "ok"
    assert sleeps == [1.5] and model.attempts == 2


async def test_server_errors_back_off_exponentially_with_jitter_ceiling() -> None:
    script: list[ChatResponse | str | Exception] = [
        ProviderUnavailable("503"),
        Timeout("read"),
        ProviderUnavailable("502"),
        "ok",
    ]
    model, _, sleeps = wrapped(script, RetryPolicy(max_attempts=4, base_delay=0.5))
    assert (await model.chat(REQUEST)).text == "ok"
    assert sleeps == [0.5, 1.0, 2.0]  # rng=1.0 puts each wait at its full-jitter ceiling


async def test_jitter_draws_below_the_ceiling() -> None:
    fake = FakeChatModel([ProviderUnavailable("x"), "ok"])
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    model = RetryingChatModel(fake, RetryPolicy(base_delay=4.0), sleep=sleep, rng=lambda: 0.25)
    await model.chat(REQUEST)
    assert sleeps == [1.0]


@pytest.mark.parametrize(
    "error",
    [BadRequest("bad"), ContextLengthExceeded("long"), AuthenticationError("key")],
)
async def test_client_errors_are_never_retried(error: Exception) -> None:
    model, fake, sleeps = wrapped([error, "never reached"])
    with pytest.raises(type(error)):
        await model.chat(REQUEST)
    assert model.attempts == 1 and sleeps == [] and len(fake.requests) == 1


async def test_attempts_are_bounded_and_the_last_error_surfaces() -> None:
    script: list[ChatResponse | str | Exception] = [ProviderUnavailable(f"{i}") for i in range(5)]
    model, _, sleeps = wrapped(script, RetryPolicy(max_attempts=3))
    with pytest.raises(ProviderUnavailable, match="2"):
        await model.chat(REQUEST)
    assert model.attempts == 3 and len(sleeps) == 2


async def test_a_wait_past_the_deadline_is_not_started() -> None:
    model, _, sleeps = wrapped(
        [RateLimited("slow", retry_after=120.0), "ok"], RetryPolicy(deadline=60.0)
    )
    with pytest.raises(RateLimited):
        await model.chat(REQUEST)
    assert model.attempts == 1 and sleeps == []


async def test_the_deadline_counts_the_time_the_first_attempt_took() -> None:
    """The first attempt runs outside tenacity; its duration still spends the deadline."""

    class Slow(FakeChatModel):
        async def chat(self, request: ChatRequest) -> ChatResponse:
            await asyncio.sleep(0.06)
            return await super().chat(request)

    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    slow = Slow([ProviderUnavailable("503"), "ok"])
    model = RetryingChatModel(
        slow, RetryPolicy(base_delay=0.01, deadline=0.05), sleep=sleep, rng=lambda: 1.0
    )
    with pytest.raises(ProviderUnavailable):
        await model.chat(REQUEST)
    assert model.attempts == 1 and sleeps == []
    # Within the deadline the same failure is retried, and the wait follows attempt 1.
    quick = RetryingChatModel(
        FakeChatModel([ProviderUnavailable("503"), "ok"]),
        RetryPolicy(base_delay=0.01, deadline=5.0),
        sleep=sleep,
        rng=lambda: 1.0,
    )
    assert (await quick.chat(REQUEST)).text == "ok"
    assert quick.attempts == 2 and sleeps == [0.01]


async def test_every_attempt_carries_the_same_idempotency_key() -> None:
    model, fake, _ = wrapped([ProviderUnavailable("x"), ProviderUnavailable("y"), "ok"])
    await model.chat(REQUEST)
    keys = {r.idempotency_key for r in fake.requests}
    assert len(fake.requests) == 3 and len(keys) == 1 and None not in keys
    explicit = REQUEST.model_copy(update={"idempotency_key": "mine"})
    model2, fake2, _ = wrapped(["ok"])
    await model2.chat(explicit)
    assert fake2.requests[0].idempotency_key == "mine"


class ScriptedStreams:
    """A ChatModel whose successive streams follow a script of event lists or errors."""

    name = "scripted"

    def __init__(self, scripts: list[list[StreamEvent] | Exception]) -> None:
        self.scripts = scripts
        self.opened = 0

    async def chat(self, request: ChatRequest) -> ChatResponse:
        raise NotImplementedError

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        script = self.scripts[self.opened]
        self.opened += 1
        if isinstance(script, Exception):
            raise script
        for event in script:
            yield event


async def _collect(model: RetryingChatModel) -> list[StreamEvent]:
    return [e async for e in model.stream(REQUEST)]


async def _no_sleep(seconds: float) -> None:
    return None


async def test_stream_failing_before_the_first_event_is_retried() -> None:
    inner = ScriptedStreams(
        [
            ProviderUnavailable("502"),
            [ErrorEvent(error="no first token", kind="Timeout")],
            [TokenEvent(text="hi"), DoneEvent()],
        ]
    )
    model = RetryingChatModel(inner, sleep=_no_sleep)
    events = await _collect(model)
    assert [type(e).__name__ for e in events] == ["TokenEvent", "DoneEvent"]
    assert inner.opened == 3


async def test_stream_failing_after_a_token_is_not_retried() -> None:
    inner = ScriptedStreams(
        [
            [TokenEvent(text="par"), ErrorEvent(error="reset", kind="ProviderUnavailable")],
            [TokenEvent(text="never")],
        ]
    )
    events = await _collect(RetryingChatModel(inner, sleep=_no_sleep))
    assert [type(e).__name__ for e in events] == ["TokenEvent", "ErrorEvent"]
    assert inner.opened == 1


async def test_stream_gives_up_with_the_typed_error() -> None:
    inner = ScriptedStreams([RateLimited("slow", retry_after=0.0)] * 2)
    model = RetryingChatModel(inner, RetryPolicy(max_attempts=2), sleep=_no_sleep)
    with pytest.raises(RateLimited):
        await _collect(model)
    assert inner.opened == 2


async def test_stream_non_retryable_error_event_passes_through() -> None:
    inner = ScriptedStreams([[ErrorEvent(error="bad sse", kind="InvalidResponse")]])
    events = await _collect(RetryingChatModel(inner, sleep=_no_sleep))
    assert [e.kind for e in events if isinstance(e, ErrorEvent)] == ["InvalidResponse"]
    assert inner.opened == 1
