"""Where runs and their tool calls live, and the two compare-and-set steps that make
approval safe under duplicates and crashes.

- Deciding a call is `UPDATE ... WHERE status = 'pending'`: of any number of concurrent
  approvals exactly one changes the row; the others see the decision already made.
- Executing a call is claiming it, `UPDATE ... SET status = 'running' WHERE status =
  'approved'` (or a claim gone stale after a crash); only the claimer runs the tool, with
  the call's idempotency key, and a finished call returns its stored result.
- A run is driven by one worker at a time: a lease on the run row, expiring so a crashed
  worker's run can be resumed.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Literal, TypeAlias

from tether.agent.state import AgentState
from tether.errors import RunConflict, RunNotFound
from tether.quick_sqlite import connect

CallStatus: TypeAlias = Literal["pending", "approved", "rejected", "running", "done", "failed"]
Claim: TypeAlias = Literal["claimed", "done", "busy", "rejected", "pending"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    principal   TEXT NOT NULL,
    status      TEXT NOT NULL,
    stop_reason TEXT,
    state       TEXT NOT NULL,
    created     REAL NOT NULL,
    updated     REAL NOT NULL,
    lease_owner TEXT,
    lease_until REAL
);
CREATE INDEX IF NOT EXISTS runs_tenant ON runs (tenant, created);
CREATE TABLE IF NOT EXISTS tool_calls (
    run_id          TEXT NOT NULL,
    call_id         TEXT NOT NULL,
    tenant          TEXT NOT NULL,
    tool            TEXT NOT NULL,
    args            TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL,
    decided_by      TEXT,
    decided_at      REAL,
    claimed_at      REAL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    result          TEXT,
    PRIMARY KEY (run_id, call_id)
);
"""


def idempotency_key(run_id: str, call_id: str) -> str:
    return hashlib.sha256(f"{run_id}\x00{call_id}".encode()).hexdigest()[:32]


