"""Prometheus metrics derived from finished spans."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from tether.errors import ProviderUnavailable
from tether.models.budget import calling_as
from tether.models.chat import ChatRequest, ChatResponse
from tether.models.fake import FakeChatModel
from tether.models.registry import CacheConfig, compose
from tether.models.retry import RetryPolicy
from tether.observability import tracing
from tether.observability.metrics import Metrics, MetricsSpanProcessor
from tether.types import Message, Usage

REQUEST = ChatRequest(messages=(Message(role="user", content="hi"),), max_tokens=8)


async def test_model_calls_requests_tokens_cost_errors_and_cache(tmp_path: Path) -> None:
    metrics = Metrics()
    provider = TracerProvider()
    provider.add_span_processor(MetricsSpanProcessor(metrics))
    tracing.use_provider(provider)
    try:
        ok = ChatResponse(text="yo", usage=Usage(input_tokens=30, output_tokens=4))
        model = compose(
            FakeChatModel([ok, ProviderUnavailable("down")], name="openai:gpt-4o-mini"),
            retry=RetryPolicy(max_attempts=1),
            cache=CacheConfig(tmp_path / "c.db", 60, scope="t"),
            hooks=[],
        )
        with calling_as(feature="qa", tenant="acme"):
            with tracing.tracer().start_as_current_span("tether.answer"):
                await model.chat(REQUEST)
            await model.chat(REQUEST)  # a hit
            with pytest.raises(ProviderUnavailable):
                await model.chat(REQUEST.model_copy(update={"max_tokens": 9}))
    finally:
        tracing.use_provider(None)
    value = metrics.registry.get_sample_value
    m = "openai:gpt-4o-mini"
    assert value("tether_model_calls_total", {"model": m, "outcome": "ok"}) == 2
    assert value("tether_model_calls_total", {"model": m, "outcome": "error"}) == 1
    assert value("tether_tokens_total", {"model": m, "direction": "input"}) == 60
    assert value("tether_tokens_total", {"model": m, "direction": "output"}) == 8
    assert value("tether_cost_usd_total", {"model": m, "feature": "qa", "tenant": "acme"}) > 0
    assert value("tether_response_cache_total", {"result": "hit"}) == 1
    assert value("tether_response_cache_total", {"result": "miss"}) == 2
    assert value("tether_errors_total", {"type": "ProviderUnavailable"}) == 1
    assert value("tether_requests_total", {"name": "tether.answer", "outcome": "ok"}) == 1
    assert value("tether_request_seconds_count", {"name": "tether.answer"}) == 1
    assert b"tether_model_call_seconds_bucket" in metrics.render()
