"""The embedded store: one SQLite file (WAL) with documents, chunks, vectors and FTS5.

Each tenant gets its own FTS5 table and its own in-memory vector matrix, so BM25
statistics never mix tenants and a missing predicate cannot leak across them; the
tenant predicate is still in every SQL query as the second wall.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from tether.errors import StoreError
from tether.lexical import query_terms
from tether.models.embedder import Vectors
from tether.quick_sqlite import use_wal
from tether.store.bm25 import BM25Params, Postings, build_postings
from tether.store.filters import Filter, compile_sqlite, normalise_time
from tether.store.protocol import DocumentRecord, Scope, check_batch
from tether.types import PUBLIC, Chunk

SCHEMA_VERSION = 1
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tenants (
    tenant_id  TEXT PRIMARY KEY,
    part       INTEGER NOT NULL UNIQUE,
    generation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS documents (
    tenant_id    TEXT NOT NULL,
    source_id    TEXT NOT NULL,
    title        TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    chunk_count  INTEGER NOT NULL,
    ingested_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, source_id)
);
CREATE TABLE IF NOT EXISTS chunks (
    rowid      INTEGER PRIMARY KEY,
    id         TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    source_id  TEXT NOT NULL,
    position   INTEGER NOT NULL,
    text       TEXT NOT NULL,
    title      TEXT NOT NULL,
    section    TEXT NOT NULL,
    page       INTEGER,
    kind       TEXT NOT NULL,
    acl        TEXT NOT NULL,
    acl_public INTEGER NOT NULL,
    created_at TEXT,
    updated_at TEXT,
    metadata   TEXT NOT NULL,
    vector     BLOB NOT NULL,
    UNIQUE (tenant_id, id)
);
CREATE INDEX IF NOT EXISTS chunks_by_source ON chunks (tenant_id, source_id);
CREATE TABLE IF NOT EXISTS keyword_cache (
    tenant_id  TEXT PRIMARY KEY,
    generation INTEGER NOT NULL,
    payload    BLOB NOT NULL
);
"""
# A scratch FTS5 table with the same tokenizer turns query text into index terms.
_PROBE = """
CREATE VIRTUAL TABLE IF NOT EXISTS temp.probe USING fts5(t, tokenize='porter unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE IF NOT EXISTS temp.probe_terms USING fts5vocab(temp, probe, 'instance');
"""

_CHUNK_COLUMNS = (
    "c.id, c.tenant_id, c.source_id, c.position, c.text, c.title, c.section, c.page, c.kind, "
    "c.acl, c.created_at, c.updated_at, c.metadata"
)


@dataclass
class _TenantIndex:
    """One tenant's in-memory search structures, valid for one store generation."""

    generation: int
    part: int
    rowids: npt.NDArray[np.int64]
    ids: list[str]
    matrix: Vectors
    public: npt.NDArray[np.bool_]
    postings: Postings | None = None


def _acl_clause(scope: Scope, alias: str = "c") -> tuple[str, list[object]]:
    others = sorted(scope.principals - {PUBLIC})
    if not others:
        return f"{alias}.acl_public = 1", []
    marks = ",".join("?" * len(others))
    return (
        f"({alias}.acl_public = 1 OR EXISTS (SELECT 1 FROM json_each({alias}.acl) AS a "
        f"WHERE a.value IN ({marks})))",
        list(others),
    )


def _time(value: datetime | None) -> str | None:
    return normalise_time(value) if value is not None else None


def _row_to_chunk(row: sqlite3.Row | tuple[Any, ...]) -> Chunk:
    (
        cid,
        tenant,
        source,
        position,
        text,
        title,
        section,
        page,
        kind,
        acl,
        created,
        updated,
        metadata,
    ) = row
    return Chunk(
        id=cid,
        tenant_id=tenant,
        source_id=source,
        position=position,
        text=text,
        title=title,
        section=section,
        page=page,
        kind=kind,
        acl=tuple(json.loads(acl)),
        created_at=datetime.fromisoformat(created) if created else None,
        updated_at=datetime.fromisoformat(updated) if updated else None,
        metadata=json.loads(metadata),
    )


