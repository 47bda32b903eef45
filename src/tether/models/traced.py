"""Tracing hooks as a ChatModel wrapper: one `CallRecord` per logical call.

Hooks receive the record after the call (success or failure). The default hook logs one
line per call — model, outcome, duration, tokens, the provider's request id — and never
the prompt, the reply or any credential. OpenTelemetry export plugs in as another hook.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from tether.ledger import Caller
from tether.models.budget import current_caller
from tether.models.chat import (
    ChatModel,
    ChatRequest,
    ChatResponse,
    StreamEvent,
    StreamTally,
)
from tether.types import Usage

log = logging.getLogger("tether.calls")


@dataclass(frozen=True)
class CallRecord:
    model: str
    kind: Literal["chat", "stream"]
    caller: Caller
    started: float
    duration_ms: float
    outcome: str
    usage: Usage | None = None
    request_id: str | None = None
    first_token_ms: float | None = None


Hook = Callable[[CallRecord], None]


def log_hook(record: CallRecord) -> None:
    usage = record.usage
    log.info(
        "model call %s %s outcome=%s %.1fms in=%s out=%s request_id=%s feature=%s tenant=%s",
        record.kind,
        record.model,
        record.outcome,
        record.duration_ms,
        usage.input_tokens if usage else "?",
        usage.output_tokens if usage else "?",
        record.request_id,
        record.caller.feature,
        record.caller.tenant,
    )


class TracedChatModel:
    def __init__(self, inner: ChatModel, hooks: Sequence[Hook] = (log_hook,)) -> None:
        self._inner = inner
        self._hooks = list(hooks)

    @property
    def name(self) -> str:
        return self._inner.name

    def _emit(self, record: CallRecord) -> None:
        for hook in self._hooks:
            try:
                hook(record)
            except Exception:  # a broken exporter must never break a model call
                log.exception("tracing hook %r failed", hook)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        caller, started, clock = current_caller(), time.time(), time.perf_counter()
        try:
            response = await self._inner.chat(request)
        except BaseException as exc:
            self._emit(
                CallRecord(
                    self.name,
                    "chat",
                    caller,
                    started,
                    (time.perf_counter() - clock) * 1000,
                    type(exc).__name__,
                )
            )
            raise
        self._emit(
            CallRecord(
                self.name,
                "chat",
                caller,
                started,
                (time.perf_counter() - clock) * 1000,
                "ok",
                response.usage,
                response.request_id,
            )
        )
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        caller, started, clock = current_caller(), time.time(), time.perf_counter()
        tally = StreamTally()
        try:
            async for event in self._inner.stream(request):
                tally.see(event, time.perf_counter())
                yield event
        except BaseException as exc:
            tally.failed(exc)
            raise
        finally:
            first = tally.first_token_at
            self._emit(
                CallRecord(
                    self.name,
                    "stream",
                    caller,
                    started,
                    (time.perf_counter() - clock) * 1000,
                    tally.outcome,
                    tally.usage,
                    tally.request_id,
                    (first - clock) * 1000 if first is not None else None,
                )
            )
