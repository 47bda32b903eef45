"""The audit log: one row per tool call attempt, append-only.

SQLite triggers refuse UPDATE and DELETE on the table, so a bug (or a hand with a SQL
shell and this library) cannot rewrite history; rows only ever get added. Arguments are
stored redacted, never raw.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, Field

from tether.quick_sqlite import connect

Outcome: TypeAlias = Literal[
    "ok",
    "error",
    "timeout",
    "invalid_args",
    "unknown_tool",
    "not_allowed",
    "need_approval",
    "rejected",
    "quota",
    "duplicate",
]
Approval: TypeAlias = Literal["not_required", "pending", "approved", "rejected"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    at           REAL NOT NULL,
    tenant       TEXT NOT NULL,
    principal    TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    call_id      TEXT NOT NULL,
    tool         TEXT NOT NULL,
    kind         TEXT NOT NULL,
    args         TEXT NOT NULL,
    approval     TEXT NOT NULL,
    approver     TEXT,
    latency_ms   REAL NOT NULL,
    result_bytes INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    detail       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_tenant_at ON audit (tenant, at);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

_COLUMNS = (
    "seq, at, tenant, principal, run_id, call_id, tool, kind, args, approval, approver, "
    "latency_ms, result_bytes, outcome, detail"
)


class AuditEntry(BaseModel):
    seq: int | None = None
    at: float = Field(default_factory=time.time)
    tenant: str
    principal: str
    run_id: str
    call_id: str
    tool: str
    kind: str
    #: Redacted arguments (see `tools.registry.safe_args`).
    args: dict[str, Any]
    approval: Approval
    approver: str | None = None
    latency_ms: float = 0.0
    result_bytes: int = 0
    outcome: Outcome
    detail: str = ""


class AuditLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._db = connect(self.path, schema=_SCHEMA)
        self._lock = threading.Lock()

    def record(self, entry: AuditEntry) -> int:
        row = (
            entry.at,
            entry.tenant,
            entry.principal,
            entry.run_id,
            entry.call_id,
            entry.tool[:64],
            entry.kind,
            json.dumps(entry.args, ensure_ascii=False),
            entry.approval,
            entry.approver,
            entry.latency_ms,
            entry.result_bytes,
            entry.outcome,
            entry.detail[:500],
        )
        with self._lock:
            cur = self._db.execute(
                f"INSERT INTO audit ({_COLUMNS.removeprefix('seq, ')}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return int(cur.lastrowid or 0)

    def query(
        self,
        *,
        tenant: str | None = None,
        tool: str | None = None,
        outcome: str | None = None,
        run_id: str | None = None,
        principal: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Newest first, filtered by whichever fields are given."""
        where: list[str] = []
        params: list[object] = []
        for column, value in (
            ("tenant", tenant),
            ("tool", tool),
            ("outcome", outcome),
            ("run_id", run_id),
            ("principal", principal),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("at >= ?")
            params.append(since)
        sql = f"SELECT {_COLUMNS} FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*params, max(1, limit))).fetchall()
        return [
            AuditEntry(
                seq=r[0],
                at=r[1],
                tenant=r[2],
                principal=r[3],
                run_id=r[4],
                call_id=r[5],
                tool=r[6],
                kind=r[7],
                args=json.loads(r[8]),
                approval=r[9],
                approver=r[10],
                latency_ms=r[11],
                result_bytes=r[12],
                outcome=r[13],
                detail=r[14],
            )
            for r in rows
        ]

    def close(self) -> None:
        self._db.close()
