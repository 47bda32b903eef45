"""Answers the service produced, by request id, so a client whose stream was cut can
fetch the outcome (`GET /v1/answers/{id}`). The question is redacted before it is
written; the answer text comes from the tenant's own documents and is kept as is."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel

from tether.quick_sqlite import connect
from tether.security.redaction import redact
from tether.types import Answer

AnswerStatus: TypeAlias = Literal["complete", "cancelled", "failed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    request_id  TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    created     REAL NOT NULL,
    status      TEXT NOT NULL,
    question    TEXT NOT NULL,
    partial     TEXT NOT NULL,
    answer      TEXT,
    retrieved   TEXT NOT NULL,
    trace_id    TEXT,
    error       TEXT,
    PRIMARY KEY (tenant, request_id)
);
"""


class StoredAnswer(BaseModel):
    request_id: str
    status: AnswerStatus
    created: float
    question: str
    #: The text streamed before the stream ended (all of it for a complete answer).
    partial: str
    answer: Answer | None
    retrieved: list[str]
    trace_id: str | None
    error: str | None


class AnswerLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._db = connect(self.path, schema=_SCHEMA)
        self._lock = threading.Lock()

    def save(
        self,
        request_id: str,
        *,
        tenant: str,
        key_id: str,
        status: AnswerStatus,
        question: str,
        partial: str,
        answer: Answer | None,
        retrieved: list[str],
        trace_id: str | None,
        error: str | None = None,
    ) -> None:
        """Synchronous on purpose: it runs in a cancelled stream's cleanup, where awaiting
        is not possible; one small WAL insert costs well under a millisecond."""
        row: tuple[Any, ...] = (
            request_id,
            tenant,
            key_id,
            time.time(),
            status,
            redact(question),
            partial,
            answer.model_dump_json() if answer else None,
            json.dumps(retrieved),
            trace_id,
            error,
        )
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row
            )

    def get(self, tenant: str, request_id: str) -> StoredAnswer | None:
        with self._lock:
            row = self._db.execute(
                "SELECT request_id, status, created, question, partial, answer, retrieved, "
                "trace_id, error FROM answers WHERE tenant = ? AND request_id = ?",
                (tenant, request_id),
            ).fetchone()
        if row is None:
            return None
        rid, status, created, question, partial, answer, retrieved, trace_id, error = row
        return StoredAnswer(
            request_id=rid,
            status=status,
            created=created,
            question=question,
            partial=partial,
            answer=Answer.model_validate_json(answer) if answer else None,
            retrieved=json.loads(retrieved),
            trace_id=trace_id,
            error=error,
        )

    def close(self) -> None:
        self._db.close()
