"""Retry only what is safe: a `ChatModel` wrapper built on tenacity.

Retried: 429 (waiting what Retry-After says, else exponential backoff with full jitter),
5xx, connection failures and timeouts — bounded by attempts and a total deadline that
includes the next wait. Never retried: other 4xx, and a stream that already delivered
an event (the consumer has seen tokens; replaying would duplicate them).
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from opentelemetry import trace
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
)

from tether.errors import ProviderError, ProviderUnavailable, RateLimited, Timeout
from tether.models.chat import ChatModel, ChatRequest, ChatResponse, ErrorEvent, StreamEvent

T = TypeVar("T")
_RETRYABLE_EVENT_KINDS = {"Timeout": Timeout, "ProviderUnavailable": ProviderUnavailable}


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    #: First backoff ceiling in seconds; doubles per attempt (full jitter below it).
    base_delay: float = 0.5
    max_delay: float = 20.0
    #: No attempt starts, and no wait begins, past this many seconds after the first try.
    deadline: float = 60.0


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


def _note_retry(state: RetryCallState) -> None:
    """An event on the model-call span (see traced.py) for every retry: why, and the wait."""
    exc = state.outcome.exception() if state.outcome else None
    trace.get_current_span().add_event(
        "tether.retry",
        {
            "attempt": state.attempt_number,
            "error.type": type(exc).__name__ if exc else "",
            "wait_s": float(state.next_action.sleep) if state.next_action else 0.0,
        },
    )


class RetryingChatModel:
    def __init__(
        self,
        inner: ChatModel,
        policy: RetryPolicy = RetryPolicy(),
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._inner = inner
        self._policy = policy
        self._sleep = sleep
        self._rng = rng
        self.attempts = 0

    @property
    def name(self) -> str:
        return self._inner.name

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return exc.retry_after
        growth = 2.0 ** float(state.attempt_number - 1)
        return float(self._rng() * min(self._policy.max_delay, self._policy.base_delay * growth))

    def _retrying(self, spent: float) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self._policy.max_attempts)
            | stop_before_delay(self._policy.deadline - spent),
            wait=self._wait,
            retry=retry_if_exception(_retryable),
            sleep=self._sleep,
            before_sleep=_note_retry,
            reraise=True,
        )

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        # The first attempt runs bare: most calls succeed at once, and setting up and
        # driving tenacity's loop costs ~14 µs a call here. A retryable failure hands
        # over to tenacity, whose first attempt re-raises it (so waits, events and the
        # attempt count are as if tenacity had run it) and whose deadline is shortened
        # by the time that attempt took.
        started = time.monotonic()
        self.attempts += 1
        try:
            return await fn()
        except BaseException as exc:
            if not _retryable(exc):
                raise
            failed: BaseException | None = exc
        spent = time.monotonic() - started
        async for attempt in self._retrying(spent):
            with attempt:
                if failed is not None:
                    first, failed = failed, None
                    raise first
                self.attempts += 1
                return await fn()
        raise AssertionError("unreachable: tenacity reraises the last error")

    @staticmethod
    def _keyed(request: ChatRequest) -> ChatRequest:
        # Every attempt carries the same key, so a write the provider did receive is not
        # performed twice.
        if request.idempotency_key:
            return request
        return request.model_copy(update={"idempotency_key": secrets.token_hex(16)})

    async def chat(self, request: ChatRequest) -> ChatResponse:
        keyed = self._keyed(request)
        return await self._call(lambda: self._inner.chat(keyed))

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        keyed = self._keyed(request)

        async def open_stream() -> tuple[AsyncIterator[StreamEvent], StreamEvent | None]:
            events = self._inner.stream(keyed)
            try:
                first = await anext(events)
            except StopAsyncIteration:
                return events, None
            if isinstance(first, ErrorEvent) and first.kind in _RETRYABLE_EVENT_KINDS:
                await events.aclose()  # type: ignore[attr-defined]
                raise _RETRYABLE_EVENT_KINDS[first.kind](first.error)
            return events, first

        # Failures before the first event raise, as the protocol promises, once retries
        # are spent; a retryable error *event* first (e.g. first-token timeout) counts too.
        events, first = await self._call(open_stream)
        if first is None:
            return
        try:
            yield first
            async for event in events:
                yield event
        finally:
            await events.aclose()  # type: ignore[attr-defined]