class RunStore:
    def __init__(self, path: str | Path, *, stale_after_s: float = 300.0) -> None:
        self.path = Path(path).expanduser()
        self._db = connect(self.path, schema=_SCHEMA)
        self._lock = threading.Lock()
        #: A claim or lease older than this belongs to a worker presumed dead.
        self.stale_after_s = stale_after_s

    # --- runs ------------------------------------------------------------------------

    def create(self, state: AgentState, *, owner: str) -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    state.run_id,
                    state.tenant,
                    state.principal,
                    state.status,
                    state.stop_reason,
                    state.model_dump_json(),
                    now,
                    now,
                    owner,
                    now + self.stale_after_s,
                ),
            )

    def save(self, state: AgentState) -> None:
        """Write the state; while a worker drives the run, only if it still holds the
        lease (a worker that stalled past it must not overwrite its successor's work)."""
        sql = (
            "UPDATE runs SET status = ?, stop_reason = ?, state = ?, updated = ? "
            "WHERE run_id = ? AND tenant = ?"
        )
        params: list[object] = [
            state.status,
            state.stop_reason,
            state.model_dump_json(),
            time.time(),
            state.run_id,
            state.tenant,
        ]
        if state.lease_owner:
            sql += " AND lease_owner = ?"
            params.append(state.lease_owner)
        with self._lock:
            saved = self._db.execute(sql, params).rowcount
        if saved != 1:
            raise RunConflict(f"run {state.run_id!r} is no longer this worker's to save")

    def renew(self, state: AgentState) -> None:
        """Extend the driving worker's lease; a lost lease is a `RunConflict`."""
        with self._lock:
            renewed = self._db.execute(
                "UPDATE runs SET lease_until = ? WHERE run_id = ? AND tenant = ? "
                "AND lease_owner = ?",
                (time.time() + self.stale_after_s, state.run_id, state.tenant, state.lease_owner),
            ).rowcount
        if renewed != 1:
            raise RunConflict(f"run {state.run_id!r}: another worker took it over")

    def load(self, tenant: str, run_id: str) -> AgentState:
        with self._lock:
            row = self._db.execute(
                "SELECT state FROM runs WHERE run_id = ? AND tenant = ?", (run_id, tenant)
            ).fetchone()
        if row is None:
            raise RunNotFound(f"no run {run_id[:64]!r} in this tenant")
        return AgentState.model_validate_json(row[0])

    def list(self, tenant: str, *, limit: int = 50) -> list[AgentState]:
        with self._lock:
            rows = self._db.execute(
                "SELECT state FROM runs WHERE tenant = ? ORDER BY created DESC LIMIT ?",
                (tenant, limit),
            ).fetchall()
        return [AgentState.model_validate_json(r[0]) for r in rows]

    def acquire(self, tenant: str, run_id: str, owner: str) -> bool:
        """Take the run's lease; False when another live worker holds it."""
        now = time.time()
        with self._lock:
            cur = self._db.execute(
                "UPDATE runs SET lease_owner = ?, lease_until = ? WHERE run_id = ? AND "
                "tenant = ? AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?)",
                (owner, now + self.stale_after_s, run_id, tenant, owner, now),
            )
            if cur.rowcount == 1:
                return True
            exists = self._db.execute(
                "SELECT 1 FROM runs WHERE run_id = ? AND tenant = ?", (run_id, tenant)
            ).fetchone()
        if exists is None:
            raise RunNotFound(f"no run {run_id[:64]!r} in this tenant")
        return False

    def release(self, run_id: str, owner: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE runs SET lease_owner = NULL, lease_until = NULL "
                "WHERE run_id = ? AND lease_owner = ?",
                (run_id, owner),
            )

    # --- tool calls ------------------------------------------------------------------

    def add_call(
        self, state: AgentState, call_id: str, tool: str, args: str, status: CallStatus
    ) -> str:
        """Record a call before anything runs; returns its idempotency key. Re-adding the
        same call (a resumed step) keeps the first row."""
        key = idempotency_key(state.run_id, call_id)
        with self._lock:
            self._db.execute(
                "INSERT INTO tool_calls (run_id, call_id, tenant, tool, args, "
                "idempotency_key, status) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id, call_id) DO NOTHING",
                (state.run_id, call_id, state.tenant, tool, args, key, status),
            )
        return key

    def call_status(self, run_id: str, call_id: str) -> CallStatus | None:
        with self._lock:
            row = self._db.execute(
                "SELECT status FROM tool_calls WHERE run_id = ? AND call_id = ?",
                (run_id, call_id),
            ).fetchone()
        return None if row is None else row[0]

    def decision(self, run_id: str, call_id: str) -> tuple[str, CallStatus, str | None]:
        """A recorded call's (arguments, status, who decided it)."""
        with self._lock:
            row = self._db.execute(
                "SELECT args, status, decided_by FROM tool_calls WHERE run_id = ? AND call_id = ?",
                (run_id, call_id),
            ).fetchone()
        if row is None:
            raise RunNotFound(f"no call {call_id!r} in run {run_id!r}")
        return str(row[0]), row[1], row[2]

    def decide(
        self, tenant: str, run_id: str, call_id: str, *, approve: bool, principal: str
    ) -> Literal["decided", "already"]:
        """Approve or reject a pending call. Exactly one of any number of concurrent
        deciders changes the row; a repeat of the same decision is "already"; the
        opposite decision after the fact is a conflict."""
        wanted: CallStatus = "approved" if approve else "rejected"
        with self._lock:
            cur = self._db.execute(
                "UPDATE tool_calls SET status = ?, decided_by = ?, decided_at = ? "
                "WHERE run_id = ? AND call_id = ? AND tenant = ? AND status = 'pending'",
                (wanted, principal, time.time(), run_id, call_id, tenant),
            )
            if cur.rowcount == 1:
                return "decided"
            row = self._db.execute(
                "SELECT status FROM tool_calls WHERE run_id = ? AND call_id = ? AND tenant = ?",
                (run_id, call_id, tenant),
            ).fetchone()
        if row is None:
            raise RunNotFound(f"run {run_id[:64]!r} has no call {call_id[:64]!r} in this tenant")
        decided_as = "rejected" if row[0] == "rejected" else "approved"
        if decided_as == wanted:
            return "already"
        raise RunConflict(f"the call was already {decided_as}")

    def claim(self, run_id: str, call_id: str) -> tuple[Claim, str | None]:
        """(what happened, the stored result when the call already finished)."""
        now = time.time()
        with self._lock:
            cur = self._db.execute(
                "UPDATE tool_calls SET status = 'running', claimed_at = ?, "
                "attempts = attempts + 1 WHERE run_id = ? AND call_id = ? AND "
                "(status = 'approved' OR (status = 'running' AND claimed_at < ?))",
                (now, run_id, call_id, now - self.stale_after_s),
            )
            if cur.rowcount == 1:
                return "claimed", None
            row = self._db.execute(
                "SELECT status, result FROM tool_calls WHERE run_id = ? AND call_id = ?",
                (run_id, call_id),
            ).fetchone()
        if row is None:
            raise RunNotFound(f"no call {call_id!r} in run {run_id!r}")
        status, result = row
        if status in ("done", "failed"):
            return "done", result
        if status == "rejected":
            return "rejected", None
        if status == "pending":
            return "pending", None
        return "busy", None

    def finish(self, run_id: str, call_id: str, *, ok: bool, result: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE tool_calls SET status = ?, result = ? WHERE run_id = ? AND call_id = ?",
                (
                    "done" if ok else "failed",
                    json.dumps({"ok": ok, "content": result}),
                    run_id,
                    call_id,
                ),
            )

    def attempts(self, run_id: str, call_id: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT attempts FROM tool_calls WHERE run_id = ? AND call_id = ?",
                (run_id, call_id),
            ).fetchone()
        return 0 if row is None else int(row[0])

    def close(self) -> None:
        self._db.close()


def guard_lease(acquired: bool, run_id: str) -> None:
    if not acquired:
        raise RunConflict(f"run {run_id!r} is being driven by another worker")
