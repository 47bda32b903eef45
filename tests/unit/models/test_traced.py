"""Tracing hooks and the composed wrapper stack."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tether.errors import ProviderUnavailable
from tether.ledger import Ledger, Limit
from tether.models.budget import calling_as
from tether.models.chat import ChatRequest, ChatResponse
from tether.models.fake import FakeChatModel
from tether.models.registry import CacheConfig, compose
from tether.models.retry import RetryPolicy
from tether.models.traced import CallRecord, TracedChatModel
from tether.types import Message, Usage

REQUEST = ChatRequest(messages=(Message(role="user", content="hello there"),), max_tokens=8)
SECRET = "sk-should-never-be-logged"


def reply() -> ChatResponse:
    return ChatResponse(
        text=f"reply {SECRET}", usage=Usage(input_tokens=3, output_tokens=2), request_id="req-7"
    )


async def test_hooks_get_one_record_per_call_with_caller_and_usage() -> None:
    records: list[CallRecord] = []
    model = TracedChatModel(FakeChatModel([reply(), ProviderUnavailable("503")]), [records.append])
    with calling_as(user="ana", feature="qa", tenant="acme"):
        await model.chat(REQUEST)
        with pytest.raises(ProviderUnavailable):
            await model.chat(REQUEST)
    ok, failed = records
    assert (ok.outcome, ok.request_id, ok.usage, ok.caller.tenant) == (
        "ok",
        "req-7",
        Usage(input_tokens=3, output_tokens=2),
        "acme",
    )
    assert failed.outcome == "ProviderUnavailable" and failed.usage is None
    assert ok.duration_ms >= 0 and ok.kind == "chat"


async def test_stream_records_first_token_time_and_outcome() -> None:
    records: list[CallRecord] = []
    model = TracedChatModel(FakeChatModel([reply()]), [records.append])
    events = [e async for e in model.stream(REQUEST)]
    assert events[-1].type == "done"
    (record,) = records
    assert record.kind == "stream" and record.outcome == "ok"
    assert record.first_token_ms is not None and record.first_token_ms <= record.duration_ms


async def test_a_broken_hook_never_breaks_the_call(caplog: pytest.LogCaptureFixture) -> None:
    def broken(record: CallRecord) -> None:
        raise RuntimeError("exporter down")

    seen: list[CallRecord] = []
    model = TracedChatModel(FakeChatModel([reply()]), [broken, seen.append])
    assert (await model.chat(REQUEST)).request_id == "req-7"
    assert len(seen) == 1 and "exporter down" in caplog.text


async def test_the_default_log_line_has_ids_and_tokens_but_no_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await TracedChatModel(FakeChatModel([reply()])).chat(REQUEST)
    line = next(r.getMessage() for r in caplog.records if r.name == "tether.calls")
    assert "req-7" in line and "in=3" in line and "out=2" in line
    assert SECRET not in caplog.text and "hello there" not in caplog.text


async def test_stack_order_cache_hits_skip_budget_and_provider(tmp_path: Path) -> None:
    fake = FakeChatModel([reply()])
    ledger = Ledger(tmp_path / "usage.db")
    records: list[CallRecord] = []
    model = compose(
        fake,
        retry=RetryPolicy(),
        ledger=ledger,
        limits=[Limit("request", tokens=100)],
        cache=CacheConfig(str(tmp_path / "responses.db"), 3600, scope="acme"),
        hooks=[records.append],
    )
    first = await model.chat(REQUEST)
    second = await model.chat(REQUEST)
    assert first.text == second.text and len(fake.requests) == 1
    assert sum(s.calls for s in ledger.summary(by=())) == 1  # the hit reserved nothing
    assert [r.outcome for r in records] == ["ok", "ok"]  # tracing sees both calls


async def test_a_call_is_a_genai_span_with_caller_prompt_and_cost() -> None:
    from tests.support.spans import captured_spans
    from tether.observability.tracing import using_prompt

    model = TracedChatModel(FakeChatModel([reply()], name="openai:gpt-4o-mini"), [])
    with (
        captured_spans(content=True) as captured,
        calling_as(user="ana", feature="qa", tenant="acme", tier="pro"),
        using_prompt("qa.answer@1"),
    ):
        await model.chat(REQUEST)
    span = captured.named("chat gpt-4o-mini")
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.system"] == "openai"
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.usage.input_tokens"] == 3
    assert attrs["gen_ai.usage.output_tokens"] == 2
    assert attrs["gen_ai.response.id"] == "req-7"
    assert (attrs["tether.feature"], attrs["tether.tenant"], attrs["tether.user.tier"]) == (
        "qa",
        "acme",
        "pro",
    )
    assert attrs["tether.prompt.id"] == "qa.answer@1"
    assert attrs["tether.cost_usd"] > 0  # gpt-4o-mini is in the price table
    assert "hello there" in attrs["gen_ai.input.messages"]
    assert SECRET in attrs["gen_ai.output.messages"]  # raw on the span; redacted on export


async def test_a_failed_call_is_an_error_span() -> None:
    from opentelemetry.trace import StatusCode

    from tests.support.spans import captured_spans

    model = TracedChatModel(FakeChatModel([ProviderUnavailable("503")]), [])
    with captured_spans() as captured, pytest.raises(ProviderUnavailable):
        await model.chat(REQUEST)
    (span,) = captured.spans
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "ProviderUnavailable"


async def test_cache_hits_and_retries_annotate_the_call_span(tmp_path: Path) -> None:
    from tests.support.spans import captured_spans

    inner = FakeChatModel([ProviderUnavailable("503"), reply()])
    model = compose(
        inner,
        retry=RetryPolicy(base_delay=0.001, max_delay=0.001),
        cache=CacheConfig(tmp_path / "c.db", 3600, scope="t"),
        hooks=[],
    )
    with captured_spans() as captured:
        await model.chat(REQUEST)
        await model.chat(REQUEST)
    first, second = captured.spans
    assert (first.attributes or {})["tether.cache.hit"] is False
    assert [e.name for e in first.events] == ["tether.retry"]
    assert (first.events[0].attributes or {})["error.type"] == "ProviderUnavailable"
    assert (second.attributes or {})["tether.cache.hit"] is True
    assert second.events == ()


async def test_without_content_capture_the_span_has_no_text() -> None:
    from tests.support.spans import captured_spans

    model = TracedChatModel(FakeChatModel([reply()]), [])
    with captured_spans() as captured:
        await model.chat(REQUEST)
    (span,) = captured.spans
    attrs = dict(span.attributes or {})
    assert "gen_ai.input.messages" not in attrs and "gen_ai.output.messages" not in attrs
    assert attrs["gen_ai.usage.input_tokens"] == 3
