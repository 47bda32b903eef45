"""The usage ledger: one SQLite row per model call (reserved, then settled or released).

Budgets read it to decide before a call; `tether usage` reads it to summarise. Reserving
happens inside one `BEGIN IMMEDIATE` transaction, so concurrent callers — tasks, threads
or processes sharing the file — can never jointly overspend a limit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from tether.errors import BudgetExceeded
from tether.quick_sqlite import QuickDb, transaction
from tether.types import Usage

Window = Literal["request", "user_day", "feature_day", "tenant_month"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id                  INTEGER PRIMARY KEY,
    ts                  REAL NOT NULL,
    day                 TEXT NOT NULL,
    month               TEXT NOT NULL,
    model               TEXT NOT NULL,
    user                TEXT NOT NULL,
    feature             TEXT NOT NULL,
    tenant              TEXT NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('reserved', 'settled', 'released')),
    tokens              INTEGER NOT NULL,
    usd                 REAL NOT NULL,
    input_tokens        INTEGER NOT NULL DEFAULT 0,
    output_tokens       INTEGER NOT NULL DEFAULT 0,
    cached_input_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens  INTEGER NOT NULL DEFAULT 0,
    request_id          TEXT,
    outcome             TEXT NOT NULL DEFAULT ''
);
-- Every index is one more page written per call. Limits read `totals`, not `calls`; the
-- dashboard reads one tenant's recent calls. (Ledgers from before kept three indexes
-- that no query used any more.)
CREATE INDEX IF NOT EXISTS calls_tenant_ts ON calls (tenant, ts);
DROP INDEX IF EXISTS calls_user_day;
DROP INDEX IF EXISTS calls_feature_day;
DROP INDEX IF EXISTS calls_tenant_month;
-- Running totals per budget window, kept in step with `calls` in the same transactions,
-- so checking a limit is a point lookup however many calls the window already holds.
CREATE TABLE IF NOT EXISTS totals (
    window TEXT NOT NULL,
    key    TEXT NOT NULL,
    period TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    usd    REAL NOT NULL,
    PRIMARY KEY (window, key, period)
);
"""
BUSY_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class Limit:
    window: Window
    tokens: int | None = None
    usd: float | None = None


@dataclass(frozen=True)
class Caller:
    user: str = "anonymous"
    feature: str = "default"
    tenant: str = "default"
    #: The user's plan or tier, for traces and metrics (budgets key on user, not tier).
    tier: str = "default"


@dataclass(frozen=True)
class Summary:
    key: tuple[str, ...]
    calls: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    usd: float


def windowed(limits: Sequence[Limit]) -> bool:
    """Whether any limit sums calls over a window (and so needs reservations)."""
    return any(
        limit.window != "request" and (limit.tokens is not None or limit.usd is not None)
        for limit in limits
    )


def check_request(caller: Caller, limits: Sequence[Limit], tokens: int, usd: float) -> None:
    """The per-request limits alone: BudgetExceeded if this one call is too big."""
    for limit in limits:
        if limit.window == "request":
            _check(limit, caller, "tokens", limit.tokens, 0, tokens)
            _check(limit, caller, "usd", limit.usd, 0.0, usd)


def _check(
    limit: Limit, caller: Caller, unit: str, cap: float | None, spent: float, needed: float
) -> None:
    if cap is None or spent + needed <= cap:
        return

    def amount(value: float) -> str:
        return f"${value:.6f}" if unit == "usd" else f"{int(value)} tokens"

    raise BudgetExceeded(
        f"{limit.window} {'token ' if unit == 'tokens' else ''}budget for feature "
        f"{caller.feature!r}: {amount(spent)} used + {amount(needed)} needed > {amount(cap)}",
        feature=caller.feature,
        scope=limit.window,
        limit=cap,
        spent=spent,
        needed=needed,
    )


