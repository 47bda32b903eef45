"""The PostgreSQL store's keyword side: per-tenant BM25 postings held in each replica's memory.

PostgreSQL tokenises and stems (`to_tsvector('english', ...)`, stored per chunk); the
postings are read from those lexemes once per tenant generation and scored with numpy, as
the embedded store does with FTS5's. Reading them is the expensive part, so PostgreSQL does
the grouping: one row per lexeme, its postings packed into a bytea of fixed-size records
(document position, title/section/total occurrence counts) that numpy reads without a
Python loop per posting. docs/benchmarks.md has the build time and memory at 1M chunks.

Freshness: a tenant below `sync_limit` chunks is rebuilt before the query that finds it
stale, so a reader sees every committed write (the tests rely on it). A bigger tenant keeps
answering from its previous postings while one background task rebuilds them (a refresh
interval, as search engines have): chunks written since are missing from the keyword side
until then (the vector side has them at once), and every result drawn from stale postings
is re-checked in SQL, so nothing deleted or no longer visible comes back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from psycopg_pool import AsyncConnectionPool

from tether.store.bm25 import BM25Params, Postings, postings_from_arrays
from tether.types import PUBLIC

log = logging.getLogger(__name__)

#: One posting as PostgreSQL packs it: document position, occurrences in the title
#: (weight label A) and section (B), and in total.
_POSTING = np.dtype([("doc", ">i4"), ("title", ">i2"), ("section", ">i2"), ("total", ">i2")])

_IDS_SQL = (
    "SELECT id, acl_public, CASE WHEN acl_public THEN NULL ELSE acl END "
    "FROM chunks WHERE tenant_id = %s ORDER BY id"
)
# Positions follow the same ORDER BY id as _IDS_SQL, inside one snapshot.
_POSTINGS_SQL = (
    "SELECT l.lexeme, string_agg(int4send(d.n) "
    "|| int2send(cardinality(array_positions(l.weights, 'A'))::int2) "
    "|| int2send(cardinality(array_positions(l.weights, 'B'))::int2) "
    "|| int2send(cardinality(l.positions)::int2), ''::bytea) "
    "FROM (SELECT (row_number() OVER (ORDER BY id) - 1)::int4 AS n, tsv FROM chunks "
    "WHERE tenant_id = %s) d, unnest(d.tsv) AS l GROUP BY l.lexeme"
)


@dataclass
class KeywordIndex:
    generation: int
    ids: list[str]
    public: npt.NDArray[np.bool_]
    #: For each principal named in a non-public chunk's ACL, the positions of those chunks.
    groups: dict[str, npt.NDArray[np.int32]]
    postings: Postings

    def visible(self, principals: Iterable[str]) -> npt.NDArray[np.bool_] | None:
        """Which chunks these principals may see; None when they may see all of them."""
        if self.public.all():
            return None
        mask = self.public.copy()
        for principal in principals:
            if principal != PUBLIC and principal in self.groups:
                mask[self.groups[principal]] = True
        return None if mask.all() else mask


async def read_index(
    pool: AsyncConnectionPool, tenant_id: str, params: BM25Params = BM25Params()
) -> KeywordIndex | None:
    """The tenant's postings as of one snapshot; None when the tenant does not exist."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur = await conn.execute(
            "SELECT generation FROM tenants WHERE tenant_id = %s", (tenant_id,)
        )
        row = await cur.fetchone()
        if row is None:
            return None
        generation = int(row[0])
        cur = await conn.execute(_IDS_SQL, (tenant_id,))
        rows = await cur.fetchall()
        cur = await conn.execute(_POSTINGS_SQL, (tenant_id,), binary=True)
        lexemes = await cur.fetchall()
    ids = [str(r[0]) for r in rows]
    public = np.fromiter((bool(r[1]) for r in rows), dtype=np.bool_, count=len(rows))
    members: dict[str, list[int]] = {}
    for n, r in enumerate(rows):
        for principal in r[2] or ():
            members.setdefault(str(principal), []).append(n)
    groups = {p: np.asarray(v, dtype=np.int32) for p, v in members.items()}

    terms = [str(lexeme) for lexeme, _ in lexemes]
    packed = [np.frombuffer(bytes(data), dtype=_POSTING) for _, data in lexemes]
    df = np.fromiter((len(p) for p in packed), dtype=np.int64, count=len(packed))
    flat = np.concatenate(packed) if packed else np.zeros(0, dtype=_POSTING)
    docs = flat["doc"].astype(np.int32)
    title = flat["title"].astype(np.float64)
    section = flat["section"].astype(np.float64)
    total = flat["total"].astype(np.float64)
    w_title, w_section, w_text = params.weights
    tf = w_title * title + w_section * section + w_text * (total - title - section)
    lengths = np.bincount(docs, weights=total, minlength=len(ids)).astype(np.float64)
    postings = postings_from_arrays(terms, df, docs, tf, lengths, params)
    return KeywordIndex(generation, ids, public, groups, postings)


def _consume(task: asyncio.Task[KeywordIndex | None]) -> None:
    # A background build nobody awaited has logged its failure already.
    if not task.cancelled():
        task.exception()


class KeywordIndexes:
    """Each tenant's latest postings, with at most one build per tenant in flight."""

    def __init__(self, pool: AsyncConnectionPool, *, sync_limit: int = 50_000) -> None:
        self._pool = pool
        self.sync_limit = sync_limit
        self._cache: dict[str, KeywordIndex] = {}
        self._building: dict[str, asyncio.Task[KeywordIndex | None]] = {}

    async def get(self, tenant_id: str, generation: int) -> tuple[KeywordIndex | None, bool]:
        """The index to answer from and whether it is stale (older than `generation`)."""
        cached = self._cache.get(tenant_id)
        if cached is not None and cached.generation >= generation:
            return cached, False
        task = self._building.get(tenant_id)
        if task is None:
            task = asyncio.create_task(self._build(tenant_id))
            task.add_done_callback(_consume)
            self._building[tenant_id] = task
        if cached is not None and len(cached.ids) >= self.sync_limit:
            return cached, True
        index = await asyncio.shield(task)
        return index, index is not None and index.generation < generation

    async def _build(self, tenant_id: str) -> KeywordIndex | None:
        try:
            index = await read_index(self._pool, tenant_id)
            cached = self._cache.get(tenant_id)
            if index is not None and (cached is None or index.generation > cached.generation):
                self._cache[tenant_id] = index
            return index
        except Exception:
            log.exception("keyword index build failed for a tenant; the next query retries")
            raise
        finally:
            self._building.pop(tenant_id, None)

    def forget(self, tenant_id: str) -> None:
        self._cache.pop(tenant_id, None)

    async def close(self) -> None:
        tasks = list(self._building.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._building.clear()
        self._cache.clear()
