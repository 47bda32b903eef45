"""The usage ledger's file: indexes kept to what queries use, totals readable."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from tether.ledger import Caller, Ledger
from tether.types import Usage

OLD_INDEXES = ("calls_user_day", "calls_feature_day", "calls_tenant_month")


def indexes(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'calls'"
        ).fetchall()
    finally:
        db.close()
    return {str(r[0]) for r in rows}


def test_a_ledger_from_before_loses_its_unused_indexes_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    ledger = Ledger(path)
    when = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    ledger.record(
        Caller("ann", "f", "t"), "m", Usage(input_tokens=3, output_tokens=2), 0.5, now=when
    )
    ledger.close()
    old = sqlite3.connect(path)
    for name, columns in zip(
        OLD_INDEXES, ("user, day", "feature, day", "tenant, month"), strict=True
    ):
        old.execute(f"CREATE INDEX {name} ON calls ({columns})")
    old.commit()
    old.close()
    assert set(OLD_INDEXES) <= indexes(path)

    reopened = Ledger(path)
    assert indexes(path) == {"calls_tenant_ts"}
    assert reopened.total("user_day", "ann", "2026-11-26") == (5, 0.5)
    assert reopened.total("tenant_month", "t", "2026-11") == (5, 0.5)
    assert reopened.total("user_day", "bob", "2026-11-26") == (0, 0.0)
    # The dashboard's query (one tenant's recent calls) is served by the new index.
    plan = (
        sqlite3.connect(path)
        .execute(
            "EXPLAIN QUERY PLAN SELECT ts, usd FROM calls WHERE tenant = ? AND ts >= ? "
            "AND state = 'settled'",
            ("t", 0.0),
        )
        .fetchall()
    )
    assert any("calls_tenant_ts" in str(step[-1]) for step in plan)
    reopened.close()