class SQLiteStore:
    def __init__(self, path: str | Path, *, embed_model: str, dim: int) -> None:
        self.path = Path(path).expanduser()
        self.embed_model = embed_model
        self.dim = dim
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            use_wal(self._db)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(_SCHEMA)
            self._db.executescript(_PROBE)
            self._check_meta()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        # One connection, used from worker threads one at a time.
        self._lock = threading.RLock()
        self._indexes: dict[str, _TenantIndex] = {}

    def _check_meta(self) -> None:
        rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not rows:
            self._db.executemany(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("embed_model", self.embed_model),
                    ("dim", str(self.dim)),
                ],
            )
            return
        if rows.get("schema_version") != str(SCHEMA_VERSION):
            raise StoreError(
                f"store schema {rows.get('schema_version')} is not {SCHEMA_VERSION}; "
                "this tether cannot open it"
            )
        if rows.get("embed_model") != self.embed_model or rows.get("dim") != str(self.dim):
            raise StoreError(
                f"store {self.path} holds vectors of {rows.get('embed_model')} "
                f"(dim {rows.get('dim')}), not {self.embed_model}; use that embedder or a new store"
            )

    async def _run(self, fn: Callable[[], T]) -> T:
        def locked() -> T:
            with self._lock:
                try:
                    return fn()
                except sqlite3.DatabaseError as exc:
                    raise StoreError(f"store {self.path}: {exc}") from exc

        return await asyncio.to_thread(locked)

    # -- tenants -------------------------------------------------------------------------

    def _part(self, tenant_id: str, *, create: bool) -> int | None:
        row = self._db.execute(
            "SELECT part FROM tenants WHERE tenant_id = ?", (tenant_id,)
        ).fetchone()
        if row is not None:
            return int(row[0])
        if not create:
            return None
        part = int(self._db.execute("SELECT COALESCE(MAX(part), 0) + 1 FROM tenants").fetchone()[0])
        self._db.execute("INSERT INTO tenants (tenant_id, part) VALUES (?, ?)", (tenant_id, part))
        # Porter stemming + unicode61: the setting that scored best on SciFact (docs/benchmarks.md).
        self._db.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS fts_{part} USING fts5(title, section, text, "
            "content='chunks', content_rowid='rowid', "
            "tokenize='porter unicode61 remove_diacritics 2')"
        )
        return part

    # -- writes --------------------------------------------------------------------------

    async def document_hashes(self, tenant_id: str, prefix: str = "") -> dict[str, str]:
        Scope(tenant_id)

        def query() -> dict[str, str]:
            rows = self._db.execute(
                "SELECT source_id, content_hash FROM documents WHERE tenant_id = ? "
                "AND substr(source_id, 1, ?) = ?",
                (tenant_id, len(prefix), prefix),
            ).fetchall()
            return {str(s): str(h) for s, h in rows}

        return await self._run(query)

    def _delete_sources(self, tenant_id: str, part: int, source_ids: Sequence[str]) -> int:
        removed = 0
        for source_id in source_ids:
            # External-content FTS5 needs the old values to remove a row's terms.
            self._db.execute(
                f"INSERT INTO fts_{part} (fts_{part}, rowid, title, section, text) "
                "SELECT 'delete', rowid, title, section, text FROM chunks "
                "WHERE tenant_id = ? AND source_id = ?",
                (tenant_id, source_id),
            )
            self._db.execute(
                "DELETE FROM chunks WHERE tenant_id = ? AND source_id = ?", (tenant_id, source_id)
            )
            removed += self._db.execute(
                "DELETE FROM documents WHERE tenant_id = ? AND source_id = ?",
                (tenant_id, source_id),
            ).rowcount
        return removed

    def _transaction(self, tenant_id: str, body: Callable[[int], T]) -> T:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            part = self._part(tenant_id, create=True)
            assert part is not None
            result = body(part)
            self._db.execute(
                "UPDATE tenants SET generation = generation + 1 WHERE tenant_id = ?", (tenant_id,)
            )
            self._db.execute("COMMIT")
            return result
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    async def replace_documents(
        self, tenant_id: str, batch: Sequence[tuple[DocumentRecord, Sequence[Chunk], Vectors]]
    ) -> None:
        check_batch(tenant_id, batch, self.dim)

        def write(part: int) -> None:
            self._delete_sources(tenant_id, part, [r.source_id for r, _, _ in batch])
            for record, chunks, vectors in batch:
                self._db.executemany(
                    "INSERT INTO chunks (id, tenant_id, source_id, position, text, title, section, "
                    "page, kind, acl, acl_public, created_at, updated_at, metadata, vector) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            c.id,
                            tenant_id,
                            c.source_id,
                            c.position,
                            c.text,
                            c.title,
                            c.section,
                            c.page,
                            c.kind,
                            json.dumps(sorted(set(c.acl))),
                            int(PUBLIC in c.acl),
                            _time(c.created_at),
                            _time(c.updated_at),
                            json.dumps(c.metadata, default=str, sort_keys=True),
                            np.ascontiguousarray(vec, dtype=np.float32).tobytes(),
                        )
                        for c, vec in zip(chunks, vectors, strict=True)
                    ],
                )
                self._db.execute(
                    f"INSERT INTO fts_{part} (rowid, title, section, text) "
                    "SELECT rowid, title, section, text FROM chunks "
                    "WHERE tenant_id = ? AND source_id = ?",
                    (tenant_id, record.source_id),
                )
                self._db.execute(
                    "INSERT INTO documents (tenant_id, source_id, title, content_hash, chunk_count, "
                    "ingested_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        tenant_id,
                        record.source_id,
                        record.title,
                        record.content_hash,
                        len(chunks),
                        normalise_time(record.ingested_at),
                    ),
                )

        await self._run(lambda: self._transaction(tenant_id, write))

    async def delete_documents(self, tenant_id: str, source_ids: Sequence[str]) -> int:
        Scope(tenant_id)
        if not source_ids:
            return 0
        return await self._run(
            lambda: self._transaction(
                tenant_id, lambda part: self._delete_sources(tenant_id, part, source_ids)
            )
        )

    # -- reads ---------------------------------------------------------------------------

    async def list_documents(self, scope: Scope) -> list[DocumentRecord]:
        """Documents with at least one chunk the scope may see."""
        acl, acl_params = _acl_clause(scope)

        def query() -> list[DocumentRecord]:
            rows = self._db.execute(
                "SELECT d.tenant_id, d.source_id, d.title, d.content_hash, d.chunk_count, "
                "d.ingested_at FROM documents d WHERE d.tenant_id = ? AND EXISTS (SELECT 1 FROM "
                f"chunks c WHERE c.tenant_id = d.tenant_id AND c.source_id = d.source_id AND {acl}) "
                "ORDER BY d.source_id",
                (scope.tenant_id, *acl_params),
            ).fetchall()
            return [
                DocumentRecord(t, s, ti, h, n, datetime.fromisoformat(at))
                for t, s, ti, h, n, at in rows
            ]

        return await self._run(query)

    async def count_chunks(self, scope: Scope) -> int:
        acl, params = _acl_clause(scope)
        return await self._run(
            lambda: int(
                self._db.execute(
                    f"SELECT COUNT(*) FROM chunks c WHERE c.tenant_id = ? AND {acl}",
                    (scope.tenant_id, *params),
                ).fetchone()[0]
            )
        )

    async def keyword_search(
        self, scope: Scope, text: str, filters: Sequence[Filter], limit: int
    ) -> list[tuple[str, float]]:
        words = query_terms(text)
        if not words:
            return []

        def search() -> list[tuple[str, float]]:
            index = self._index(scope.tenant_id)
            if index is None or not index.ids:
                return []
            scores = self._postings(scope.tenant_id, index).scores(self._index_terms(words))
            return self._top(index, scores, self._mask(scope, filters, index), limit, positive=True)

        return await self._run(search)

    def _index_terms(self, words: list[str]) -> list[str]:
        """The terms FTS5 itself would index for these words (porter-stemmed, folded), one per
        word: two words with one stem count twice, as two phrases of a MATCH query do."""
        self._db.execute("INSERT INTO temp.probe (rowid, t) VALUES (1, ?)", (" ".join(words),))
        try:
            return [
                str(r[0])
                for r in self._db.execute("SELECT term FROM temp.probe_terms ORDER BY offset")
            ]
        finally:
            self._db.execute("DELETE FROM temp.probe")

    def _postings(self, tenant_id: str, index: _TenantIndex) -> Postings:
        if index.postings is not None:
            return index.postings
        row = self._db.execute(
            "SELECT generation, payload FROM keyword_cache WHERE tenant_id = ?", (tenant_id,)
        ).fetchone()
        if row is not None and row[0] == index.generation:
            index.postings = Postings.from_bytes(row[1])
            return index.postings
        vocab = f"vocab_{index.part}"
        self._db.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{vocab} "
            f"USING fts5vocab(main, fts_{index.part}, 'instance')"
        )
        # One read snapshot, so the postings match the generation they are cached under.
        self._db.execute("BEGIN")
        try:
            (generation,) = self._db.execute(
                "SELECT generation FROM tenants WHERE tenant_id = ?", (tenant_id,)
            ).fetchone()
            rows = self._db.execute(
                f"SELECT term, doc, col, COUNT(*) FROM temp.{vocab} GROUP BY term, doc, col"
            ).fetchall()
        finally:
            self._db.execute("COMMIT")
        column = {name: i for i, name in enumerate(("title", "section", "text"))}
        index.postings = build_postings(
            [(t, d, column[c], n) for t, d, c, n in rows], index.rowids, BM25Params()
        )
        if generation == index.generation:
            # Another process opening this generation skips the rebuild.
            self._db.execute(
                "INSERT OR REPLACE INTO keyword_cache (tenant_id, generation, payload) "
                "VALUES (?, ?, ?)",
                (tenant_id, index.generation, index.postings.to_bytes()),
            )
        return index.postings

    def _mask(
        self, scope: Scope, filters: Sequence[Filter], index: _TenantIndex
    ) -> npt.NDArray[np.bool_] | None:
        """Rows the scope may see under the filters; None when that is every row."""
        if filters or (scope.principals != {PUBLIC} and not index.public.all()):
            return np.isin(index.rowids, self._allowed_rowids(scope, filters))
        if not index.public.all():
            return index.public
        return None

    @staticmethod
    def _top(
        index: _TenantIndex,
        scores: npt.NDArray[np.floating[Any]],
        mask: npt.NDArray[np.bool_] | None,
        limit: int,
        *,
        positive: bool = False,
    ) -> list[tuple[str, float]]:
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        if positive:
            scores = np.where(scores > 0, scores, -np.inf)
        n = min(limit, len(scores))
        if n <= 0:
            return []
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(index.ids[i], float(scores[i])) for i in top if np.isfinite(scores[i])]

    def _index(self, tenant_id: str) -> _TenantIndex | None:
        # One read snapshot: the rows loaded belong to the generation they are labelled with.
        self._db.execute("BEGIN")
        try:
            row = self._db.execute(
                "SELECT generation, part FROM tenants WHERE tenant_id = ?", (tenant_id,)
            ).fetchone()
            if row is None:
                return None
            cached = self._indexes.get(tenant_id)
            if cached is not None and cached.generation == row[0]:
                return cached
            rows = self._db.execute(
                "SELECT rowid, id, acl_public, vector FROM chunks WHERE tenant_id = ? ORDER BY rowid",
                (tenant_id,),
            ).fetchall()
        finally:
            self._db.execute("COMMIT")
        matrix = np.frombuffer(b"".join(r[3] for r in rows), dtype=np.float32)
        index = _TenantIndex(
            generation=int(row[0]),
            part=int(row[1]),
            rowids=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
            ids=[r[1] for r in rows],
            matrix=matrix.reshape(len(rows), self.dim),
            public=np.fromiter((bool(r[2]) for r in rows), dtype=np.bool_, count=len(rows)),
        )
        self._indexes[tenant_id] = index
        return index

    def _allowed_rowids(self, scope: Scope, filters: Sequence[Filter]) -> npt.NDArray[np.int64]:
        acl, acl_params = _acl_clause(scope)
        where, filter_params = compile_sqlite(list(filters))
        rows = self._db.execute(
            f"SELECT c.rowid FROM chunks c WHERE c.tenant_id = ? AND {acl} AND {where}",
            (scope.tenant_id, *acl_params, *filter_params),
        ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    async def vector_search(
        self, scope: Scope, vector: Vectors, filters: Sequence[Filter], limit: int
    ) -> list[tuple[str, float]]:
        query_vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query_vec.shape[0] != self.dim:
            raise StoreError(f"query vector has dim {query_vec.shape[0]}, store has {self.dim}")

        def search() -> list[tuple[str, float]]:
            index = self._index(scope.tenant_id)
            if index is None or not index.ids:
                return []
            scores = index.matrix @ query_vec
            return self._top(index, scores, self._mask(scope, filters, index), limit)

        return await self._run(search)

    async def get_chunks(self, scope: Scope, ids: Sequence[str]) -> list[Chunk]:
        if not ids:
            return []
        acl, acl_params = _acl_clause(scope)

        def query() -> list[Chunk]:
            marks = ",".join("?" * len(ids))
            rows = self._db.execute(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks c WHERE c.tenant_id = ? AND c.id IN ({marks}) "
                f"AND {acl}",
                (scope.tenant_id, *ids, *acl_params),
            ).fetchall()
            found = {row[0]: _row_to_chunk(row) for row in rows}
            return [found[i] for i in ids if i in found]

        return await self._run(query)

    async def chunk_vectors(self, scope: Scope, ids: Sequence[str]) -> Vectors:
        acl, acl_params = _acl_clause(scope)

        def query() -> Vectors:
            marks = ",".join("?" * len(ids))
            rows = dict(
                self._db.execute(
                    f"SELECT c.id, c.vector FROM chunks c WHERE c.tenant_id = ? AND c.id IN ({marks}) "
                    f"AND {acl}",
                    (scope.tenant_id, *ids, *acl_params),
                ).fetchall()
            )
            out = np.zeros((len(ids), self.dim), dtype=np.float32)
            for i, cid in enumerate(ids):
                if cid in rows:
                    out[i] = np.frombuffer(rows[cid], dtype=np.float32)
            return out

        return await self._run(query) if ids else np.zeros((0, self.dim), dtype=np.float32)

    async def optimize(self) -> None:
        await self._run(lambda: self._db.execute("PRAGMA optimize"))

    async def tenants(self) -> list[str]:
        return await self._run(
            lambda: [
                str(r[0]) for r in self._db.execute("SELECT tenant_id FROM tenants ORDER BY 1")
            ]
        )

    async def export_documents(
        self, tenant_id: str, *, batch: int = 100
    ) -> AsyncIterator[list[tuple[DocumentRecord, list[Chunk], Vectors]]]:
        Scope(tenant_id)
        sources = await self._run(
            lambda: [
                (str(s), str(t), str(h), int(n), str(at))
                for s, t, h, n, at in self._db.execute(
                    "SELECT source_id, title, content_hash, chunk_count, ingested_at FROM documents "
                    "WHERE tenant_id = ? ORDER BY source_id",
                    (tenant_id,),
                )
            ]
        )
        for start in range(0, len(sources), batch):
            part = sources[start : start + batch]

            def load(
                part: list[tuple[str, str, str, int, str]] = part,
            ) -> list[tuple[DocumentRecord, list[Chunk], Vectors]]:
                out = []
                for source_id, title, digest, count, at in part:
                    rows = self._db.execute(
                        f"SELECT {_CHUNK_COLUMNS}, c.vector FROM chunks c WHERE c.tenant_id = ? "
                        "AND c.source_id = ? ORDER BY c.position",
                        (tenant_id, source_id),
                    ).fetchall()
                    vectors = np.frombuffer(b"".join(r[-1] for r in rows), dtype=np.float32)
                    out.append(
                        (
                            DocumentRecord(
                                tenant_id,
                                source_id,
                                title,
                                digest,
                                count,
                                datetime.fromisoformat(at),
                            ),
                            [_row_to_chunk(r[:-1]) for r in rows],
                            vectors.reshape(len(rows), self.dim).copy(),
                        )
                    )
                return out

            yield await self._run(load)

    async def close(self) -> None:
        with self._lock:
            self._db.close()


def utcnow() -> datetime:
    return datetime.now(UTC)
