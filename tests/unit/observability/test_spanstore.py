"""The embedded span store behind `tether traces`, fed by the real OTel SDK pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tether.observability.spanstore import SpanStore, SpanStoreExporter, TraceNotFound


def provider_for(store: SpanStore) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SpanStoreExporter(store)))
    return provider


def test_a_trace_round_trips_with_its_tree_tokens_and_cost(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "t.db")
    tracer = provider_for(store).get_tracer("test")
    with tracer.start_as_current_span(
        "tether.answer", attributes={"tether.tenant": "acme"}
    ) as root:
        for tokens in (10, 32):
            with tracer.start_as_current_span("chat m") as span:
                span.set_attributes(
                    {
                        "gen_ai.usage.input_tokens": tokens,
                        "gen_ai.usage.output_tokens": 5,
                        "tether.cost_usd": 0.25,
                    }
                )
    trace_id = format(root.get_span_context().trace_id, "032x")
    (summary,) = store.traces()
    assert summary.trace_id == trace_id and summary.name == "tether.answer"
    assert (summary.spans, summary.input_tokens, summary.output_tokens) == (3, 42, 10)
    assert summary.cost_usd == pytest.approx(0.5)
    assert summary.tenant == "acme"
    spans = store.spans(trace_id[:8])  # a prefix is enough
    root_id = next(s.span_id for s in spans if s.parent_id is None)
    assert sorted(s.parent_id == root_id for s in spans) == [False, True, True]
    assert store.traces(tenant="other") == []


def test_unknown_and_ambiguous_ids_are_typed_errors(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "t.db")
    tracer = provider_for(store).get_tracer("test")
    for _ in range(40):  # enough traces that some share a first hex digit
        with tracer.start_as_current_span("r"):
            pass
    with pytest.raises(TraceNotFound, match="hex"):
        store.spans("xyz")
    with pytest.raises(TraceNotFound, match="no stored trace"):
        store.spans("0" * 32)
    ids = [t.trace_id for t in store.traces(limit=40)]
    shared = next(a for a in ids if sum(b.startswith(a[:1]) for b in ids) > 1)
    with pytest.raises(TraceNotFound, match="6\\+"):
        store.spans(shared[:1])


def test_attributes_and_events_are_redacted_before_they_are_written(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "t.db")
    tracer = provider_for(store).get_tracer("test")
    messages = [{"role": "user", "content": 'mail ana@example.com, key "sk-abcdefghijklmnop12345"'}]
    with tracer.start_as_current_span("chat m") as span:
        span.set_attributes(
            {
                "tether.question": "call me on +1-984-182-0190",
                "gen_ai.input.messages": json.dumps(messages),
                "gen_ai.request.model": "gpt-4.1-mini",
                "tether.retrieved.ids": ["c0ffee0123456789"],
            }
        )
        span.add_event("note", {"detail": "card 4111 1111 1111 1111"})
    (record,) = store.spans(format(span.get_span_context().trace_id, "032x"))
    attrs = record.attributes
    assert attrs["tether.question"] == "call me on [PHONE_NUMBER]"
    stored = json.loads(attrs["gen_ai.input.messages"])  # still valid JSON
    assert stored == [{"role": "user", "content": 'mail [EMAIL_ADDRESS], key "[SECRET]"'}]
    assert attrs["gen_ai.request.model"] == "gpt-4.1-mini"
    assert attrs["tether.retrieved.ids"] == ["c0ffee0123456789"]
    assert record.events[0]["attributes"] == {"detail": "card [CREDIT_CARD]"}
    raw = (tmp_path / "t.db").read_bytes()
    assert b"ana@example.com" not in raw and b"4111 1111" not in raw
