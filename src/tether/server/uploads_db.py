"""The sanitized bytes of uploaded documents, so `reindex` can re-parse them after the
chunker or embedder changes. Only the scanned, stripped form is kept."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tether.quick_sqlite import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    tenant     TEXT NOT NULL,
    source_id  TEXT NOT NULL,
    name       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    acl        TEXT NOT NULL,
    data       BLOB NOT NULL,
    created    REAL NOT NULL,
    PRIMARY KEY (tenant, source_id)
);
"""


class UploadBlobs:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._db = connect(self.path, schema=_SCHEMA, synchronous="FULL")
        self._lock = threading.Lock()

    def put(
        self, tenant: str, source_id: str, name: str, sha256: str, acl: list[str], data: bytes
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?, ?, ?, ?)",
                (tenant, source_id, name, sha256, ",".join(acl), data, time.time()),
            )

    def get(self, tenant: str, source_id: str) -> tuple[str, list[str], bytes] | None:
        """(name, acl, bytes) of an upload."""
        with self._lock:
            row = self._db.execute(
                "SELECT name, acl, data FROM uploads WHERE tenant = ? AND source_id = ?",
                (tenant, source_id),
            ).fetchone()
        return None if row is None else (str(row[0]), str(row[1]).split(","), bytes(row[2]))

    def source_ids(self, tenant: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT source_id FROM uploads WHERE tenant = ? ORDER BY source_id", (tenant,)
            ).fetchall()
        return [str(r[0]) for r in rows]

    def delete(self, tenant: str, source_id: str) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM uploads WHERE tenant = ? AND source_id = ?", (tenant, source_id)
            )

    def close(self) -> None:
        self._db.close()
