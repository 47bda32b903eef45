"""The embedded span store: finished OpenTelemetry spans in one SQLite file.

`SpanStoreExporter` is an ordinary OTel `SpanExporter`, so spans reach it through the
SDK's batch processor like any other backend, redacted on the way in (see
`tracing.redacted_attributes`). `tether traces list | show | export` read it back.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from pydantic import BaseModel

from tether.errors import TetherError
from tether.observability.redacting import redacted_attributes
from tether.quick_sqlite import transaction, use_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    attributes TEXT NOT NULL,
    events TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS spans_start ON spans (start_ns);
CREATE INDEX IF NOT EXISTS spans_roots ON spans (start_ns) WHERE parent_id IS NULL;
"""


class TraceNotFound(TetherError):
    """No stored trace has this id (or id prefix)."""


class SpanRecord(BaseModel):
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str | None = None
    attributes: dict[str, Any]
    events: list[dict[str, Any]]

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


class TraceSummary(BaseModel):
    trace_id: str
    name: str
    started_at: datetime
    duration_ms: float
    status: str
    spans: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    tenant: str | None
    feature: str | None


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def span_record(
    span: ReadableSpan, attributes: dict[str, Any], events: list[dict[str, Any]]
) -> SpanRecord:
    context = span.context
    assert context is not None
    # Every field comes typed from the SDK: built without re-validation (~6 µs a span).
    return SpanRecord.model_construct(
        trace_id=_hex(context.trace_id, 32),
        span_id=_hex(context.span_id, 16),
        parent_id=_hex(span.parent.span_id, 16) if span.parent is not None else None,
        name=span.name,
        kind=span.kind.name.lower(),
        start_ns=span.start_time or 0,
        end_ns=span.end_time or span.start_time or 0,
        status=span.status.status_code.name.lower(),
        status_message=span.status.description,
        attributes=attributes,
        events=events,
    )


class SpanStore:
    """Thread-safe: the exporter writes from the SDK's worker thread, the CLI reads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        use_wal(self._db)
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def write(self, records: Sequence[SpanRecord]) -> None:
        rows = [
            (
                r.trace_id,
                r.span_id,
                r.parent_id,
                r.name,
                r.kind,
                r.start_ns,
                r.end_ns,
                r.status,
                r.status_message,
                json.dumps(r.attributes, default=str),
                json.dumps(r.events, default=str),
            )
            for r in records
        ]
        with self._lock:
            transaction(
                self._db,
                lambda db: db.executemany(
                    "INSERT OR REPLACE INTO spans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                ),
            )

    def resolve(self, trace_id: str) -> str:
        """The full id for an id or a unique prefix of at least 6 characters."""
        wanted = trace_id.strip().lower()
        if len(wanted) < 6 or any(c not in "0123456789abcdef" for c in wanted):
            raise TraceNotFound(f"{trace_id!r} is not a trace id (hex, 6+ characters)")
        with self._lock:
            found = self._db.execute(
                "SELECT DISTINCT trace_id FROM spans WHERE trace_id >= ? AND trace_id < ? LIMIT 2",
                (wanted, wanted + "g"),
            ).fetchall()
        if not found:
            raise TraceNotFound(f"no stored trace {trace_id!r} in {self.path}")
        if len(found) > 1:
            raise TraceNotFound(f"{trace_id!r} matches more than one trace; give more of it")
        return str(found[0][0])

    def spans(self, trace_id: str) -> list[SpanRecord]:
        full = self.resolve(trace_id)
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM spans WHERE trace_id = ? ORDER BY start_ns, span_id", (full,)
            ).fetchall()
        return [
            SpanRecord(
                trace_id=r[0],
                span_id=r[1],
                parent_id=r[2],
                name=r[3],
                kind=r[4],
                start_ns=r[5],
                end_ns=r[6],
                status=r[7],
                status_message=r[8],
                attributes=json.loads(r[9]),
                events=json.loads(r[10]),
            )
            for r in rows
        ]

    def traces(self, limit: int = 20, *, tenant: str | None = None) -> list[TraceSummary]:
        """The latest traces, newest first, with their model tokens and cost summed."""
        sql = """
            SELECT r.trace_id, r.name, r.start_ns, r.end_ns, r.status,
                   json_extract(r.attributes, '$."tether.tenant"'),
                   json_extract(r.attributes, '$."tether.feature"'),
                   COUNT(s.span_id),
                   COALESCE(SUM(json_extract(s.attributes, '$."gen_ai.usage.input_tokens"')), 0),
                   COALESCE(SUM(json_extract(s.attributes, '$."gen_ai.usage.output_tokens"')), 0),
                   COALESCE(SUM(json_extract(s.attributes, '$."tether.cost_usd"')), 0.0)
            FROM spans r JOIN spans s ON s.trace_id = r.trace_id
            WHERE r.parent_id IS NULL AND (? IS NULL OR
                  json_extract(r.attributes, '$."tether.tenant"') = ?)
            GROUP BY r.trace_id, r.span_id
            ORDER BY r.start_ns DESC LIMIT ?
        """
        with self._lock:
            rows = self._db.execute(sql, (tenant, tenant, limit)).fetchall()
        return [
            TraceSummary(
                trace_id=r[0],
                name=r[1],
                started_at=datetime.fromtimestamp(r[2] / 1e9, UTC),
                duration_ms=(r[3] - r[2]) / 1e6,
                status=r[4],
                tenant=r[5],
                feature=r[6],
                spans=r[7],
                input_tokens=int(r[8]),
                output_tokens=int(r[9]),
                cost_usd=float(r[10]),
            )
            for r in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class SpanStoreExporter(SpanExporter):
    """Writes finished spans to a `SpanStore`, redacting attribute and event values."""

    def __init__(self, store: SpanStore) -> None:
        self.store = store

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            self.store.write(
                [
                    span_record(
                        span,
                        redacted_attributes(dict(span.attributes or {})),
                        [
                            {
                                "name": e.name,
                                "timestamp_ns": e.timestamp,
                                "attributes": redacted_attributes(dict(e.attributes or {})),
                            }
                            for e in span.events
                        ],
                    )
                    for span in spans
                ]
            )
        except sqlite3.Error:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.store.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
