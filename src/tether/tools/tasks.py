"""The tasks table behind the built-in `create_task` and `get_task` tools.

A task row carries the idempotency key of the tool call that created it, under a UNIQUE
constraint: executing the same call twice (a retry, a duplicated approval, a resume after
a crash between the insert and the bookkeeping) returns the first row instead of adding
a second. That constraint, not a check-then-insert, is what makes the write exactly-once.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tether.quick_sqlite import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id         TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    title           TEXT NOT NULL,
    owner           TEXT NOT NULL,
    due_date        TEXT,
    priority        TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    run_id          TEXT NOT NULL,
    created         REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_tenant ON tasks (tenant, created);
"""


class ExtractedTask(BaseModel):
    """A task as the model proposes it."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    owner: str = Field(min_length=1, max_length=100)
    due_date: date | None = None
    priority: Literal["low", "med", "high"] = "med"


class Task(ExtractedTask):
    task_id: str
    created_by: str
    run_id: str
    created: float


class TaskStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._db = connect(self.path, schema=_SCHEMA)
        self._lock = threading.Lock()

    def create(
        self, tenant: str, task: ExtractedTask, *, idempotency_key: str, principal: str, run_id: str
    ) -> tuple[Task, bool]:
        """(the task, whether this call created it). A key seen before returns its task."""
        row = (
            f"task_{uuid.uuid4().hex[:16]}",
            tenant,
            idempotency_key,
            task.title,
            task.owner,
            task.due_date.isoformat() if task.due_date else None,
            task.priority,
            principal,
            run_id,
            time.time(),
        )
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (idempotency_key) DO NOTHING",
                row,
            )
            created = cur.rowcount == 1
            found = self._db.execute(
                "SELECT * FROM tasks WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
        if found[1] != tenant:  # a key is derived from a run id, which is tenant-bound
            raise PermissionError("idempotency key belongs to another tenant")
        return _task(found), created

    def get(self, tenant: str, task_id: str) -> Task | None:
        with self._lock:
            found = self._db.execute(
                "SELECT * FROM tasks WHERE tenant = ? AND task_id = ?", (tenant, task_id)
            ).fetchone()
        return _task(found) if found else None

    def list(self, tenant: str, *, limit: int = 100) -> list[Task]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM tasks WHERE tenant = ? ORDER BY created DESC LIMIT ?",
                (tenant, limit),
            ).fetchall()
        return [_task(r) for r in rows]

    def count(self, tenant: str | None = None) -> int:
        with self._lock:
            if tenant is None:
                return int(self._db.execute("SELECT count(*) FROM tasks").fetchone()[0])
            return int(
                self._db.execute(
                    "SELECT count(*) FROM tasks WHERE tenant = ?", (tenant,)
                ).fetchone()[0]
            )

    def close(self) -> None:
        self._db.close()


def _task(row: tuple[object, ...]) -> Task:
    task_id, _tenant, _key, title, owner, due, priority, created_by, run_id, created = row
    return Task.model_validate(
        {
            "task_id": task_id,
            "title": title,
            "owner": owner,
            "due_date": due,
            "priority": priority,
            "created_by": created_by,
            "run_id": run_id,
            "created": created,
        }
    )