class Ledger:
    def __init__(self, path: str | Path) -> None:
        # WAL + NORMAL: a commit is atomic and survives a process crash; only an OS crash
        # can lose the last few rows. An fsync per call would cost more than the call.
        self._sql = QuickDb(path, schema=_SCHEMA, timeout_s=BUSY_TIMEOUT_MS / 1000)
        self.path = self._sql.path

    @staticmethod
    def _slots(
        user: str, feature: str, tenant: str, day: str, month: str
    ) -> list[tuple[str, str, str]]:
        return [
            ("user_day", user, day),
            ("feature_day", feature, day),
            ("tenant_month", tenant, month),
        ]

    @staticmethod
    def _total(db: sqlite3.Connection, window: str, key: str, period: str) -> tuple[int, float]:
        row = db.execute(
            "SELECT tokens, usd FROM totals WHERE window = ? AND key = ? AND period = ?",
            (window, key, period),
        ).fetchone()
        return (int(row[0]), float(row[1])) if row else (0, 0.0)

    @staticmethod
    def _add(
        db: sqlite3.Connection, slots: list[tuple[str, str, str]], tokens: int, usd: float
    ) -> None:
        db.executemany(
            "INSERT INTO totals (window, key, period, tokens, usd) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (window, key, period) DO UPDATE SET tokens = tokens + excluded.tokens, "
            "usd = usd + excluded.usd",
            [(w, k, p, tokens, usd) for w, k, p in slots],
        )

    @staticmethod
    def _period(now: datetime) -> tuple[str, str]:
        """The day and month a call is counted in (of `now`'s time zone; UTC by default)."""
        day = now.strftime("%Y-%m-%d")
        return day, day[:7]

    @staticmethod
    def _insert_call(
        db: sqlite3.Connection,
        caller: Caller,
        model: str,
        now: datetime,
        period: tuple[str, str],
        state: str,
        tokens: int,
        usd: float,
        usage: Usage | None = None,
        request_id: str | None = None,
        outcome: str = "",
    ) -> int:
        usage = usage or Usage()
        day, month = period
        cursor = db.execute(
            "INSERT INTO calls (ts, day, month, model, user, feature, tenant, state, tokens, "
            "usd, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, "
            "request_id, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                now.timestamp(),
                day,
                month,
                model,
                caller.user,
                caller.feature,
                caller.tenant,
                state,
                tokens,
                usd,
                usage.input_tokens,
                usage.output_tokens,
                usage.cached_input_tokens,
                usage.cache_write_tokens,
                request_id,
                outcome,
            ),
        )
        return int(cursor.lastrowid or 0)

    # -- operations: each one transaction on whichever connection runs it --

    def _reserve(
        self,
        caller: Caller,
        model: str,
        tokens: int,
        usd: float,
        limits: Sequence[Limit],
        now: datetime | None,
    ) -> Callable[[sqlite3.Connection], int]:
        when = now or datetime.now(UTC)
        day, month = self._period(when)
        slots = self._slots(caller.user, caller.feature, caller.tenant, day, month)
        window_slot = {slot[0]: slot for slot in slots}

        def op(db: sqlite3.Connection) -> int:
            for limit in limits:
                spent_tokens, spent_usd = (
                    (0, 0.0)
                    if limit.window == "request"
                    else self._total(db, *window_slot[limit.window])
                )
                _check(limit, caller, "tokens", limit.tokens, spent_tokens, tokens)
                _check(limit, caller, "usd", limit.usd, spent_usd, usd)
            reservation = self._insert_call(
                db, caller, model, when, (day, month), "reserved", tokens, usd
            )
            self._add(db, slots, tokens, usd)
            return reservation

        return lambda db: transaction(db, op)

    def _record(
        self,
        caller: Caller,
        model: str,
        usage: Usage | None,
        usd: float,
        request_id: str | None,
        outcome: str,
        now: datetime | None,
    ) -> Callable[[sqlite3.Connection], None]:
        when = now or datetime.now(UTC)
        day, month = self._period(when)
        total = usage.input_tokens + usage.output_tokens if usage else 0

        def op(db: sqlite3.Connection) -> None:
            self._insert_call(
                db,
                caller,
                model,
                when,
                (day, month),
                "settled" if usage else "released",
                total,
                usd if usage else 0.0,
                usage,
                request_id,
                outcome,
            )
            if usage:
                self._add(
                    db,
                    self._slots(caller.user, caller.feature, caller.tenant, day, month),
                    total,
                    usd,
                )

        return lambda db: transaction(db, op)

    def _finish(
        self, reservation: int, sql: str, params: tuple[object, ...], tokens: int, usd: float
    ) -> Callable[[sqlite3.Connection], None]:
        """Rewrite one call row and move the window totals by the difference."""

        def op(db: sqlite3.Connection) -> None:
            row = db.execute(
                "SELECT user, feature, tenant, day, month, tokens, usd, state FROM calls "
                "WHERE id = ?",
                (reservation,),
            ).fetchone()
            if row is None or row[7] != "reserved":
                raise ValueError(f"no open reservation {reservation}")
            db.execute(sql, (*params, reservation))
            self._add(db, self._slots(*row[:5]), tokens - int(row[5]), usd - float(row[6]))

        return lambda db: transaction(db, op)

    def _settle(
        self, reservation: int, usage: Usage, usd: float, request_id: str | None, outcome: str
    ) -> Callable[[sqlite3.Connection], None]:
        total = usage.input_tokens + usage.output_tokens
        return self._finish(
            reservation,
            "UPDATE calls SET state = 'settled', tokens = ?, usd = ?, input_tokens = ?, "
            "output_tokens = ?, cached_input_tokens = ?, cache_write_tokens = ?, "
            "request_id = ?, outcome = ? WHERE id = ?",
            (
                total,
                usd,
                usage.input_tokens,
                usage.output_tokens,
                usage.cached_input_tokens,
                usage.cache_write_tokens,
                request_id,
                outcome,
            ),
            total,
            usd,
        )

    def _release(self, reservation: int, outcome: str) -> Callable[[sqlite3.Connection], None]:
        return self._finish(
            reservation,
            "UPDATE calls SET state = 'released', outcome = ? WHERE id = ?",
            (outcome,),
            0,
            0.0,
        )

    # -- synchronous faces: wait for the ledger's lock like any SQLite caller --

    def reserve(
        self,
        caller: Caller,
        model: str,
        tokens: int,
        usd: float,
        limits: Sequence[Limit],
        *,
        now: datetime | None = None,
    ) -> int:
        """Check every limit and record a reservation atomically; BudgetExceeded if any
        limit would be crossed. Returns the reservation id."""
        return self._sql.call(self._reserve(caller, model, tokens, usd, limits, now))

    def record(
        self,
        caller: Caller,
        model: str,
        usage: Usage | None,
        usd: float,
        *,
        request_id: str | None = None,
        outcome: str = "ok",
        now: datetime | None = None,
    ) -> None:
        """Write one finished call in one transaction: settled with its usage, or released
        (None: it failed before using anything billable). For budgets with no window
        limit, where no later call is checked against a running total, so nothing has to
        be reserved first; that saves a commit per call (measured ~0.1 ms here)."""
        self._sql.call(self._record(caller, model, usage, usd, request_id, outcome, now))

    def settle(
        self,
        reservation: int,
        usage: Usage,
        usd: float,
        *,
        request_id: str | None = None,
        outcome: str = "ok",
    ) -> None:
        """Replace the reservation with what the call really used."""
        self._sql.call(self._settle(reservation, usage, usd, request_id, outcome))

    def release(self, reservation: int, *, outcome: str) -> None:
        """The call failed before using anything billable: free the reservation."""
        self._sql.call(self._release(reservation, outcome))

    def total(self, window: Window, key: str, period: str) -> tuple[int, float]:
        """Tokens and dollars settled or reserved in one budget window so far, e.g.
        `total("user_day", "ann", "2026-11-26")`."""
        return self._sql.call(lambda db: self._total(db, window, key, period))

    def summary(
        self, by: Sequence[str] = ("day", "model"), *, since_day: str = ""
    ) -> list[Summary]:
        columns = [c for c in by if c in ("day", "month", "model", "user", "feature", "tenant")]
        group = ", ".join(columns) or "'all'"
        rows = self._sql.call(
            lambda db: db.execute(
                f"SELECT {group}, COUNT(*), SUM(input_tokens), SUM(output_tokens), "
                f"SUM(cached_input_tokens), SUM(usd) FROM calls WHERE state = 'settled' "
                f"AND day >= ? GROUP BY {group} ORDER BY {group}",
                (since_day,),
            ).fetchall()
        )
        width = max(len(columns), 1)
        return [
            Summary(
                tuple(str(v) for v in row[:width]),
                int(row[width]),
                int(row[width + 1] or 0),
                int(row[width + 2] or 0),
                int(row[width + 3] or 0),
                float(row[width + 4] or 0),
            )
            for row in rows
        ]

    # -- async faces for the event loop: inline when the ledger is free, else a thread --

    async def areserve(
        self, caller: Caller, model: str, tokens: int, usd: float, limits: Sequence[Limit]
    ) -> int:
        return await self._sql.run(self._reserve(caller, model, tokens, usd, limits, None))

    async def asettle(
        self,
        reservation: int,
        usage: Usage,
        usd: float,
        *,
        request_id: str | None = None,
        outcome: str = "ok",
    ) -> None:
        await self._sql.run(self._settle(reservation, usage, usd, request_id, outcome))

    async def arecord(
        self,
        caller: Caller,
        model: str,
        usage: Usage | None,
        usd: float,
        *,
        request_id: str | None = None,
        outcome: str = "ok",
    ) -> None:
        await self._sql.run(self._record(caller, model, usage, usd, request_id, outcome, None))

    async def arelease(self, reservation: int, *, outcome: str) -> None:
        await self._sql.run(self._release(reservation, outcome))

    def close(self) -> None:
        self._sql.close()
