"""One Store conformance suite, run against both backends: SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tether.errors import StoreError, TenantRequired
from tether.models.fake import HashEmbedder
from tether.retrieval.retrieve import RetrievalConfig, retrieve
from tether.store.filters import parse_filter
from tether.store.postgres import PostgresStore
from tether.store.protocol import DocumentRecord, Scope, Store
from tether.store.sqlite import SQLiteStore
from tether.types import Chunk

EMBEDDER = HashEmbedder(dim=64)
WHEN = datetime(2025, 3, 1, 12, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        backend: Store = SQLiteStore(
            tmp_path / "s.db", embed_model=EMBEDDER.model_id, dim=EMBEDDER.dim
        )
    else:
        dsn = request.getfixturevalue("pg_database")
        backend = await PostgresStore.open(dsn, embed_model=EMBEDDER.model_id, dim=EMBEDDER.dim)
    yield backend
    await backend.close()


def chunk(tenant: str, source: str, n: int, text: str, **extra: object) -> Chunk:
    return Chunk(
        id=f"c{abs(hash((source, n))) % 16**15:015x}",
        source_id=source,
        tenant_id=tenant,
        text=text,
        position=n,
        **extra,
    )  # type: ignore[arg-type]


async def put(store: Store, tenant: str, source: str, chunks: list[Chunk]) -> None:
    vectors = await EMBEDDER.embed([c.text for c in chunks])
    record = DocumentRecord(tenant, source, source, f"h-{source}-{len(chunks)}", len(chunks), WHEN)
    await store.replace_documents(tenant, [(record, chunks, vectors)])


async def test_write_read_replace_delete(store: Store) -> None:
    a = [chunk("t", "a.md", 0, "alpha bravo charlie"), chunk("t", "a.md", 1, "delta echo")]
    await put(store, "t", "a.md", a)
    await put(store, "t", "b.md", [chunk("t", "b.md", 0, "foxtrot golf")])
    scope = Scope("t")
    assert [c.text for c in await store.get_chunks(scope, [a[1].id, a[0].id])] == [
        "delta echo",
        "alpha bravo charlie",
    ]
    assert await store.count_chunks(scope) == 3
    assert set(await store.document_hashes("t")) == {"a.md", "b.md"}
    new = [chunk("t", "a.md", 5, "hotel india")]
    await put(store, "t", "a.md", new)  # replaces exactly a.md's chunks
    assert await store.get_chunks(scope, [c.id for c in a]) == []
    assert await store.count_chunks(scope) == 2
    assert await store.delete_documents("t", ["b.md"]) == 1
    assert [d.source_id for d in await store.list_documents(scope)] == ["a.md"]


async def test_keyword_and_vector_search_find_the_matching_chunk(store: Store) -> None:
    await put(
        store,
        "t",
        "a.md",
        [
            chunk("t", "a.md", 0, "the lighthouse keeper rows home"),
            chunk("t", "a.md", 1, "quarterly revenue grew strongly"),
        ],
    )
    scope = Scope("t")
    keyword = await store.keyword_search(scope, "lighthouse keepers", [], 10)
    assert keyword and (await store.get_chunks(scope, [keyword[0][0]]))[0].position == 0
    vector = (await EMBEDDER.embed(["quarterly revenue grew"]))[0]
    dense = await store.vector_search(scope, vector, [], 10)
    assert (await store.get_chunks(scope, [dense[0][0]]))[0].position == 1
    assert dense[0][1] >= dense[-1][1]


async def test_tenants_never_cross_and_a_blank_tenant_fails_closed(store: Store) -> None:
    same = "shared words about invoices"
    await put(store, "acme", "x.md", [chunk("acme", "x.md", 0, same)])
    await put(store, "globex", "x.md", [chunk("globex", "x.md", 0, same)])
    for tenant in ("acme", "globex"):
        scope = Scope(tenant)
        hits = await store.keyword_search(scope, "invoices", [], 10)
        dense = await store.vector_search(scope, (await EMBEDDER.embed([same]))[0], [], 10)
        got = await store.get_chunks(scope, [h for h, _ in hits + dense])
        assert got and {c.tenant_id for c in got} == {tenant}
    with pytest.raises(TenantRequired):
        await store.keyword_search(Scope(""), "invoices", [], 10)
    with pytest.raises(TenantRequired):
        await store.document_hashes("  ")


async def test_acl_is_enforced_in_every_read(store: Store) -> None:
    await put(store, "t", "open.md", [chunk("t", "open.md", 0, "salary bands overview")])
    secret = chunk("t", "hr.md", 0, "salary bands for executives", acl=("hr",))
    await put(store, "t", "hr.md", [secret])
    public, hr = Scope("t"), Scope("t", frozenset({"hr"}))
    vector = (await EMBEDDER.embed(["salary bands"]))[0]
    assert secret.id not in {i for i, _ in await store.keyword_search(public, "salary", [], 10)}
    assert secret.id not in {i for i, _ in await store.vector_search(public, vector, [], 10)}
    assert await store.get_chunks(public, [secret.id]) == []
    assert await store.count_chunks(public) == 1
    assert [d.source_id for d in await store.list_documents(public)] == ["open.md"]
    assert secret.id in {i for i, _ in await store.keyword_search(hr, "salary", [], 10)}
    assert secret.id in {i for i, _ in await store.vector_search(hr, vector, [], 10)}
    assert await store.count_chunks(hr) == 2


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ("kind=table", {1}),
        ("status=open", {0}),
        ("status=open|closed", {0, 1}),
        ("status!=open", {1, 2}),
        ("speakers=ana", {2}),
        ("page>=2", {1, 2}),
        ("page<2", {0}),
        ("priority>=3", {1}),
        ("updated_at>=2025-01-01", {0, 1}),
        ("updated_at<=2024-06-30", {2}),
    ],
)
async def test_filters_mean_the_same_on_every_backend(
    store: Store, flt: str, expected: set[int]
) -> None:
    rows = [
        chunk(
            "t",
            "f.md",
            0,
            "common text zero",
            page=1,
            metadata={"status": "open", "priority": 1},
            updated_at=datetime(2025, 2, 1, tzinfo=UTC),
        ),
        chunk(
            "t",
            "f.md",
            1,
            "common text one",
            page=2,
            kind="table",
            metadata={"status": "closed", "priority": 5},
            updated_at=datetime(2025, 1, 1, tzinfo=UTC),
        ),
        chunk(
            "t",
            "f.md",
            2,
            "common text two",
            page=3,
            metadata={"speakers": ["ana", "ben"]},
            updated_at=datetime(2024, 6, 30, 15, tzinfo=UTC),
        ),
    ]
    await put(store, "t", "f.md", rows)
    scope, parsed = Scope("t"), [parse_filter(flt)]
    keyword = await store.keyword_search(scope, "common text", parsed, 10)
    vector = await store.vector_search(
        scope, (await EMBEDDER.embed(["common text"]))[0], parsed, 10
    )
    positions = {c.position for c in await store.get_chunks(scope, [i for i, _ in keyword])}
    dense_positions = {c.position for c in await store.get_chunks(scope, [i for i, _ in vector])}
    assert positions == expected and dense_positions == expected


async def test_hybrid_retrieve_runs_on_every_backend(store: Store) -> None:
    await put(
        store,
        "t",
        "k.md",
        [
            chunk("t", "k.md", i, text)
            for i, text in enumerate(
                [
                    "how to rotate the signing key",
                    "the cafeteria menu for friday",
                    "key rotation runbook",
                ]
            )
        ],
    )
    results = await retrieve(
        store, EMBEDDER, "rotate signing key", scope=Scope("t"), k=2, config=RetrievalConfig()
    )
    assert results and results[0].chunk.position in (0, 2)
    assert all(r.chunk.tenant_id == "t" for r in results)


async def test_a_failing_batch_writes_nothing(store: Store) -> None:
    good = chunk("t", "good.md", 0, "kept text")
    await put(store, "t", "good.md", [good])
    dup = chunk("t", "bad.md", 0, "duplicate id")
    vectors = await EMBEDDER.embed(["x", "y"])
    batch = [
        (
            DocumentRecord("t", "new.md", "", "h", 1, WHEN),
            [chunk("t", "new.md", 0, "new text")],
            vectors[:1],
        ),
        (DocumentRecord("t", "bad.md", "", "h", 2, WHEN), [dup, dup], vectors),
    ]
    with pytest.raises(Exception):  # noqa: B017 - each backend raises its own integrity error
        await store.replace_documents("t", batch)
    assert set(await store.document_hashes("t")) == {"good.md"}
    assert await store.count_chunks(Scope("t")) == 1


async def test_concurrent_writers_lose_nothing(store: Store) -> None:
    async def writer(n: int) -> None:
        await put(store, "t", f"doc{n}.md", [chunk("t", f"doc{n}.md", 0, f"text number {n}")])

    await asyncio.gather(*(writer(n) for n in range(12)))
    assert len(await store.document_hashes("t")) == 12
    assert await store.count_chunks(Scope("t")) == 12


async def test_reopening_with_another_embedder_is_refused(
    store: Store, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    await put(store, "t", "a.md", [chunk("t", "a.md", 0, "x")])
    if isinstance(store, SQLiteStore):
        with pytest.raises(StoreError):
            SQLiteStore(store.path, embed_model="other", dim=EMBEDDER.dim)
    else:
        with pytest.raises(StoreError):
            await PostgresStore.open(
                request.getfixturevalue("pg_database"), embed_model="other", dim=EMBEDDER.dim
            )
