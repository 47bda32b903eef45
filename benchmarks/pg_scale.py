"""PostgreSQL at scale: one tenant of 1,000,000 synthetic chunks.

    uv run python -m benchmarks.pg_scale [--chunks 1000000] [--queries 300]

Starts a throwaway PostgreSQL 18 + pgvector (the test suite's launcher, with buffers sized
for the run), creates the store through `PostgresStore.open`, and bulk-loads one tenant the
way docs/scaling.md recommends for a first load: the tenant's partition is detached, filled
with binary COPY, indexed (HNSW and GIN built once, in parallel, instead of row by row) and
attached again. Every query afterwards goes through the store's own code.

The data is synthetic and deterministic (seeded):
* vectors: unit vectors around 2,000 random centres (cosine to the centre about 0.7), so
  the space has the neighbourhood structure of real embeddings; uniform random vectors in
  384 dimensions are all nearly orthogonal and make "nearest" meaningless;
* text: 40-120 words drawn from a Zipf(1.1) law over 40,000 generated words, a 4-word title;
* 10% of the chunks carry an ACL (`group:eng`) instead of being public;
* queries: a new point drawn like the chunks (a centre plus noise), and 3 distinct words of
  a chunk (also 3 of its tokens, which are mostly the commonest words: the worst case).

Measured: load and index build times, relation sizes, the keyword index's build time and
memory, `vector_search` latency and recall@10 against exact search (numpy over the same
float32 vectors) for several `hnsw.ef_search` values, and `search_vector` (hybrid: keyword
+ vector + fusion + fetching chunks; embedding excluded) latency, public and ACL-filtered.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
from psycopg import sql

from benchmarks.common import write
from tests.support.postgres import running_postgres
from tether.evals.metrics import percentile
from tether.retrieval.retrieve import search_vector
from tether.store.postgres import PostgresStore
from tether.store.protocol import DocumentRecord, Scope
from tether.types import PUBLIC, Chunk

TENANT = "scale"
DIM = 384
CENTRES = 2_000
VOCAB = 40_000
CHUNKS_PER_DOC = 10
#: Chunks generated (and copied) per step.
BLOCK = 50_000
SETTINGS = {
    "shared_buffers": "'4GB'",
    "maintenance_work_mem": "'4GB'",
    "max_parallel_maintenance_workers": "2",
    "max_parallel_workers": "4",
    "work_mem": "'64MB'",
    "effective_cache_size": "'16GB'",
    "max_wal_size": "'16GB'",
    "checkpoint_timeout": "'1h'",
}


def vocabulary(rng: np.random.Generator) -> list[str]:
    syllables = [c + v for c in "bcdfghjklmnprstvz" for v in "aeiou"] + ["qu", "th", "st"]
    words: set[str] = set()
    while len(words) < VOCAB:
        n = int(rng.integers(2, 5))
        words.add("".join(syllables[i] for i in rng.integers(0, len(syllables), n)))
    return sorted(words)


def unit(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def centres(seed: int) -> npt.NDArray[np.float32]:
    return unit(np.random.default_rng((seed, 1)).standard_normal((CENTRES, DIM), dtype=np.float32))


def vectors(n: int, seed: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    around = centres(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    step = 100_000
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        which = rng.integers(0, CENTRES, hi - lo)
        noise = rng.standard_normal((hi - lo, DIM), dtype=np.float32) / np.sqrt(DIM)
        out[lo:hi] = unit(around[which] + noise)
    return out


class Texts:
    """Deterministic generated text per chunk (regenerated on demand, not kept)."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.words = vocabulary(rng)
        ranks = np.arange(1, VOCAB + 1, dtype=np.float64)
        p = ranks**-1.1
        self.cdf = np.cumsum(p / p.sum())
        self.seed = seed
        self._block: tuple[int, list[tuple[str, str]]] = (-1, [])

    def block(self, lo: int, hi: int) -> list[tuple[str, str]]:
        rng = np.random.default_rng((self.seed, lo))
        lengths = rng.integers(40, 121, hi - lo)
        draws = np.searchsorted(self.cdf, rng.random(int(lengths.sum()) + 4 * (hi - lo)))
        words = self.words
        out = []
        at = 0
        for length in lengths:
            title = " ".join(words[i] for i in draws[at : at + 4])
            at += 4
            text = " ".join(words[i] for i in draws[at : at + length])
            at += int(length)
            out.append((title, text))
        return out

    def text_of(self, i: int) -> tuple[str, str]:
        """Chunk i's (title, text), regenerating its 50,000-chunk block (one kept)."""
        lo = (i // BLOCK) * BLOCK
        if self._block[0] != lo:
            self._block = (lo, self.block(lo, lo + BLOCK))
        return self._block[1][i - lo]


async def load(dsn: str, n: int, vecs: npt.NDArray[np.float32], texts: Texts) -> dict[str, float]:
    timings: dict[str, float] = {}
    store = await PostgresStore.open(dsn, embed_model="synthetic", dim=DIM)
    # Create the tenant's partition through the store, then bulk-load it detached.
    now = datetime.now(UTC)
    seed_chunk = Chunk(id="seed", tenant_id=TENANT, source_id="seed", position=0, text="seed")
    record = DocumentRecord(TENANT, "seed", "seed", "0", 1, now)
    await store.replace_documents(TENANT, [(record, [seed_chunk], vecs[:1])])
    await store.delete_documents(TENANT, ["seed"])
    pool = store._pool  # a benchmark may reach in for the bulk path
    async with pool.connection() as conn:
        part = (await (await conn.execute("SELECT part FROM tenants")).fetchone() or (0,))[0]
        table = sql.Identifier(f"chunks_t{part}")
        await conn.execute(sql.SQL("ALTER TABLE chunks DETACH PARTITION {}").format(table))
        cur = await conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexdef ~ '(hnsw|gin)'",
            (f"chunks_t{part}",),
        )
        for (name,) in await cur.fetchall():
            await conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))

        start = time.perf_counter()
        columns = "tenant_id, id, source_id, position, text, title, section, kind, acl, acl_public, metadata, embedding"
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            table, sql.SQL(columns)
        )
        async with conn.cursor() as cur, cur.copy(copy_sql) as copy:
            copy.set_types(
                [
                    "text",
                    "text",
                    "text",
                    "int4",
                    "text",
                    "text",
                    "text",
                    "text",
                    "text[]",
                    "bool",
                    "jsonb",
                    "vector",
                ]
            )
            for lo in range(0, n, BLOCK):
                hi = min(n, lo + BLOCK)
                for i, (title, text) in enumerate(texts.block(lo, hi), start=lo):
                    restricted = i % 10 == 9
                    await copy.write_row(
                        (
                            TENANT,
                            f"c{i:07d}",
                            f"d{i // CHUNKS_PER_DOC:06d}",
                            i % CHUNKS_PER_DOC,
                            text,
                            title,
                            "",
                            "text",
                            ["group:eng"] if restricted else [PUBLIC],
                            not restricted,
                            "{}",
                            vecs[i],
                        )
                    )
                print(f"  copied {hi:,} chunks ({time.perf_counter() - start:.0f} s)", flush=True)
        timings["copy_chunks_s"] = time.perf_counter() - start
        docs = n // CHUNKS_PER_DOC + (1 if n % CHUNKS_PER_DOC else 0)
        async with (
            conn.cursor() as cur,
            cur.copy(
                "COPY documents (tenant_id, source_id, title, content_hash, chunk_count, ingested_at) "
                "FROM STDIN"
            ) as copy,
        ):
            for d in range(docs):
                await copy.write_row((TENANT, f"d{d:06d}", f"doc {d}", "h", CHUNKS_PER_DOC, now))

        start = time.perf_counter()
        await conn.execute(sql.SQL("CREATE INDEX ON {} USING gin (tsv)").format(table))
        timings["gin_build_s"] = time.perf_counter() - start
        print(f"  GIN built in {timings['gin_build_s']:.0f} s", flush=True)
        start = time.perf_counter()
        # The same definition (and build options) as the store's own index on the parent.
        cur = await conn.execute("SELECT pg_get_indexdef('chunks_embedding'::regclass)")
        definition = str((await cur.fetchone() or ("",))[0])
        using = definition[definition.index(" USING ") :]
        await conn.execute(sql.SQL("CREATE INDEX ON {}").format(table) + sql.SQL(using))  # type: ignore[operator]
        timings["hnsw_build_s"] = time.perf_counter() - start
        print(f"  HNSW built in {timings['hnsw_build_s']:.0f} s", flush=True)
        await conn.execute(
            sql.SQL("ALTER TABLE chunks ATTACH PARTITION {} FOR VALUES IN ({})").format(
                table, sql.Literal(TENANT)
            )
        )
        await conn.execute(
            "UPDATE tenants SET generation = generation + 1 WHERE tenant_id = %s", (TENANT,)
        )
        cur = await conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE tablename = %s", (f"chunks_t{part}",)
        )
        timings["partition_indexes"] = (await cur.fetchone() or (0,))[0]
        sizes = await conn.execute(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c "
            "WHERE c.relname LIKE %s ORDER BY 2 DESC",
            (f"chunks_t{part}%",),
        )
        timings["sizes_mb"] = {  # type: ignore[assignment]
            str(name): round(size / 2**20) for name, size in await sizes.fetchall()
        }
    start = time.perf_counter()
    await store.optimize()
    timings["analyze_s"] = time.perf_counter() - start
    await store.close()
    return timings


