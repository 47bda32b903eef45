"""A stored model call as a test fixture: production failures become regression tests.

`tether traces export TRACE_ID --fixture calls.json` writes the model calls of a trace
(as recorded on their spans: messages, parameters, reply, usage — all redacted) to a
JSON file; `ReplayChatModel(path)` answers the same requests with the same replies, so
a test can run the whole pipeline again offline::

    model = ReplayChatModel("tests/fixtures/calls/incident-1234.json")
    result = await answer(question, store=store, embedder=embedder, scope=scope, model=model)
    assert not result.answer.declined

Requests are matched on their messages after the same redaction the span store applies,
so a fixture recorded from a redacted trace still matches the live request.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from tether.errors import DatasetError, InvalidResponse
from tether.models.chat import (
    ChatRequest,
    ChatResponse,
    DoneEvent,
    FinishReason,
    StreamEvent,
    TokenEvent,
    UsageEvent,
)
from tether.observability.redacting import MAX_CHARS
from tether.security.redaction import redact
from tether.types import Usage


class FixtureMessage(BaseModel):
    role: str
    content: str


class RecordedCall(BaseModel):
    span_id: str
    model: str
    messages: list[FixtureMessage]
    max_tokens: int | None = None
    temperature: float | None = None
    prompt_id: str | None = None
    reply: str
    finish_reason: FinishReason = "stop"
    input_tokens: int = 0
    output_tokens: int = 0


class CallFixture(BaseModel):
    version: Literal[1] = 1
    trace_id: str
    calls: list[RecordedCall]

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> CallFixture:
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError) as exc:
            raise DatasetError(f"{path}: not a call fixture: {exc}") from exc


def recorded_call(span_id: str, attributes: dict[str, Any]) -> RecordedCall | None:
    """The call a model-call span describes; None if it did not capture content."""
    if "gen_ai.input.messages" not in attributes or "gen_ai.output.messages" not in attributes:
        return None
    messages = json.loads(attributes["gen_ai.input.messages"])
    output = json.loads(attributes["gen_ai.output.messages"])
    finish = (attributes.get("gen_ai.response.finish_reasons") or ["stop"])[0]
    return RecordedCall(
        span_id=span_id,
        model=str(attributes.get("tether.model", attributes.get("gen_ai.request.model", ""))),
        messages=[FixtureMessage(role=m["role"], content=m["content"]) for m in messages],
        max_tokens=attributes.get("gen_ai.request.max_tokens"),
        temperature=attributes.get("gen_ai.request.temperature"),
        prompt_id=attributes.get("tether.prompt.id"),
        reply="".join(m["content"] for m in output),
        finish_reason=finish
        if finish in ("stop", "length", "tool_calls", "content_filter")
        else "other",
        input_tokens=int(attributes.get("gen_ai.usage.input_tokens", 0)),
        output_tokens=int(attributes.get("gen_ai.usage.output_tokens", 0)),
    )


def _key(messages: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((role, redact(content[:MAX_CHARS])) for role, content in messages)


class ReplayChatModel:
    """Answers each request with the recorded reply to the same (redacted) messages."""

    def __init__(self, path: Path | str, *, name: str | None = None) -> None:
        self.fixture = CallFixture.read(Path(path))
        self._name = name or (self.fixture.calls[0].model if self.fixture.calls else "replay")
        self._replies: dict[tuple[tuple[str, str], ...], list[RecordedCall]] = {}
        for call in self.fixture.calls:
            key = tuple((m.role, m.content) for m in call.messages)
            self._replies.setdefault(key, []).append(call)
        self.used = 0

    @property
    def name(self) -> str:
        return self._name

    def _take(self, request: ChatRequest) -> RecordedCall:
        key = _key([(m.role, m.content) for m in request.messages])
        queue = self._replies.get(key)
        if not queue:
            raise InvalidResponse(
                f"no recorded call matches this request ({len(request.messages)} messages)"
            )
        self.used += 1
        return queue.pop(0) if len(queue) > 1 else queue[0]

    async def chat(self, request: ChatRequest) -> ChatResponse:
        call = self._take(request)
        return ChatResponse(
            text=call.reply,
            usage=Usage(input_tokens=call.input_tokens, output_tokens=call.output_tokens),
            model=call.model,
            finish_reason=call.finish_reason,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        call = self._take(request)
        yield TokenEvent(text=call.reply)
        yield UsageEvent(
            usage=Usage(input_tokens=call.input_tokens, output_tokens=call.output_tokens)
        )
        yield DoneEvent(finish_reason=call.finish_reason)
