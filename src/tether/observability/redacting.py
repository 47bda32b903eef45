"""Redaction at the exporter seam: every span leaves the process (to the span store or an
OTLP collector) with secrets and PII replaced, whoever set the attribute."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tether.security.redaction import redact_value

#: Attributes tether sets to identifiers and names, never to user text: left as they are
#: (a model name like "gpt-4.1-mini" or a chunk id must stay readable).
SAFE_KEYS = frozenset(
    {
        "gen_ai.system",
        "gen_ai.provider.name",
        "gen_ai.operation.name",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.response.id",
        "gen_ai.response.finish_reasons",
        # The configured model's name, like gen_ai.request.model (and on every span, so
        # scanning it cost ~20 µs a span for nothing).
        "tether.model",
        "tether.prompt.id",
        "tether.feature",
        "tether.tenant",
        "tether.user.tier",
        # Opaque ids the caller chose; `forget` matches them verbatim, so they must not
        # be rewritten by redaction on the way in.
        "enduser.id",
        "gen_ai.conversation.id",
        "tether.retrieved.ids",
        "tether.context.ids",
        "tether.cited.ids",
        "tether.retrieval.mode",
        "tether.fusion",
        "error.type",
    }
)
#: Captured content (prompts, replies) is cut to this many characters.
MAX_CHARS = 16_000
#: Attributes holding JSON (GenAI message lists): redacted string by string, so a
#: replacement can never break the JSON around it.
JSON_KEYS = frozenset({"gen_ai.input.messages", "gen_ai.output.messages"})


def _clean_key(key: str, value: Any) -> Any:
    if key in SAFE_KEYS:
        return value
    if key in JSON_KEYS and isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return redact_value(value, max_chars=MAX_CHARS)
        return json.dumps(redact_value(value, max_chars=MAX_CHARS), ensure_ascii=False)
    return redact_value(value, max_chars=MAX_CHARS)


def redacted_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _clean_key(k, v) for k, v in attributes.items()}


def redacted_span(span: ReadableSpan) -> ReadableSpan:
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=redacted_attributes(span.attributes or {}),
        events=[
            Event(e.name, redacted_attributes(e.attributes or {}), e.timestamp) for e in span.events
        ],
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingExporter(SpanExporter):
    """Wraps another exporter (OTLP, say) and hands it redacted copies of the spans."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([redacted_span(s) for s in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)
