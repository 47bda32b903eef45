"""Budgets: reserve before the call, settle after, never overspend under concurrency."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tether.errors import BudgetExceeded, ConfigError, ProviderUnavailable
from tether.ledger import Caller, Ledger, Limit
from tether.models.budget import BudgetedChatModel, calling_as
from tether.models.chat import ChatRequest, ChatResponse
from tether.models.fake import FakeChatModel
from tether.types import Message, Usage


class WordCounter:
    def count(self, text: str) -> int:
        return len(text.split())


REQUEST = ChatRequest(messages=(Message(role="user", content="one two three four"),), max_tokens=10)
ESTIMATE = 4 + 4 + 10  # words + per-message overhead + max_tokens


def reply(input_tokens: int = 8, output_tokens: int = 5) -> ChatResponse:
    return ChatResponse(
        text="ok", usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    )


def budgeted(fake: FakeChatModel, ledger: Ledger, *limits: Limit) -> BudgetedChatModel:
    return BudgetedChatModel(fake, ledger, limits, counter=WordCounter())


def spent(ledger: Ledger) -> int:
    return sum(s.input_tokens + s.output_tokens for s in ledger.summary(by=()))


async def test_over_budget_raises_before_any_network_call(tmp_path: Path) -> None:
    fake = FakeChatModel([reply()])
    model = budgeted(fake, Ledger(tmp_path / "l.db"), Limit("request", tokens=ESTIMATE - 1))
    with pytest.raises(BudgetExceeded) as caught:
        await model.chat(REQUEST)
    assert fake.requests == []
    assert caught.value.scope == "request" and caught.value.needed == ESTIMATE


async def test_settle_records_real_usage_and_frees_the_rest(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    # Two reservations of 18 would not fit in 35; 13 settled + 18 reserved does.
    model = budgeted(
        FakeChatModel([reply(8, 5)] * 3), ledger, Limit("feature_day", tokens=2 * ESTIMATE - 1)
    )
    await model.chat(REQUEST)
    assert spent(ledger) == 13
    await model.chat(REQUEST)
    assert spent(ledger) == 26
    with pytest.raises(BudgetExceeded, match="feature_day"):
        await model.chat(REQUEST)  # 26 + 18 > 35


async def test_exact_fit_is_allowed(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    model = budgeted(
        FakeChatModel([reply(8, 5), reply(8, 5)]),
        ledger,
        Limit("feature_day", tokens=13 + ESTIMATE),
    )
    await model.chat(REQUEST)
    await model.chat(REQUEST)
    assert spent(ledger) == 26


async def test_a_failed_call_releases_its_reservation(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    model = budgeted(
        FakeChatModel([ProviderUnavailable("503"), reply()]),
        ledger,
        Limit("user_day", tokens=ESTIMATE),
    )
    with pytest.raises(ProviderUnavailable):
        await model.chat(REQUEST)
    assert spent(ledger) == 0
    await model.chat(REQUEST)  # the released reservation no longer counts


async def test_windows_are_per_user_feature_and_tenant(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    limits = (Limit("user_day", tokens=ESTIMATE), Limit("tenant_month", tokens=3 * ESTIMATE))
    model = budgeted(FakeChatModel([reply(ESTIMATE - 5, 5)] * 5), ledger, *limits)
    with calling_as(user="ana", feature="qa", tenant="acme"):
        await model.chat(REQUEST)
        with pytest.raises(BudgetExceeded) as caught:
            await model.chat(REQUEST)
        assert caught.value.scope == "user_day" and caught.value.feature == "qa"
    with calling_as(user="ben", feature="qa", tenant="acme"):
        await model.chat(REQUEST)
    with calling_as(user="cy", feature="qa", tenant="acme"):
        await model.chat(REQUEST)
    with calling_as(user="dee", feature="qa", tenant="acme"), pytest.raises(BudgetExceeded) as c2:
        await model.chat(REQUEST)
    assert c2.value.scope == "tenant_month"
    with calling_as(user="dee", feature="qa", tenant="other"):
        await model.chat(REQUEST)


def test_day_windows_roll_over(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    caller = Caller(user="ana")
    limit = [Limit("user_day", tokens=10)]
    day1 = datetime(2026, 1, 1, 23, 59, tzinfo=UTC)
    ledger.reserve(caller, "m", 10, 0.0, limit, now=day1)
    with pytest.raises(BudgetExceeded):
        ledger.reserve(caller, "m", 1, 0.0, limit, now=day1)
    ledger.reserve(caller, "m", 10, 0.0, limit, now=datetime(2026, 1, 2, 0, 1, tzinfo=UTC))


async def test_money_limits_use_the_price_table(tmp_path: Path) -> None:
    fake = FakeChatModel([reply(1_000, 1_000)] * 3, name="openai:gpt-4.1-mini")
    ledger = Ledger(tmp_path / "l.db")
    model = BudgetedChatModel(
        fake, ledger, [Limit("feature_day", usd=0.004)], counter=WordCounter()
    )
    await model.chat(REQUEST)  # costs 1000*0.4/1e6 + 1000*1.6/1e6 = $0.002
    await model.chat(REQUEST)
    with pytest.raises(BudgetExceeded):
        await model.chat(REQUEST)
    assert sum(s.usd for s in ledger.summary(by=())) == pytest.approx(0.004)
    with pytest.raises(ConfigError, match="no price"):
        BudgetedChatModel(FakeChatModel([], name="mystery"), ledger, [Limit("request", usd=1.0)])


@pytest.mark.parametrize("ledgers", [1, 2])
async def test_a_hundred_concurrent_calls_never_overspend(tmp_path: Path, ledgers: int) -> None:
    """100 calls at once (two ledgers on one file act like two processes)."""
    limit_tokens = 10 * ESTIMATE + ESTIMATE // 2
    books = [Ledger(tmp_path / "l.db") for _ in range(ledgers)]
    models = [
        budgeted(
            FakeChatModel([reply(ESTIMATE - 10, 10)] * 100, delay=0.01),
            book,
            Limit("tenant_month", tokens=limit_tokens),
        )
        for book in books
    ]
    results = await asyncio.gather(
        *(models[i % ledgers].chat(REQUEST) for i in range(100)), return_exceptions=True
    )
    ok = [r for r in results if isinstance(r, ChatResponse)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(ok) + len(refused) == 100
    assert len(ok) == 10  # each reserves ESTIMATE and settles exactly ESTIMATE
    assert spent(books[0]) == len(ok) * ESTIMATE <= limit_tokens


async def test_stream_settles_from_its_usage_event(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    model = budgeted(FakeChatModel([reply(7, 3)]), ledger, Limit("request", tokens=ESTIMATE))
    events = [e async for e in model.stream(REQUEST)]
    assert events[-1].type == "done"
    assert spent(ledger) == 10


async def test_an_aborted_stream_keeps_its_estimate_as_spent(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    model = budgeted(FakeChatModel([reply(7, 3)]), ledger, Limit("request", tokens=ESTIMATE))
    events = model.stream(REQUEST)
    await anext(events)  # a token arrived, then the consumer went away
    await events.aclose()  # type: ignore[attr-defined]
    assert spent(ledger) == ESTIMATE  # produced but unreported usage counts in full


async def test_a_stream_failing_before_any_event_releases(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    model = budgeted(
        FakeChatModel([ProviderUnavailable("down")]), ledger, Limit("request", tokens=ESTIMATE)
    )
    with pytest.raises(ProviderUnavailable):
        async for _ in model.stream(REQUEST):
            pass
    assert spent(ledger) == 0 and ledger.summary(by=()) == []


async def test_request_only_limits_write_each_call_once(tmp_path: Path) -> None:
    """With no window limit nothing needs reserving: a call is one settled row, a failed
    call one released row, and nothing is ever left 'reserved'."""
    import sqlite3

    ledger = Ledger(tmp_path / "l.db")
    fake = FakeChatModel([reply(8, 5), ProviderUnavailable("down")])
    model = budgeted(fake, ledger, Limit("request", tokens=ESTIMATE))
    with calling_as(user="ann", feature="f", tenant="t"):
        await model.chat(REQUEST)
        with pytest.raises(ProviderUnavailable):
            await model.chat(REQUEST)
    rows = (
        sqlite3.connect(tmp_path / "l.db")
        .execute(
            "SELECT state, tokens, input_tokens, output_tokens, user, tenant, outcome FROM calls "
            "ORDER BY id"
        )
        .fetchall()
    )
    assert rows == [
        ("settled", 13, 8, 5, "ann", "t", "ok"),
        ("released", 0, 0, 0, "ann", "t", "ProviderUnavailable"),
    ]
    assert spent(ledger) == 13
    # the running totals still move, so a window limit added later sees this spend
    assert ledger.total("user_day", "ann", datetime.now(UTC).strftime("%Y-%m-%d"))[0] == 13


async def test_request_only_limits_still_refuse_an_oversized_call(tmp_path: Path) -> None:
    fake = FakeChatModel([reply()])
    model = budgeted(fake, Ledger(tmp_path / "l.db"), Limit("request", tokens=ESTIMATE - 1))
    with pytest.raises(BudgetExceeded):
        await model.chat(REQUEST)
    assert fake.requests == []
