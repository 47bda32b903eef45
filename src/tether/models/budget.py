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
from dataclasses import dataclass

from tether.errors import ConfigError
from tether.ledger import Caller, Ledger, Limit, check_request, windowed
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


@dataclass(frozen=True)
class _Ticket:
    """Who a call is billed to, and its reservation (None: written once at the end)."""

    caller: Caller
    reservation: int | None


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
        self._windowed = windowed(self._limits)

    @property
    def name(self) -> str:
        return self._inner.name

    def _estimate(self, request: ChatRequest) -> tuple[int, float]:
        prompt = sum(self._counter.count(m.content) + _PER_MESSAGE for m in request.messages)
        usage = Usage(input_tokens=prompt, output_tokens=request.max_tokens)
        return prompt + request.max_tokens, cost_usd(usage, self._price) if self._price else 0.0

    def _cost(self, usage: Usage) -> float:
        return cost_usd(usage, self._price) if self._price else 0.0

    async def _open(self, request: ChatRequest) -> _Ticket:
        caller = current_caller()
        tokens, usd = self._estimate(request)
        if not self._windowed:
            # Nothing sums over calls: check this one, and write it once when it ends.
            check_request(caller, self._limits, tokens, usd)
            return _Ticket(caller, None)
        reservation = await self._ledger.areserve(caller, self.name, tokens, usd, self._limits)
        return _Ticket(caller, reservation)

    async def _settle(
        self,
        ticket: _Ticket,
        usage: Usage,
        usd: float,
        *,
        request_id: str | None = None,
        outcome: str = "ok",
    ) -> None:
        if ticket.reservation is None:
            await self._ledger.arecord(
                ticket.caller, self.name, usage, usd, request_id=request_id, outcome=outcome
            )
        else:
            await self._ledger.asettle(
                ticket.reservation, usage, usd, request_id=request_id, outcome=outcome
            )

    async def _release(self, ticket: _Ticket, outcome: str) -> None:
        if ticket.reservation is None:
            await self._ledger.arecord(ticket.caller, self.name, None, 0.0, outcome=outcome)
        else:
            await self._ledger.arelease(ticket.reservation, outcome=outcome)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        ticket = await self._open(request)
        try:
            response = await self._inner.chat(request)
        except BaseException as exc:
            await self._release(ticket, type(exc).__name__)
            raise
        await self._settle(
            ticket, response.usage, self._cost(response.usage), request_id=response.request_id
        )
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        ticket = await self._open(request)
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
                await self._settle(
                    ticket,
                    tally.usage,
                    self._cost(tally.usage),
                    request_id=tally.request_id,
                    outcome=tally.outcome,
                )
            elif tally.delivered:
                # Tokens were produced but never reported: keep the reservation as spent.
                tokens, usd = self._estimate(request)
                await self._settle(
                    ticket,
                    Usage(
                        input_tokens=tokens - request.max_tokens, output_tokens=request.max_tokens
                    ),
                    usd,
                    outcome=f"{tally.outcome} (estimated)",
                )
            else:
                await self._release(ticket, tally.outcome)
