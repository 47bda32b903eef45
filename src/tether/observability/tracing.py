"""OpenTelemetry tracing: one provider per process, spans for every stage of a request.

Spans follow the GenAI semantic conventions for model calls (`gen_ai.*`) and carry
tether's own attributes (`tether.*`: prompt id, feature, tenant, user tier, chunk ids,
cost). Nothing here sets a global: `setup_tracing` returns a provider that `tracer()`
hands out, so tests and apps can run several side by side, and an app that already
configured OpenTelemetry globally gets its spans through the global tracer instead.

Exporters: the embedded SQLite span store (default) and OTLP/HTTP when an endpoint is set;
both see spans only after redaction (`redacting.py`). Documents are never attributes:
spans name chunks by id and size; prompt and reply text is recorded only when
`trace_content` is on, redacted and cut.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tether.observability.metrics import Metrics, MetricsSpanProcessor
from tether.observability.redacting import RedactingExporter
from tether.observability.spanstore import SpanStore, SpanStoreExporter

TRACER_NAME = "tether"
#: Spans written per export. The export thread holds the GIL while it turns a batch into
#: rows (~30 µs a span), and a request arriving meanwhile waits: with the SDK's default
#: (up to 512, ~150 every 200 ms at one client here) the gateway's p99 at one client was
#: 5 ms; with 32 it is 2.5 ms.
EXPORT_BATCH = 32

_provider: TracerProvider | None = None
#: The provider's tracer, fetched once: `get_tracer` builds two scope objects, takes a
#: lock and re-registers a warnings filter on every call (~10 µs a span here).
_tracer: trace.Tracer | None = None
_capture_content = False
_PROMPT: contextvars.ContextVar[str | None] = contextvars.ContextVar("tether_prompt", default=None)


@dataclass(frozen=True)
class TracingConfig:
    span_db: Path | None = None
    otlp_endpoint: str | None = None
    otlp_headers: tuple[tuple[str, str], ...] = ()
    capture_content: bool = False
    service_name: str = "tether"


def setup_tracing(
    config: TracingConfig,
    *,
    metrics: Metrics | None = None,
) -> TracerProvider:
    """A provider exporting to the configured backends (and feeding `metrics`, if given),
    made the one `tracer()` uses. Call `shutdown_tracing` before exit to flush."""
    global _capture_content
    provider = TracerProvider(resource=Resource.create({"service.name": config.service_name}))
    if metrics is not None:
        provider.add_span_processor(MetricsSpanProcessor(metrics))
    if config.span_db is not None:
        provider.add_span_processor(
            BatchSpanProcessor(
                SpanStoreExporter(SpanStore(config.span_db)),
                schedule_delay_millis=200,
                max_export_batch_size=EXPORT_BATCH,
            )
        )
    if config.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        otlp = OTLPSpanExporter(endpoint=config.otlp_endpoint, headers=dict(config.otlp_headers))
        provider.add_span_processor(BatchSpanProcessor(RedactingExporter(otlp)))
    _capture_content = config.capture_content
    use_provider(provider)
    return provider


def use_provider(provider: TracerProvider | None, *, capture_content: bool | None = None) -> None:
    global _provider, _tracer, _capture_content
    _provider = provider
    _tracer = None if provider is None else provider.get_tracer(TRACER_NAME)
    if capture_content is not None:
        _capture_content = capture_content


def shutdown_tracing() -> None:
    """Flush and stop the provider `setup_tracing` installed."""
    global _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
        _provider = None
        _tracer = None


def tracer() -> trace.Tracer:
    if _tracer is not None:
        return _tracer
    return trace.get_tracer(TRACER_NAME)


def capture_content() -> bool:
    return _capture_content and _provider is not None


def trace_id_of(span: trace.Span) -> str | None:
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


@contextmanager
def using_prompt(prompt_id: str) -> Iterator[None]:
    """Model calls inside the block are attributed to this prompt (`tether.prompt.id`)."""
    token = _PROMPT.set(prompt_id)
    try:
        yield
    finally:
        _PROMPT.reset(token)


def current_prompt() -> str | None:
    return _PROMPT.get()
