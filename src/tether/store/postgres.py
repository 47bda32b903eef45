"""PostgreSQL + pgvector store: the same `Store` protocol as the embedded one.

Chunks are LIST-partitioned by tenant, so each tenant's HNSW and GIN indexes are its own
(dropping a tenant drops its partition); every query still carries the tenant predicate
as the second wall, and the ACL and metadata filters run inside the same SQL.

Keyword ranking: BM25 (k1=1.2, b=0.75, title weight 2), the same scorer as the embedded
store, over PostgreSQL's own lexemes: `to_tsvector('english', ...)` of title (weight
label A), section (B) and text (C) is stored per chunk; each replica reads a tenant's
lexemes once per store generation into in-memory postings and scores with numpy
(`pg_keyword.py` has how, and how fresh they are). `ts_rank` was measured first and
lost 0.22 nDCG@10 on SciFact's keyword side (docs/benchmarks.md): it has no IDF.
Dense: cosine distance on an HNSW index (`vector_cosine_ops`), with pgvector's
iterative index scans so filtered queries still return `limit` rows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import numpy as np
import numpy.typing as npt
import psycopg
from pgvector.psycopg import register_vector_async
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from tether.errors import StoreError
from tether.lexical import query_terms
from tether.models.embedder import Vectors
from tether.store.filters import Filter
from tether.store.pg_filters import compile_pg
from tether.store.pg_keyword import KeywordIndex, KeywordIndexes, Ranking, is_big
from tether.store.protocol import DocumentRecord, Scope, check_batch
from tether.types import PUBLIC, Chunk

SCHEMA_VERSION = 2
_TSV = (
    "setweight(to_tsvector('english', title), 'A') || "
    "setweight(to_tsvector('english', section), 'B') || "
    "setweight(to_tsvector('english', text), 'C')"
)


def _migration_1(dim: int) -> list[str]:
    return [
        "CREATE EXTENSION IF NOT EXISTS vector",
        "CREATE TABLE IF NOT EXISTS tether_meta (key text PRIMARY KEY, value text NOT NULL)",
        "CREATE TABLE IF NOT EXISTS tenants (tenant_id text PRIMARY KEY, "
        "part integer NOT NULL UNIQUE, generation bigint NOT NULL DEFAULT 0)",
        "CREATE TABLE IF NOT EXISTS documents (tenant_id text NOT NULL, source_id text NOT NULL, "
        "title text NOT NULL, content_hash text NOT NULL, chunk_count integer NOT NULL, "
        "ingested_at timestamptz NOT NULL, PRIMARY KEY (tenant_id, source_id))",
        "CREATE TABLE IF NOT EXISTS chunks (tenant_id text NOT NULL, id text NOT NULL, "
        "source_id text NOT NULL, position integer NOT NULL, text text NOT NULL, "
        "title text NOT NULL, section text NOT NULL, page integer, kind text NOT NULL, "
        "acl text[] NOT NULL, acl_public boolean NOT NULL, created_at timestamptz, "
        f"updated_at timestamptz, metadata jsonb NOT NULL, embedding vector({int(dim)}) NOT NULL, "
        f"tsv tsvector GENERATED ALWAYS AS ({_TSV}) STORED, PRIMARY KEY (tenant_id, id)) "
        "PARTITION BY LIST (tenant_id)",
        "CREATE INDEX IF NOT EXISTS chunks_source ON chunks (tenant_id, source_id)",
        "CREATE INDEX IF NOT EXISTS chunks_tsv ON chunks USING gin (tsv)",
        "CREATE INDEX IF NOT EXISTS chunks_embedding ON chunks "
        "USING hnsw (embedding vector_cosine_ops)",
    ]


def _migration_2(dim: int) -> list[str]:
    # HNSW built with ef_construction 128 instead of pgvector's 64: on 900k synthetic
    # chunks recall@10 at ef_search 100 went from 0.77 to 0.99 (docs/scaling.md). On an
    # existing store this rebuilds the vector index once.
    return [
        "DROP INDEX IF EXISTS chunks_embedding",
        "CREATE INDEX chunks_embedding ON chunks USING hnsw (embedding vector_cosine_ops) "
        "WITH (m = 16, ef_construction = 128)",
    ]


_MIGRATIONS = {1: _migration_1, 2: _migration_2}

_CHUNK_COLUMNS = (
    "c.id, c.tenant_id, c.source_id, c.position, c.text, c.title, c.section, c.page, c.kind, "
    "c.acl, c.created_at, c.updated_at, c.metadata"
)


def _acl(scope: Scope) -> tuple[str, list[object]]:
    others = sorted(scope.principals - {PUBLIC})
    if not others:
        return "c.acl_public", []
    return "(c.acl_public OR c.acl && %s::text[])", [others]


def _as_array(value: object) -> npt.NDArray[np.float32]:
    """pgvector hands back a `Vector` (newer) or an ndarray (older) for a vector column."""
    to_numpy = getattr(value, "to_numpy", None)
    raw = to_numpy() if callable(to_numpy) else value
    return np.asarray(raw, dtype=np.float32)


def _row_to_chunk(row: Sequence[object]) -> Chunk:
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
        id=str(cid),
        tenant_id=str(tenant),
        source_id=str(source),
        position=int(position),  # type: ignore[call-overload]
        text=str(text),
        title=str(title),
        section=str(section),
        page=int(page) if page is not None else None,  # type: ignore[call-overload]
        kind=str(kind),
        acl=tuple(acl),  # type: ignore[arg-type]
        created_at=created if isinstance(created, datetime) else None,
        updated_at=updated if isinstance(updated, datetime) else None,
        metadata=metadata if isinstance(metadata, dict) else {},
    )


def _rank(
    index: KeywordIndex, terms: list[str], scope: Scope, first: int
) -> tuple[Ranking, npt.NDArray[np.float64]]:
    scores = index.postings.scores(terms, skip_floored=is_big(index))
    visible = index.visible(scope.principals)
    if visible is not None:
        scores = np.where(visible, scores, 0.0)
    ranking = Ranking(scores)
    ranking.prepare(first)
    return ranking, scores


class PostgresStore:
    """Open with `await PostgresStore.open(dsn, embed_model=..., dim=...)`."""

    def __init__(self, pool: AsyncConnectionPool, *, embed_model: str, dim: int) -> None:
        self._pool = pool
        self.embed_model = embed_model
        self.dim = dim
        self.ef_search = 100
        self._keyword = KeywordIndexes(pool)

    @staticmethod
    async def pool(
        dsn: str, *, min_size: int = 1, max_size: int = 8, vector: bool = True
    ) -> AsyncConnectionPool:
        """A connection pool; with `vector`, every connection knows pgvector's type (so the
        extension must exist already: `open` creates it first)."""

        async def configure(conn: AsyncConnection) -> None:
            await register_vector_async(conn)

        pool = AsyncConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            open=False,
            configure=configure if vector else None,
            kwargs={"autocommit": True},
        )
        try:
            await pool.open(wait=True, timeout=30)
        except Exception as exc:
            await pool.close()
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        return pool

    @classmethod
    async def open(
        cls, dsn: str, *, embed_model: str, dim: int, min_size: int = 1, max_size: int = 8
    ) -> PostgresStore:
        try:
            async with await AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:
            raise StoreError(f"cannot prepare PostgreSQL store: {exc}") from exc
        pool = await cls.pool(dsn, min_size=min_size, max_size=max_size)
        try:
            store = cls(pool, embed_model=embed_model, dim=dim)
            await store.upgrade()
        except Exception as exc:
            await pool.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open PostgreSQL store: {exc}") from exc
        return store

    async def upgrade(self) -> int:
        """Apply pending schema migrations; returns the schema version."""
        async with self._pool.connection() as conn, conn.transaction():
            # One migrator at a time, across every process sharing the database.
            await conn.execute("SELECT pg_advisory_xact_lock(727375)")
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS tether_schema (version integer PRIMARY KEY, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM tether_schema")
            row = await cur.fetchone()
            current = int(row[0]) if row else 0
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version](self.dim):
                    await conn.execute(statement)
                if version == 1:
                    await conn.execute(
                        "INSERT INTO tether_meta (key, value) VALUES ('embed_model', %s), "
                        "('dim', %s)",
                        (self.embed_model, str(self.dim)),
                    )
                await conn.execute("INSERT INTO tether_schema (version) VALUES (%s)", (version,))
                current = version
            cur = await conn.execute("SELECT key, value FROM tether_meta")
            meta = {str(k): str(v) for k, v in await cur.fetchall()}
        if meta.get("embed_model") != self.embed_model or meta.get("dim") != str(self.dim):
            raise StoreError(
                f"database holds vectors of {meta.get('embed_model')} (dim {meta.get('dim')}), "
                f"not {self.embed_model}; use that embedder or another database"
            )
        return current

    async def schema_version(self) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT to_regclass('tether_schema') IS NOT NULL")
            row = await cur.fetchone()
            if not row or not row[0]:
                return 0
            cur = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM tether_schema")
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    # -- writes ----------------------------------------------------------------------------

    async def _ensure_partition(self, conn: AsyncConnection, tenant_id: str) -> None:
        cur = await conn.execute("SELECT part FROM tenants WHERE tenant_id = %s", (tenant_id,))
        if await cur.fetchone() is not None:
            return
        await conn.execute("SELECT pg_advisory_xact_lock(727376)")
        cur = await conn.execute("SELECT part FROM tenants WHERE tenant_id = %s", (tenant_id,))
        if await cur.fetchone() is not None:
            return
        cur = await conn.execute("SELECT COALESCE(MAX(part), 0) + 1 FROM tenants")
        row = await cur.fetchone()
        part = int(row[0]) if row else 1
        await conn.execute(
            "INSERT INTO tenants (tenant_id, part) VALUES (%s, %s)", (tenant_id, part)
        )
        await conn.execute(
            sql.SQL("CREATE TABLE chunks_t{} PARTITION OF chunks FOR VALUES IN ({})").format(
                sql.SQL(str(part)), sql.Literal(tenant_id)
            )
        )

    async def document_hashes(self, tenant_id: str, prefix: str = "") -> dict[str, str]:
        Scope(tenant_id)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT source_id, content_hash FROM documents WHERE tenant_id = %s "
                "AND left(source_id, %s) = %s",
                (tenant_id, len(prefix), prefix),
            )
            return {str(s): str(h) for s, h in await cur.fetchall()}

    async def _delete(
        self, conn: AsyncConnection, tenant_id: str, source_ids: Sequence[str]
    ) -> int:
        await conn.execute(
            "DELETE FROM chunks WHERE tenant_id = %s AND source_id = ANY(%s)",
            (tenant_id, list(source_ids)),
        )
        cur = await conn.execute(
            "DELETE FROM documents WHERE tenant_id = %s AND source_id = ANY(%s)",
            (tenant_id, list(source_ids)),
        )
        return cur.rowcount

    async def replace_documents(
        self, tenant_id: str, batch: Sequence[tuple[DocumentRecord, Sequence[Chunk], Vectors]]
    ) -> None:
        check_batch(tenant_id, batch, self.dim)
        async with self._pool.connection() as conn, conn.transaction():
            await self._ensure_partition(conn, tenant_id)
            await self._delete(conn, tenant_id, [r.source_id for r, _, _ in batch])
            async with conn.cursor() as cur:
                for record, chunks, vectors in batch:
                    await cur.executemany(
                        "INSERT INTO chunks (tenant_id, id, source_id, position, text, title, "
                        "section, page, kind, acl, acl_public, created_at, updated_at, metadata, "
                        "embedding) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                        "%s, %s)",
                        [
                            (
                                tenant_id,
                                c.id,
                                c.source_id,
                                c.position,
                                c.text,
                                c.title,
                                c.section,
                                c.page,
                                c.kind,
                                sorted(set(c.acl)),
                                PUBLIC in c.acl,
                                c.created_at,
                                c.updated_at,
                                json.dumps(c.metadata, default=str),
                                np.asarray(v, dtype=np.float32),
                            )
                            for c, v in zip(chunks, vectors, strict=True)
                        ],
                    )
                    await cur.execute(
                        "INSERT INTO documents (tenant_id, source_id, title, content_hash, "
                        "chunk_count, ingested_at) VALUES (%s, %s, %s, %s, %s, %s)",
                        (
                            tenant_id,
                            record.source_id,
                            record.title,
                            record.content_hash,
                            len(chunks),
                            record.ingested_at,
                        ),
                    )
            await conn.execute(
                "UPDATE tenants SET generation = generation + 1 WHERE tenant_id = %s", (tenant_id,)
            )

    async def delete_documents(self, tenant_id: str, source_ids: Sequence[str]) -> int:
        Scope(tenant_id)
        if not source_ids:
            return 0
        async with self._pool.connection() as conn, conn.transaction():
            removed = await self._delete(conn, tenant_id, source_ids)
            # Every replica's cached keyword postings for this tenant are now stale.
            await conn.execute(
                "UPDATE tenants SET generation = generation + 1 WHERE tenant_id = %s", (tenant_id,)
            )
            return removed

    # -- reads -----------------------------------------------------------------------------

    async def list_documents(self, scope: Scope) -> list[DocumentRecord]:
        acl, acl_params = _acl(scope)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT d.tenant_id, d.source_id, d.title, d.content_hash, d.chunk_count, "
                "d.ingested_at FROM documents d WHERE d.tenant_id = %s AND EXISTS (SELECT 1 "
                f"FROM chunks c WHERE c.tenant_id = d.tenant_id AND c.source_id = d.source_id "
                f"AND {acl}) ORDER BY d.source_id",
                (scope.tenant_id, *acl_params),
            )
            return [DocumentRecord(*row) for row in await cur.fetchall()]

    async def count_chunks(self, scope: Scope) -> int:
        acl, acl_params = _acl(scope)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT count(*) FROM chunks c WHERE c.tenant_id = %s AND {acl}",
                (scope.tenant_id, *acl_params),
            )
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def keyword_search(
        self, scope: Scope, text: str, filters: Sequence[Filter], limit: int
    ) -> list[tuple[str, float]]:
        words = query_terms(text)
        if not words or limit <= 0:
            return []
        where, filter_params = compile_pg(filters)
        async with self._pool.connection() as conn:
            # One round trip: the tenant's generation and the query's lexemes.
            cur = await conn.execute(
                "SELECT (SELECT generation FROM tenants WHERE tenant_id = %s), "
                "ARRAY(SELECT lexeme FROM unnest(to_tsvector('english', %s)))",
                (scope.tenant_id, " ".join(words)),
            )
            row = await cur.fetchone()
        if row is None or row[0] is None:
            return []
        index, stale = await self._keyword.get(scope.tenant_id, int(row[0]))
        if index is None or not index.ids:
            return []
        terms = [str(t) for t in row[1]]
        if is_big(index):
            # Scoring a big tenant takes milliseconds of numpy that release the GIL: off
            # the event loop, it overlaps the vector query instead of delaying it.
            ranked, scores = await asyncio.to_thread(_rank, index, terms, scope, limit)
        else:
            ranked, scores = _rank(index, terms, scope, limit)
        if not filters and not stale:
            return [(index.ids[i], float(scores[i])) for i in ranked.next(limit)]
        # Filters (and stale postings) are checked in SQL on the best candidates, in
        # growing rounds, rather than by reading every row the filter allows.
        acl, acl_params = _acl(scope)
        found: list[tuple[str, float]] = []
        take = max(64, 4 * limit)
        async with self._pool.connection() as conn:
            while len(found) < limit:
                batch = ranked.next(take)
                if not len(batch):
                    break
                ids = [index.ids[i] for i in batch]
                cur = await conn.execute(
                    f"SELECT c.id FROM chunks c WHERE c.tenant_id = %s AND c.id = ANY(%s) "
                    f"AND {acl} AND {where}",
                    (scope.tenant_id, ids, *acl_params, *filter_params),
                )
                allowed = {str(r[0]) for r in await cur.fetchall()}
                found += [
                    (cid, float(scores[i]))
                    for cid, i in zip(ids, batch, strict=True)
                    if cid in allowed
                ]
                take *= 4
        return found[:limit]

    async def vector_search(
        self, scope: Scope, vector: Vectors, filters: Sequence[Filter], limit: int
    ) -> list[tuple[str, float]]:
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dim:
            raise StoreError(f"query vector has dim {query.shape[0]}, store has {self.dim}")
        acl, acl_params = _acl(scope)
        where, filter_params = compile_pg(filters)
        # The pipeline sends BEGIN, both settings, the query and COMMIT in one round trip.
        async with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
            await conn.execute(
                sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(int(self.ef_search)))
            )
            await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            cur = await conn.execute(
                "SELECT c.id, 1 - (c.embedding <=> %s) AS score FROM chunks c "
                f"WHERE c.tenant_id = %s AND {acl} AND {where} "
                "ORDER BY c.embedding <=> %s LIMIT %s",
                (query, scope.tenant_id, *acl_params, *filter_params, query, limit),
            )
            rows = await cur.fetchall()
        # relaxed_order may return near-ties out of order: sort what came back.
        return sorted(((str(i), float(s)) for i, s in rows), key=lambda r: -r[1])

    async def get_chunks(self, scope: Scope, ids: Sequence[str]) -> list[Chunk]:
        if not ids:
            return []
        acl, acl_params = _acl(scope)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks c WHERE c.tenant_id = %s "
                f"AND c.id = ANY(%s) AND {acl}",
                (scope.tenant_id, list(ids), *acl_params),
            )
            found = {row[0]: _row_to_chunk(row) for row in await cur.fetchall()}
        return [found[i] for i in ids if i in found]

    async def chunk_vectors(self, scope: Scope, ids: Sequence[str]) -> Vectors:
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        if not ids:
            return out
        acl, acl_params = _acl(scope)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT c.id, c.embedding FROM chunks c WHERE c.tenant_id = %s "
                f"AND c.id = ANY(%s) AND {acl}",
                (scope.tenant_id, list(ids), *acl_params),
            )
            rows = {str(i): v for i, v in await cur.fetchall()}
        for n, cid in enumerate(ids):
            if cid in rows:
                out[n] = _as_array(rows[cid])
        return out

    async def optimize(self) -> None:
        # Without fresh statistics the planner costs a just-loaded partition as tiny and
        # sorts every row instead of walking the HNSW index: 21 ms instead of 3 ms on
        # SciFact (docs/benchmarks.md). Autovacuum gets there too, but later.
        async with self._pool.connection() as conn:
            await conn.execute("ANALYZE chunks")
            await conn.execute("ANALYZE documents")

    async def tenants(self) -> list[str]:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT tenant_id FROM tenants ORDER BY 1")
            return [str(r[0]) for r in await cur.fetchall()]

    async def export_documents(
        self, tenant_id: str, *, batch: int = 100
    ) -> AsyncIterator[list[tuple[DocumentRecord, list[Chunk], Vectors]]]:
        Scope(tenant_id)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT tenant_id, source_id, title, content_hash, chunk_count, ingested_at "
                "FROM documents WHERE tenant_id = %s ORDER BY source_id",
                (tenant_id,),
            )
            records = [DocumentRecord(*row) for row in await cur.fetchall()]
        for start in range(0, len(records), batch):
            part = records[start : start + batch]
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    f"SELECT {_CHUNK_COLUMNS}, c.embedding FROM chunks c WHERE c.tenant_id = %s "
                    "AND c.source_id = ANY(%s) ORDER BY c.source_id, c.position",
                    (tenant_id, [r.source_id for r in part]),
                )
                rows = await cur.fetchall()
            by_source: dict[str, list[Sequence[object]]] = {}
            for row in rows:
                by_source.setdefault(str(row[2]), []).append(row)
            out = []
            for record in part:
                found = by_source.get(record.source_id, [])
                vectors = np.asarray([_as_array(r[-1]) for r in found], dtype=np.float32).reshape(
                    len(found), self.dim
                )
                out.append((record, [_row_to_chunk(r[:-1]) for r in found], vectors))
            yield out

    async def close(self) -> None:
        await self._keyword.close()
        await self._pool.close()
