"""Prometheus metrics, derived from the spans tracing already records.

One source of truth: `MetricsSpanProcessor` sits in the tracer provider beside the
exporters and turns every finished span into counters and histograms — request latency
from root spans, calls, latency, tokens, cost, errors and cache hits from model-call
spans. The service exposes `render()` at `/metrics`. A registry per processor (not the
process-global default) keeps tests and embedded apps apart.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

#: Seconds: from a cache hit (sub-millisecond) to a long generation.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tether_requests",
            "Requests (root spans) by name and outcome.",
            ["name", "outcome"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "tether_request_seconds", "Request latency.", ["name"], buckets=_BUCKETS, registry=r
        )
        self.model_calls = Counter(
            "tether_model_calls",
            "Model calls by model and outcome.",
            ["model", "outcome"],
            registry=r,
        )
        self.model_seconds = Histogram(
            "tether_model_call_seconds",
            "Model call latency.",
            ["model"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "tether_tokens",
            "Model tokens by model and direction.",
            ["model", "direction"],
            registry=r,
        )
        self.cost = Counter(
            "tether_cost_usd",
            "Model cost in US dollars.",
            ["model", "feature", "tenant"],
            registry=r,
        )
        self.errors = Counter("tether_errors", "Failed spans by error type.", ["type"], registry=r)
        self.cache = Counter(
            "tether_response_cache", "Response-cache lookups by result.", ["result"], registry=r
        )
        # `labels()` validates and locks on every call (~2 µs, seven times a model call);
        # a child, once made, is the same object for good, so it is looked up here.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: MetricWrapperBase, *values: str) -> Any:
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def observe(self, span: ReadableSpan) -> None:
        attrs = span.attributes or {}
        seconds = ((span.end_time or 0) - (span.start_time or 0)) / 1e9
        failed = span.status.status_code is StatusCode.ERROR
        if failed:
            self._child(
                self.errors, str(attrs.get("error.type") or span.status.description or "error")
            ).inc()
        if attrs.get("gen_ai.operation.name") == "chat":
            model = str(attrs.get("tether.model", attrs.get("gen_ai.request.model", "?")))
            self._child(self.model_calls, model, "error" if failed else "ok").inc()
            self._child(self.model_seconds, model).observe(seconds)
            for direction in ("input", "output"):
                tokens = attrs.get(f"gen_ai.usage.{direction}_tokens")
                if isinstance(tokens, int):
                    self._child(self.tokens, model, direction).inc(tokens)
            cost = attrs.get("tether.cost_usd")
            if isinstance(cost, int | float) and cost > 0:
                feature = str(attrs.get("tether.feature", ""))
                tenant = str(attrs.get("tether.tenant", ""))
                self._child(self.cost, model, feature, tenant).inc(cost)
            hit = attrs.get("tether.cache.hit")
            if isinstance(hit, bool):
                self._child(self.cache, "hit" if hit else "miss").inc()
        if span.parent is None:
            self._child(self.requests, span.name, "error" if failed else "ok").inc()
            self._child(self.request_seconds, span.name).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition format."""
        return generate_latest(self.registry)


class MetricsSpanProcessor(SpanProcessor):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        self.metrics.observe(span)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
