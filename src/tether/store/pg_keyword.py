"""The PostgreSQL store's keyword side: per-tenant BM25 postings held in each replica's memory.

PostgreSQL tokenises and stems (`to_tsvector('english', ...)`, stored per chunk); the
postings are read from those lexemes once per tenant generation and scored with numpy, as
the embedded store does with FTS5's. Reading them is the expensive part, so PostgreSQL does
the grouping: one row per lexeme, its postings packed into one binary int8 array that
numpy reads without a Python loop per posting. The cost is linear in the tenant's
postings: docs/benchmarks.md has the build time and memory at 1M chunks.

Freshness: a tenant below `sync_limit` chunks is rebuilt before the query that finds it
stale, so a reader sees every committed write (the tests rely on it). A bigger tenant keeps
answering from its previous postings while one background task rebuilds them, at most
once per `refresh_seconds` (a refresh interval, as search engines have): chunks written
since are missing from the keyword side until then (the vector side has them at once),
and every result drawn from stale postings is re-checked in SQL, so nothing deleted or no
longer visible comes back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from psycopg_pool import AsyncConnectionPool

from tether.store.bm25 import BM25Params, Postings, postings_from_arrays
from tether.types import PUBLIC

log = logging.getLogger(__name__)

_IDS_SQL = (
    "SELECT id, acl_public, CASE WHEN acl_public THEN NULL ELSE acl END "
    "FROM chunks WHERE tenant_id = %(tenant)s ORDER BY id"
)
# One int8 per posting: the chunk's position in _IDS_SQL's order (same snapshot) << 27,
# then its occurrences in the title (weight label A) << 18, in the section (B) << 9, and
# in total (tsvector keeps at most 256 positions per lexeme, so 9 bits each suffice).
# Numbering the ids apart from the tsvectors keeps the sort small; array_send hands the
# array over in binary. Measured at 1M chunks: 53 s, against 64 s for bytea records.
_POSTINGS_SQL = (
    "WITH o AS (SELECT id, (row_number() OVER (ORDER BY id) - 1)::int8 AS n "
    "FROM chunks WHERE tenant_id = %(tenant)s) "
    "SELECT l.lexeme, array_send(array_agg((o.n << 27) "
    "| (cardinality(array_positions(l.weights, 'A'))::int8 << 18) "
    "| (cardinality(array_positions(l.weights, 'B'))::int8 << 9) "
    "| cardinality(l.positions))) "
    "FROM o JOIN chunks c ON c.tenant_id = %(tenant)s AND c.id = o.id, unnest(c.tsv) AS l "
    "GROUP BY l.lexeme"
)
#: array_send of a one-dimensional int8 array: ndim, has-nulls, element type, length,
#: lower bound; then a length word and the value per element.
_ARRAY_HEADER = 20
_ELEMENT = np.dtype([("length", ">i4"), ("value", ">i8")])


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
    terms: list[str] = []
    counts: list[int] = []
    doc_parts: list[npt.NDArray[np.int32]] = []
    tf_parts: list[npt.NDArray[np.float32]] = []
    w_title, w_section, w_text = params.weights
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur = await conn.execute(
            "SELECT generation FROM tenants WHERE tenant_id = %s", (tenant_id,)
        )
        row = await cur.fetchone()
        if row is None:
            return None
        generation = int(row[0])
        cur = await conn.execute(_IDS_SQL, {"tenant": tenant_id})
        rows = await cur.fetchall()
        lengths = np.zeros(len(rows), dtype=np.float64)
        # A server-side cursor: a few thousand lexemes in memory at a time, not the whole
        # tenant's postings twice over.
        async with conn.cursor(name="tether_postings", binary=True) as stream:
            await stream.execute(_POSTINGS_SQL, {"tenant": tenant_id})
            while batch := await stream.fetchmany(2000):
                totals: list[npt.NDArray[np.float32]] = []
                for lexeme, data in batch:
                    packed = np.frombuffer(data, dtype=_ELEMENT, offset=_ARRAY_HEADER)["value"]
                    title = ((packed >> 18) & 511).astype(np.float32)
                    section = ((packed >> 9) & 511).astype(np.float32)
                    total = (packed & 511).astype(np.float32)
                    terms.append(str(lexeme))
                    counts.append(len(packed))
                    doc_parts.append((packed >> 27).astype(np.int32))
                    tf_parts.append(
                        w_title * title + w_section * section + w_text * (total - title - section)
                    )
                    totals.append(total)
                lengths += np.bincount(
                    np.concatenate(doc_parts[-len(batch) :]),
                    weights=np.concatenate(totals),
                    minlength=len(rows),
                )
    ids = [str(r[0]) for r in rows]
    public = np.fromiter((bool(r[1]) for r in rows), dtype=np.bool_, count=len(rows))
    members: dict[str, list[int]] = {}
    for n, r in enumerate(rows):
        for principal in r[2] or ():
            members.setdefault(str(principal), []).append(n)
    del rows
    groups = {p: np.asarray(v, dtype=np.int32) for p, v in members.items()}
    df = np.asarray(counts, dtype=np.int64)
    docs = np.concatenate(doc_parts) if doc_parts else np.zeros(0, np.int32)
    del doc_parts
    tf = np.concatenate(tf_parts) if tf_parts else np.zeros(0, np.float32)
    del tf_parts
    postings = postings_from_arrays(terms, df, docs, tf, lengths, params)
    return KeywordIndex(generation, ids, public, groups, postings)


#: From this many chunks a tenant is big: its queries are scored in a worker thread (see
#: PostgresStore) and leave out terms at the idf floor (`Postings.scores`). Below it the
#: scores equal the embedded store's exactly, which the conformance suite relies on.
BIG_TENANT = 100_000


def is_big(index: KeywordIndex) -> bool:
    return len(index.ids) >= BIG_TENANT


class Ranking:
    """Positions of the positive scores, best first (ties by position), handed out in
    consecutive slices. Each slice partitions the positive scores to find its threshold,
    then sorts only what clears it."""

    def __init__(self, scores: npt.NDArray[np.float64]) -> None:
        self._scores = scores
        self._given = 0
        self._ready: npt.NDArray[np.intp] | None = None

    def prepare(self, count: int) -> None:
        """Compute the first `count` now (say, in a worker thread)."""
        self._ready = self._best(count)

    def _best(self, upto: int) -> npt.NDArray[np.intp]:
        scores = self._scores
        if upto <= 0 or len(scores) == 0:
            return np.zeros(0, dtype=np.intp)
        # Partition only the positive scores: numpy's introselect degrades badly on an
        # array that is mostly zeros (26 ms instead of 0.05 ms at 200k chunks, measured).
        top = np.flatnonzero(scores > 0)
        if len(top) > upto:
            values = scores[top]
            threshold = np.partition(values, len(values) - upto)[len(values) - upto]
            top = top[values >= threshold]
        top = top[np.lexsort((top, -scores[top]))]
        return top[:upto]

    def next(self, count: int) -> npt.NDArray[np.intp]:
        upto = self._given + count
        if self._ready is not None and len(self._ready) >= upto:
            top = self._ready
        else:
            top = self._best(upto)
            self._ready = top
        out = top[self._given : upto]
        self._given = upto
        return out


def _consume(task: asyncio.Task[KeywordIndex | None]) -> None:
    # A background build nobody awaited has logged its failure already.
    if not task.cancelled():
        task.exception()


class KeywordIndexes:
    """Each tenant's latest postings, with at most one build per tenant in flight."""

    def __init__(
        self, pool: AsyncConnectionPool, *, sync_limit: int = 50_000, refresh_seconds: float = 30.0
    ) -> None:
        self._pool = pool
        self.sync_limit = sync_limit
        self.refresh_seconds = refresh_seconds
        self._cache: dict[str, KeywordIndex] = {}
        self._started: dict[str, float] = {}
        self._building: dict[str, asyncio.Task[KeywordIndex | None]] = {}

    async def get(self, tenant_id: str, generation: int) -> tuple[KeywordIndex | None, bool]:
        """The index to answer from and whether it is stale (older than `generation`)."""
        cached = self._cache.get(tenant_id)
        if cached is not None and cached.generation >= generation:
            return cached, False
        big = cached is not None and len(cached.ids) >= self.sync_limit
        task = self._building.get(tenant_id)
        if task is None:
            since = time.monotonic() - self._started.get(tenant_id, -math.inf)
            if big and since < self.refresh_seconds:
                return cached, True
            task = self._start(tenant_id)
        if big:
            return cached, True
        index = await asyncio.shield(task)
        if index is not None and index.generation < generation:
            # The build we joined began before this write committed: one more, our own.
            task = self._building.get(tenant_id) or self._start(tenant_id)
            index = await asyncio.shield(task)
        return index, index is not None and index.generation < generation

    def _start(self, tenant_id: str) -> asyncio.Task[KeywordIndex | None]:
        self._started[tenant_id] = time.monotonic()
        task = asyncio.create_task(self._build(tenant_id))
        task.add_done_callback(_consume)
        self._building[tenant_id] = task
        return task

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

    async def close(self) -> None:
        tasks = list(self._building.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._building.clear()
        self._cache.clear()
