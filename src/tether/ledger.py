"""The usage ledger: one SQLite row per model call (reserved, then settled or released).

Budgets read it to decide before a call; `tether usage` reads it to summarise. Reserving
happens inside one `BEGIN IMMEDIATE` transaction, so concurrent callers — tasks, threads
or processes sharing the file — can never jointly overspend a limit.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from tether.errors import BudgetExceeded
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
CREATE INDEX IF NOT EXISTS calls_user_day ON calls (user, day);
CREATE INDEX IF NOT EXISTS calls_feature_day ON calls (feature, day);
CREATE INDEX IF NOT EXISTS calls_tenant_month ON calls (tenant, month);
"""


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


@dataclass(frozen=True)
class Summary:
    key: tuple[str, ...]
    calls: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    usd: float


class Ledger:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def _spent(self, window: Window, caller: Caller, now: datetime) -> tuple[int, float]:
        where, value = {
            "user_day": ("user = ? AND day = ?", (caller.user, now.strftime("%Y-%m-%d"))),
            "feature_day": ("feature = ? AND day = ?", (caller.feature, now.strftime("%Y-%m-%d"))),
            "tenant_month": ("tenant = ? AND month = ?", (caller.tenant, now.strftime("%Y-%m"))),
        }[window]
        tokens, usd = self._db.execute(
            f"SELECT COALESCE(SUM(tokens), 0), COALESCE(SUM(usd), 0) FROM calls "
            f"WHERE state != 'released' AND {where}",
            value,
        ).fetchone()
        return int(tokens), float(usd)

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
        now = now or datetime.now(UTC)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for limit in limits:
                    spent_tokens, spent_usd = (
                        (0, 0.0)
                        if limit.window == "request"
                        else self._spent(limit.window, caller, now)
                    )
                    if limit.tokens is not None and spent_tokens + tokens > limit.tokens:
                        raise BudgetExceeded(
                            f"{limit.window} token budget for feature {caller.feature!r}: "
                            f"{spent_tokens} used + {tokens} needed > {limit.tokens}",
                            feature=caller.feature,
                            scope=limit.window,
                            limit=limit.tokens,
                            spent=spent_tokens,
                            needed=tokens,
                        )
                    if limit.usd is not None and spent_usd + usd > limit.usd:
                        raise BudgetExceeded(
                            f"{limit.window} budget for feature {caller.feature!r}: "
                            f"${spent_usd:.6f} used + ${usd:.6f} needed > ${limit.usd:.6f}",
                            feature=caller.feature,
                            scope=limit.window,
                            limit=limit.usd,
                            spent=spent_usd,
                            needed=usd,
                        )
                cursor = self._db.execute(
                    "INSERT INTO calls (ts, day, month, model, user, feature, tenant, state, "
                    "tokens, usd) VALUES (?, ?, ?, ?, ?, ?, ?, 'reserved', ?, ?)",
                    (
                        now.timestamp(),
                        now.strftime("%Y-%m-%d"),
                        now.strftime("%Y-%m"),
                        model,
                        caller.user,
                        caller.feature,
                        caller.tenant,
                        tokens,
                        usd,
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return int(cursor.lastrowid or 0)

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
        total = usage.input_tokens + usage.output_tokens
        with self._lock:
            self._db.execute(
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
                    reservation,
                ),
            )

    def release(self, reservation: int, *, outcome: str) -> None:
        """The call failed before using anything billable: free the reservation."""
        with self._lock:
            self._db.execute(
                "UPDATE calls SET state = 'released', outcome = ? WHERE id = ?",
                (outcome, reservation),
            )

    def summary(
        self, by: Sequence[str] = ("day", "model"), *, since_day: str = ""
    ) -> list[Summary]:
        columns = [c for c in by if c in ("day", "month", "model", "user", "feature", "tenant")]
        group = ", ".join(columns) or "'all'"
        with self._lock:
            rows = self._db.execute(
                f"SELECT {group}, COUNT(*), SUM(input_tokens), SUM(output_tokens), "
                f"SUM(cached_input_tokens), SUM(usd) FROM calls WHERE state = 'settled' "
                f"AND day >= ? GROUP BY {group} ORDER BY {group}",
                (since_day,),
            ).fetchall()
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

    def close(self) -> None:
        with self._lock:
            self._db.close()
