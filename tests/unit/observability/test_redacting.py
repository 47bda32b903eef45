"""The redacting exporter hands its inner exporter (OTLP, say) redacted copies."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tether.observability.redacting import RedactingExporter


def test_the_inner_exporter_sees_only_redacted_values() -> None:
    inner = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingExporter(inner)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("s") as span:
        span.set_attribute("tether.question", "my IBAN is GB82 WEST 1234 5698 7654 32")
        span.set_attribute("tether.k", 8)
    (exported,) = inner.get_finished_spans()
    assert exported.attributes == {"tether.question": "my IBAN is [IBAN_CODE]", "tether.k": 8}
    assert exported.context == span.get_span_context()  # same ids: a copy, not a new span
