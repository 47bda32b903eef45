"""The PostgreSQL keyword side: packed postings, stale-while-rebuild, filters checked in rounds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import numpy as np
import pytest

from tether.models.fake import HashEmbedder
from tether.store.bm25 import build_postings
from tether.store.filters import parse_filter
from tether.store.pg_keyword import read_index
from tether.store.postgres import PostgresStore
from tether.store.protocol import DocumentRecord, Scope
from tether.types import PUBLIC, Chunk

EMBEDDER = HashEmbedder(dim=16)
WHEN = datetime(2025, 3, 1, tzinfo=UTC)
SCOPE = Scope("t")
WORDS = "apple banana cherry damson elder fig grape hazel iris juniper kale lime".split()


@pytest.fixture
async def store(pg_database: str) -> AsyncIterator[PostgresStore]:
    backend = await PostgresStore.open(pg_database, embed_model=EMBEDDER.model_id, dim=16)
    yield backend
    await backend.close()


async def put(store: PostgresStore, source: str, chunks: list[Chunk]) -> None:
    vectors = await EMBEDDER.embed([c.text for c in chunks])
    record = DocumentRecord("t", source, source, f"h{len(chunks)}", len(chunks), WHEN)
    await store.replace_documents("t", [(record, chunks, vectors)])


def make(source: str, n: int, text: str, **extra: object) -> Chunk:
    return Chunk(
        id=f"{source}-{n:04d}",
        source_id=source,
        tenant_id="t",
        text=text,
        position=n,
        **extra,
    )  # type: ignore[arg-type]


async def test_packed_postings_score_like_the_row_by_row_reading(
    store: PostgresStore, pg_database: str
) -> None:
    rng = np.random.default_rng(3)
    chunks = [
        make(
            "a.md",
            n,
            " ".join(rng.choice(WORDS, int(rng.integers(3, 30)))),
            title=" ".join(rng.choice(WORDS, 2)),
            section=" ".join(rng.choice(WORDS, 1)),
        )
        for n in range(120)
    ]
    await put(store, "a.md", chunks)
    index = await read_index(store._pool, "t")
    assert index is not None
    # The reading the store used before packing: one row per (chunk, lexeme) in Python.
    async with store._pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.id, l.lexeme, l.weights FROM chunks c, unnest(c.tsv) AS l "
            "WHERE c.tenant_id = 't'"
        )
        rows = []
        position = {cid: n for n, cid in enumerate(index.ids)}
        for cid, lexeme, weights in await cur.fetchall():
            for column, label in enumerate("ABC"):
                count = sum(1 for w in weights if w == label)
                if count:
                    rows.append((str(lexeme), position[cid], column, count))
    rows.sort()
    expected = build_postings(rows, np.arange(len(index.ids), dtype=np.int64))
    assert index.ids == sorted(c.id for c in chunks)
    assert set(index.postings.terms) == set(expected.terms)
    for term in ("appl", "banana", "cherri", "lime"):
        np.testing.assert_allclose(
            index.postings.scores([term]), expected.scores([term]), rtol=1e-6
        )
        assert index.postings.scores([term]).max() > 0


async def test_a_big_tenant_answers_from_stale_postings_while_they_rebuild(
    store: PostgresStore,
) -> None:
    store._keyword.sync_limit = 2  # every tenant with 2+ chunks counts as big
    store._keyword.refresh_seconds = 0
    await put(store, "a.md", [make("a.md", 0, "quince orchard"), make("a.md", 1, "quince jam")])
    assert {cid for cid, _ in await store.keyword_search(SCOPE, "quince", [], 10)} == {
        "a.md-0000",
        "a.md-0001",
    }
    # Replace a.md: chunk 1 is gone, chunk 2 is new.
    await put(store, "a.md", [make("a.md", 0, "quince orchard"), make("a.md", 2, "quince tart")])
    stale = await store.keyword_search(SCOPE, "quince", [], 10)
    # Stale postings do not know chunk 2 yet; the SQL check drops deleted chunk 1.
    assert {cid for cid, _ in stale} == {"a.md-0000"}
    for _ in range(200):
        hits = {cid for cid, _ in await store.keyword_search(SCOPE, "quince", [], 10)}
        if "a.md-0002" in hits:
            break
        await asyncio.sleep(0.01)
    assert hits == {"a.md-0000", "a.md-0002"}


async def test_a_big_tenant_rebuilds_at_most_once_per_refresh_interval(
    store: PostgresStore,
) -> None:
    store._keyword.sync_limit = 2
    store._keyword.refresh_seconds = 3600
    await put(store, "a.md", [make("a.md", 0, "quince orchard"), make("a.md", 1, "quince jam")])
    await store.keyword_search(SCOPE, "quince", [], 10)  # the first build
    await put(store, "b.md", [make("b.md", 0, "quince tart")])
    for _ in range(20):
        hits = {cid for cid, _ in await store.keyword_search(SCOPE, "quince", [], 10)}
        assert hits == {"a.md-0000", "a.md-0001"}
        assert not store._keyword._building  # no rebuild started inside the interval
        await asyncio.sleep(0.005)
    store._keyword.refresh_seconds = 0
    await store.keyword_search(SCOPE, "quince", [], 10)  # starts the rebuild
    for _ in range(200):
        hits = {cid for cid, _ in await store.keyword_search(SCOPE, "quince", [], 10)}
        if "b.md-0000" in hits:
            break
        await asyncio.sleep(0.01)
    assert hits == {"a.md-0000", "a.md-0001", "b.md-0000"}


async def test_a_small_tenant_sees_every_write_at_once(store: PostgresStore) -> None:
    await put(store, "a.md", [make("a.md", 0, "quince orchard")])
    assert [c for c, _ in await store.keyword_search(SCOPE, "quince", [], 10)] == ["a.md-0000"]
    await put(store, "b.md", [make("b.md", 0, "quince tart")])
    found = {c for c, _ in await store.keyword_search(SCOPE, "quince", [], 10)}
    assert found == {"a.md-0000", "b.md-0000"}


async def test_a_selective_filter_still_fills_the_page_through_growing_rounds(
    store: PostgresStore,
) -> None:
    # 400 matches; only the 5 weakest (longest texts) carry kind=table.
    chunks = [make("a.md", n, "plum " + "filler " * (n // 40)) for n in range(395)]
    chunks += [make("a.md", 395 + n, "plum " + "filler " * 60, kind="table") for n in range(5)]
    await put(store, "a.md", chunks)
    hits = await store.keyword_search(SCOPE, "plum", [parse_filter("kind=table")], 10)
    assert sorted(cid for cid, _ in hits) == [f"a.md-{n:04d}" for n in range(395, 400)]
    everything = await store.keyword_search(SCOPE, "plum", [], 1000)
    assert len(everything) == 400
    scores = [s for _, s in everything]
    assert scores == sorted(scores, reverse=True)


async def test_acl_groups_mask_the_postings(store: PostgresStore) -> None:
    await put(
        store,
        "a.md",
        [
            make("a.md", 0, "pear open"),
            make("a.md", 1, "pear finance", acl=("group:fin",)),
            make("a.md", 2, "pear legal", acl=("group:legal", "group:fin")),
        ],
    )
    seen = {
        who: {c for c, _ in await store.keyword_search(Scope("t", principals=who), "pear", [], 9)}
        for who in (
            frozenset({PUBLIC}),
            frozenset({PUBLIC, "group:legal"}),
            frozenset({PUBLIC, "group:fin"}),
        )
    }
    assert seen[frozenset({PUBLIC})] == {"a.md-0000"}
    assert seen[frozenset({PUBLIC, "group:legal"})] == {"a.md-0000", "a.md-0002"}
    assert seen[frozenset({PUBLIC, "group:fin"})] == {"a.md-0000", "a.md-0001", "a.md-0002"}