def ms(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p99_ms": round(percentile(samples, 99), 2),
        "mean_ms": round(statistics.fmean(samples), 2),
    }


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


async def measure(
    dsn: str, vecs: npt.NDArray[np.float32], texts: Texts, queries: int, seed: int
) -> dict[str, object]:
    n = len(vecs)
    rng = np.random.default_rng(seed + 1)
    picks = rng.choice(n, queries, replace=False)
    # A query is a new point of the data's distribution, not a perturbed copy of a chunk.
    noise = rng.standard_normal((queries, DIM), dtype=np.float32) / np.sqrt(DIM)
    qvecs = unit(centres(seed)[rng.integers(0, CENTRES, queries)] + noise)
    words_of = {int(i): texts.text_of(int(i))[1].split() for i in sorted(picks)}
    # Two kinds of keyword query: 3 distinct words of a chunk (what a person types), and
    # 3 of its tokens (Zipf-weighted: mostly the commonest words, the costliest case).
    qtexts = [" ".join(rng.choice(sorted(set(words_of[int(i)])), 3, replace=False)) for i in picks]
    common = [" ".join(rng.choice(words_of[int(i)], 3, replace=False)) for i in picks]
    # Exact neighbours over the public chunks (what a public caller may see).
    public = np.ones(n, dtype=bool)
    public[9::10] = False
    truth: list[set[str]] = []
    for q in qvecs:
        sims = vecs @ q
        sims[~public] = -2.0
        top = np.argpartition(-sims, 10)[:10]
        truth.append({f"c{i:07d}" for i in top})

    result: dict[str, object] = {}
    store = await PostgresStore.open(dsn, embed_model="synthetic", dim=DIM, max_size=8)
    scope = Scope(TENANT)
    eng = Scope(TENANT, principals=frozenset({PUBLIC, "group:eng"}))

    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    await store.keyword_search(scope, qtexts[0], [], 10)
    result["keyword_index"] = {
        "build_s": round(time.perf_counter() - start, 1),
        "rss_growth_mb": round(rss_mb() - before),
    }
    print("keyword index", result["keyword_index"], flush=True)

    sweep = {}
    for ef in (40, 100, 200, 400, 800):
        store.ef_search = ef
        for q in qvecs[:20]:
            await store.vector_search(scope, q, [], 10)
        times, recalls = [], []
        for q, gold in zip(qvecs, truth, strict=True):
            t0 = time.perf_counter()
            hits = await store.vector_search(scope, q, [], 10)
            times.append((time.perf_counter() - t0) * 1000)
            recalls.append(len(gold & {h for h, _ in hits}) / 10)
        sweep[str(ef)] = {"recall@10": round(statistics.fmean(recalls), 4), **ms(times)}
        print(f"ef_search {ef}", sweep[str(ef)], flush=True)
    result["vector_search"] = sweep

    chosen = min((int(ef) for ef, s in sweep.items() if s["recall@10"] >= 0.95), default=800)
    store.ef_search = chosen
    result["chosen_ef_search"] = chosen
    for name, who in (("hybrid_public", scope), ("hybrid_acl", eng)):
        for q, t in zip(qvecs[:20], qtexts[:20], strict=True):
            await search_vector(store, t, q, scope=who, k=10)
        times = []
        for q, t in zip(qvecs, qtexts, strict=True):
            t0 = time.perf_counter()
            await search_vector(store, t, q, scope=who, k=10)
            times.append((time.perf_counter() - t0) * 1000)
        result[name] = ms(times)
        print(name, result[name], flush=True)
    for workers in (4, 8):
        queue = list(zip(qvecs, qtexts, strict=True)) * 2

        async def worker(queue: list[tuple[npt.NDArray[np.float32], str]]) -> None:
            while queue:
                q, t = queue.pop()
                await search_vector(store, t, q, scope=scope, k=10)

        t0 = time.perf_counter()
        total = len(queue)
        await asyncio.gather(*(worker(queue) for _ in range(workers)))
        result[f"hybrid_qps_{workers}_concurrent"] = round(total / (time.perf_counter() - t0), 1)
        print(f"hybrid qps at {workers} concurrent", result[f"hybrid_qps_{workers}_concurrent"])
    for name, texts_ in (("keyword_search", qtexts), ("keyword_search_common_words", common)):
        times = []
        for t in texts_:
            t0 = time.perf_counter()
            await store.keyword_search(scope, t, [], 100)
            times.append((time.perf_counter() - t0) * 1000)
        result[name] = ms(times)
        print(name, result[name], flush=True)
    await store.close()
    return result


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hold", action="store_true", help="keep the server up afterwards")
    parser.add_argument("--dsn", help="measure again on a server a --hold run left loaded")
    args = parser.parse_args()
    start = time.perf_counter()
    vecs = vectors(args.chunks, args.seed)
    texts = Texts(args.seed)
    print(f"generated {args.chunks:,} vectors in {time.perf_counter() - start:.0f} s", flush=True)
    result: dict[str, object] = {"chunks": args.chunks, "queries": args.queries, "dim": DIM}
    if args.dsn:
        result.update(await measure(args.dsn, vecs, texts, args.queries, args.seed))
        write(f"pg_scale_{args.chunks}_remeasured", result)
        return
    base = Path(os.environ.get("TETHER_BENCH_TMP", tempfile.gettempdir()))
    with (
        tempfile.TemporaryDirectory(dir=base) as tmp,
        running_postgres(Path(tmp), settings=SETTINGS, startup_timeout=120) as pg,
    ):
        result["load"] = await load(pg.dsn, args.chunks, vecs, texts)
        print("load", result["load"], flush=True)
        result.update(await measure(pg.dsn, vecs, texts, args.queries, args.seed))
        result["postgres_settings"] = SETTINGS
        write("pg_scale" if args.chunks == 1_000_000 else f"pg_scale_{args.chunks}", result)
        if args.hold:
            print(f"holding; DSN {pg.dsn}", flush=True)
            while True:
                await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main())
