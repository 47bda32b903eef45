"""Tracing as a ChatModel wrapper: one OpenTelemetry span and one `CallRecord` per
logical call.

The span follows the GenAI semantic conventions (`gen_ai.system`, `gen_ai.request.model`,
`gen_ai.usage.input_tokens`, ...) plus tether's prompt id, feature, tenant, user tier and
cost; the wrappers inside it (cache, retry) add their own attributes and events to it.
Prompt and reply text go on the span only when content capture is on, and leave the
process redacted (`observability/redacting.py`). Hooks receive the record after the call;
the default hook logs one line per call and never the prompt, reply or a credential.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from tether.ledger import Caller
from tether.models.budget import current_caller
from tether.models.chat import (
    ChatModel,
    ChatRequest,
    ChatResponse,
    StreamEvent,
    StreamTally,
    TokenEvent,
)
from tether.observability.tracing import capture_content, current_prompt, tracer
from tether.pricing import Price, cost_usd, default_table
from tether.types import Usage

log = logging.getLogger("tether.calls")

#: gen_ai.system for each model-spec prefix.
_SYSTEMS = {
    "openai": "openai",
    "openai-compat": "openai",
    "anthropic": "anthropic",
    "local": "llama.cpp",
    "fake": "tether.fake",
}


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


def _system_and_model(name: str) -> tuple[str, str]:
    prefix, _, model = name.partition(":")
    if not model:
        return _SYSTEMS.get(prefix, prefix), prefix
    return _SYSTEMS.get(prefix, prefix), model


def _messages_json(request: ChatRequest) -> str:
    return json.dumps(
        [{"role": m.role, "content": m.content} for m in request.messages], ensure_ascii=False
    )


class TracedChatModel:
    def __init__(self, inner: ChatModel, hooks: Sequence[Hook] = (log_hook,)) -> None:
        self._inner = inner
        self._hooks = list(hooks)
        self._system, self._model = _system_and_model(inner.name)
        self._price: Price | None = default_table().price(inner.name)

    @property
    def name(self) -> str:
        return self._inner.name

    def _emit(self, record: CallRecord) -> None:
        for hook in self._hooks:
            try:
                hook(record)
            except Exception:  # a broken exporter must never break a model call
                log.exception("tracing hook %r failed", hook)

    def _start(self, request: ChatRequest, caller: Caller, kind: str) -> trace.Span:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": self._system,
            "gen_ai.provider.name": self._system,
            "gen_ai.request.model": self._model,
            "gen_ai.request.max_tokens": request.max_tokens,
            "tether.model": self.name,
            "tether.stream": kind == "stream",
            "tether.feature": caller.feature,
            "tether.tenant": caller.tenant,
            "tether.user.tier": caller.tier,
            # Lets `forget(user=...)` find a user's traces (see tether.memory_places).
            "enduser.id": caller.user,
        }
        if request.temperature is not None:
            attributes["gen_ai.request.temperature"] = request.temperature
        prompt = current_prompt()
        if prompt:
            attributes["tether.prompt.id"] = prompt
        if capture_content():
            attributes["gen_ai.input.messages"] = _messages_json(request)
        # Not the current span for streams: an async generator must not leave a context
        # attached in its caller between yields.
        return tracer().start_span(
            f"chat {self._model}", kind=SpanKind.CLIENT, attributes=attributes
        )

    def _finish(
        self,
        span: trace.Span,
        *,
        outcome: str,
        usage: Usage | None,
        request_id: str | None,
        text: str | None,
        finish: str | None,
        first_token_ms: float | None = None,
    ) -> None:
        if usage is not None:
            span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
            if self._price is not None:
                span.set_attribute("tether.cost_usd", cost_usd(usage, self._price))
        if request_id:
            span.set_attribute("gen_ai.response.id", request_id)
        if finish:
            span.set_attribute("gen_ai.response.finish_reasons", [finish])
        if first_token_ms is not None:
            span.set_attribute("tether.first_token_ms", first_token_ms)
        if text is not None and capture_content():
            span.set_attribute(
                "gen_ai.output.messages",
                json.dumps([{"role": "assistant", "content": text}], ensure_ascii=False),
            )
        if outcome != "ok":
            span.set_attribute("error.type", outcome)
            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end()

    async def chat(self, request: ChatRequest) -> ChatResponse:
        caller, started, clock = current_caller(), time.time(), time.perf_counter()
        span = self._start(request, caller, "chat")
        try:
            # Current while the inner wrappers run, so cache and retry annotate this span.
            with trace.use_span(
                span, end_on_exit=False, record_exception=False, set_status_on_exception=False
            ):
                response = await self._inner.chat(request)
        except BaseException as exc:
            self._finish(
                span,
                outcome=type(exc).__name__,
                usage=None,
                request_id=None,
                text=None,
                finish=None,
            )
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
        self._finish(
            span,
            outcome="ok",
            usage=response.usage,
            request_id=response.request_id,
            text=response.text,
            finish=response.finish_reason,
        )
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
        span = self._start(request, caller, "stream")
        tally = StreamTally()
        parts: list[str] = []
        try:
            async for event in self._inner.stream(request):
                tally.see(event, time.perf_counter())
                if isinstance(event, TokenEvent):
                    parts.append(event.text)
                yield event
        except BaseException as exc:
            tally.failed(exc)
            raise
        finally:
            first = tally.first_token_at
            first_ms = (first - clock) * 1000 if first is not None else None
            self._finish(
                span,
                outcome=tally.outcome,
                usage=tally.usage,
                request_id=tally.request_id,
                text="".join(parts),
                finish=None,
                first_token_ms=first_ms,
            )
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
                    first_ms,
                )
            )
