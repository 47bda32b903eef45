"""Budgets as a ChatModel wrapper: reserve before the call, settle after it.

The reservation is prompt tokens + max_tokens (and their price), checked against every
layered limit — per request, per user per day, per feature per day, per tenant per
month — in one ledger transaction, so BudgetExceeded is raised before any network call
and concurrent calls cannot jointly overspend. After the call the reservation becomes
the real usage; a call that failed without output frees it.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager

from tether.errors import ConfigError
from tether.ledger import Caller, Ledger, Limit
from tether.models.chat import (
    ChatModel,
    ChatRequest,
    ChatResponse,
    StreamEvent,
    StreamTally,
)
from tether.pricing import PriceTable, cost_usd, default_table
from tether.tokens import TiktokenCounter, TokenCounter
from tether.types import Usage

_CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar("tether_caller", default=Caller())
#: Tokens the chat format adds per message (role markers) on top of its content.
_PER_MESSAGE = 4


@contextmanager
def calling_as(
    user: str = "anonymous",
    feature: str = "default",
    tenant: str = "default",
    tier: str = "default",
) -> Iterator[Caller]:
    """Attribute the model calls made inside the block to this user, feature and tenant."""
    caller = Caller(user=user, feature=feature, tenant=tenant, tier=tier)
    token = _CALLER.set(caller)
    try:
        yield caller
    finally:
        _CALLER.reset(token)


def current_caller() -> Caller:
    return _CALLER.get()


class BudgetedChatModel:
    def __init__(
        self,
        inner: ChatModel,
        ledger: Ledger,
        limits: Sequence[Limit],
        *,
        prices: PriceTable | None = None,
        counter: TokenCounter | None = None,
    ) -> None:
        self._inner = inner
        self._ledger = ledger
        self._limits = list(limits)
        self._price = (prices or default_table()).price(inner.name)
        if self._price is None and any(limit.usd is not None for limit in self._limits):
            raise ConfigError(
                f"no price for {inner.name} in the price table; use token limits or add it"
            )
        self._counter = counter or TiktokenCounter()

    @property
    def name(self) -> str:
        return self._inner.name

    def _estimate(self, request: ChatRequest) -> tuple[int, float]:
        prompt = sum(self._counter.count(m.content) + _PER_MESSAGE for m in request.messages)
        usage = Usage(input_tokens=prompt, output_tokens=request.max_tokens)
        return prompt + request.max_tokens, cost_usd(usage, self._price) if self._price else 0.0

    def _cost(self, usage: Usage) -> float:
        return cost_usd(usage, self._price) if self._price else 0.0

    async def _reserve(self, request: ChatRequest) -> int:
        tokens, usd = self._estimate(request)
        return await self._ledger.areserve(current_caller(), self.name, tokens, usd, self._limits)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        reservation = await self._reserve(request)
        try:
            response = await self._inner.chat(request)
        except BaseException as exc:
            await self._ledger.arelease(reservation, outcome=type(exc).__name__)
            raise
        await self._ledger.asettle(
            reservation,
            response.usage,
            self._cost(response.usage),
            request_id=response.request_id,
        )
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        reservation = await self._reserve(request)
        tally = StreamTally()
        try:
            async for event in self._inner.stream(request):
                tally.see(event, 0.0)
                yield event
        except BaseException as exc:
            tally.failed(exc)
            raise
        finally:
            if tally.usage is not None:
                await self._ledger.asettle(
                    reservation,
                    tally.usage,
                    self._cost(tally.usage),
                    request_id=tally.request_id,
                    outcome=tally.outcome,
                )
            elif tally.delivered:
                # Tokens were produced but never reported: keep the reservation as spent.
                tokens, usd = self._estimate(request)
                await self._ledger.asettle(
                    reservation,
                    Usage(
                        input_tokens=tokens - request.max_tokens, output_tokens=request.max_tokens
                    ),
                    usd,
                    outcome=f"{tally.outcome} (estimated)",
                )
            else:
                await self._ledger.arelease(reservation, outcome=tally.outcome)
