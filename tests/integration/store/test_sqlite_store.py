"""SQLiteStore: write semantics, tenant walls, ACLs and filters against a real SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from tether.errors import StoreError, TenantRequired
from tether.models.fake import HashEmbedder
from tether.store.filters import Filter, parse_filter
from tether.store.protocol import DocumentRecord, Scope
from tether.store.sqlite import SQLiteStore
from tether.types import PUBLIC, Chunk, MetaValue

EMBEDDER = HashEmbedder()


def make_chunk(
    tenant: str,
    cid: str,
    text: str,
    *,
    source: str = "/docs/a.md",
    acl: Sequence[str] = (PUBLIC,),
    position: int = 0,
    metadata: dict[str, MetaValue] | None = None,
    page: int | None = None,
) -> Chunk:
    return Chunk(
        id=cid,
        source_id=source,
        tenant_id=tenant,
        text=text,
        title=f"Title of {source}",
        section="Intro",
        page=page,
        position=position,
        acl=tuple(acl),
        metadata=metadata or {},
    )


def record(tenant: str, source: str, chunks: Sequence[Chunk], digest: str = "h") -> DocumentRecord:
    return DocumentRecord(
        tenant, source, f"Title of {source}", digest, len(chunks), datetime.now(UTC)
    )


async def put(
    store: SQLiteStore, tenant: str, source: str, chunks: Sequence[Chunk], digest: str = "h"
) -> None:
    vectors = await EMBEDDER.embed([c.text for c in chunks]) if chunks else np.zeros((0, 64))
    await store.replace_documents(
        tenant, [(record(tenant, source, chunks, digest), list(chunks), vectors)]
    )


async def query_vector(text: str) -> np.ndarray:
    return np.asarray((await EMBEDDER.embed([text], kind="query"))[0])


async def keyword_ids(
    store: SQLiteStore, scope: Scope, text: str, filters: Sequence[Filter] = ()
) -> set[str]:
    return {cid for cid, _ in await store.keyword_search(scope, text, filters, 100)}


async def vector_ids(
    store: SQLiteStore, scope: Scope, text: str, filters: Sequence[Filter] = ()
) -> set[str]:
    return {
        cid for cid, _ in await store.vector_search(scope, await query_vector(text), filters, 100)
    }


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    db = SQLiteStore(tmp_path / "store.db", embed_model=EMBEDDER.model_id, dim=EMBEDDER.dim)
    yield db
    await db.close()


# -- opening and scopes ---------------------------------------------------------------------


@pytest.mark.parametrize("tenant", ["", " ", "   ", "\t\n"])
def test_blank_scope_raises_tenant_required(tenant: str) -> None:
    with pytest.raises(TenantRequired):
        Scope(tenant)
    with pytest.raises(TenantRequired):
        Scope(tenant, frozenset({"alice"}))


def test_scope_always_holds_public() -> None:
    assert Scope("t").principals == frozenset({PUBLIC})
    assert Scope("t", frozenset({"alice"})).principals == frozenset({PUBLIC, "alice"})
    assert issubclass(TenantRequired, StoreError)


@pytest.mark.parametrize("tenant", ["", "  "])
async def test_writes_without_tenant_raise(store: SQLiteStore, tenant: str) -> None:
    chunk = make_chunk("t", "c1", "alpha")
    with pytest.raises(TenantRequired):
        await store.replace_documents(
            tenant, [(record(tenant, "/docs/a.md", [chunk]), [chunk], np.zeros((1, 64)))]
        )
    with pytest.raises(TenantRequired):
        await store.delete_documents(tenant, ["/docs/a.md"])
    with pytest.raises(TenantRequired):
        await store.document_hashes(tenant)


async def test_reopen_with_other_embed_model_or_dim_raises(tmp_path: Path) -> None:
    path = tmp_path / "models.db"
    first = SQLiteStore(path, embed_model="hash-bow-64", dim=64)
    await put(first, "t", "/docs/a.md", [make_chunk("t", "c1", "persisted alpha")])
    await first.close()

    with pytest.raises(StoreError, match="hash-bow-64"):
        SQLiteStore(path, embed_model="minilm-l6", dim=64)
    with pytest.raises(StoreError):
        SQLiteStore(path, embed_model="hash-bow-64", dim=384)
    with pytest.raises(StoreError):
        SQLiteStore(path, embed_model="minilm-l6", dim=384)

    again = SQLiteStore(path, embed_model="hash-bow-64", dim=64)
    try:
        assert await again.count_chunks(Scope("t")) == 1
        assert await keyword_ids(again, Scope("t"), "persisted") == {"c1"}
    finally:
        await again.close()


async def test_opening_a_non_database_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a sqlite database at all" * 200)
    with pytest.raises(StoreError):
        SQLiteStore(path, embed_model="m", dim=8)


# -- writes ---------------------------------------------------------------------------------


async def test_replace_swaps_every_chunk_of_a_document(store: SQLiteStore) -> None:
    scope = Scope("t")
    await put(
        store,
        "t",
        "/docs/a.md",
        [
            make_chunk("t", "a1", "original walrus text"),
            make_chunk("t", "a2", "original narwhal text", position=1),
        ],
        digest="v1",
    )
    await put(
        store, "t", "/docs/b.md", [make_chunk("t", "b1", "bystander walrus", source="/docs/b.md")]
    )
    await put(
        store, "t", "/docs/a.md", [make_chunk("t", "a3", "replacement puffin text")], digest="v2"
    )

    assert [c.id for c in await store.get_chunks(scope, ["a1", "a2", "a3", "b1"])] == ["a3", "b1"]
    assert await store.count_chunks(scope) == 2
    assert await keyword_ids(store, scope, "walrus narwhal") == {"b1"}
    assert await keyword_ids(store, scope, "puffin") == {"a3"}
    assert await vector_ids(store, scope, "anything") == {"a3", "b1"}
    assert await store.document_hashes("t") == {"/docs/a.md": "v2", "/docs/b.md": "h"}
    docs = {d.source_id: d for d in await store.list_documents(scope)}
    assert docs["/docs/a.md"].chunk_count == 1
    assert docs["/docs/a.md"].content_hash == "v2"


async def test_replace_can_reuse_the_same_chunk_ids(store: SQLiteStore) -> None:
    scope = Scope("t")
    await put(store, "t", "/docs/a.md", [make_chunk("t", "a1", "first version kestrel")])
    await put(store, "t", "/docs/a.md", [make_chunk("t", "a1", "second version osprey")])
    (chunk,) = await store.get_chunks(scope, ["a1"])
    assert chunk.text == "second version osprey"
    assert await keyword_ids(store, scope, "kestrel") == set()
    assert await keyword_ids(store, scope, "osprey") == {"a1"}


async def test_delete_documents(store: SQLiteStore) -> None:
    scope = Scope("t")
    await put(store, "t", "/docs/a.md", [make_chunk("t", "a1", "heron marsh")])
    await put(store, "t", "/docs/b.md", [make_chunk("t", "b1", "heron lake", source="/docs/b.md")])
    await put(store, "u", "/docs/a.md", [make_chunk("u", "a1", "heron marsh")])

    assert await store.delete_documents("t", []) == 0
    assert await store.delete_documents("t", ["/docs/nope.md"]) == 0
    assert await store.delete_documents("t", ["/docs/a.md", "/docs/nope.md"]) == 1

    assert await store.get_chunks(scope, ["a1"]) == []
    assert await keyword_ids(store, scope, "heron marsh") == {"b1"}
    assert await vector_ids(store, scope, "heron marsh") == {"b1"}
    assert await store.count_chunks(scope) == 1
    assert [d.source_id for d in await store.list_documents(scope)] == ["/docs/b.md"]
    # The same source in another tenant is untouched.
    assert await keyword_ids(store, Scope("u"), "marsh") == {"a1"}
    assert await store.delete_documents("t", ["/docs/a.md"]) == 0


async def test_a_failed_batch_writes_nothing(store: SQLiteStore) -> None:
    """replace_documents is all-or-nothing: a conflict in doc 2 keeps doc 1's old version."""
    scope = Scope("t")
    await put(store, "t", "/docs/a.md", [make_chunk("t", "a1", "old gannet text")], digest="v1")
    new_a = [make_chunk("t", "dup", "new cormorant text")]
    clash = [make_chunk("t", "dup", "clashing shag text", source="/docs/b.md")]
    vectors = await EMBEDDER.embed(["x"])
    with pytest.raises(StoreError):
        await store.replace_documents(
            "t",
            [
                (record("t", "/docs/a.md", new_a, "v2"), new_a, vectors),
                (record("t", "/docs/b.md", clash, "v1"), clash, vectors),
            ],
        )
    assert await store.document_hashes("t") == {"/docs/a.md": "v1"}
    assert [c.text for c in await store.get_chunks(scope, ["a1", "dup"])] == ["old gannet text"]
    assert await keyword_ids(store, scope, "gannet") == {"a1"}
    assert await keyword_ids(store, scope, "cormorant shag") == set()
    assert await vector_ids(store, scope, "anything") == {"a1"}
    # The store is still writable afterwards.
    await put(store, "t", "/docs/b.md", [make_chunk("t", "b1", "tern", source="/docs/b.md")])
    assert await keyword_ids(store, scope, "tern") == {"b1"}


async def test_a_failed_first_write_leaves_the_tenant_usable(store: SQLiteStore) -> None:
    chunks = [make_chunk("new", "x", "one"), make_chunk("new", "x", "two", position=1)]
    with pytest.raises(StoreError):
        await put(store, "new", "/docs/a.md", chunks)
    scope = Scope("new")
    assert await store.count_chunks(scope) == 0
    assert await store.keyword_search(scope, "one two", [], 10) == []
    assert await store.vector_search(scope, await query_vector("one"), [], 10) == []
    await put(store, "new", "/docs/a.md", [make_chunk("new", "x", "finally albatross")])
    assert await keyword_ids(store, scope, "albatross") == {"x"}


async def test_chunk_ids_are_unique_per_tenant(store: SQLiteStore) -> None:
    await put(store, "t", "/docs/a.md", [make_chunk("t", "same", "in doc a")])
    with pytest.raises(StoreError):
        await put(
            store, "t", "/docs/b.md", [make_chunk("t", "same", "in doc b", source="/docs/b.md")]
        )
    assert await store.document_hashes("t") == {"/docs/a.md": "h"}
    # ... but the same id in another tenant is a different chunk.
    await put(store, "u", "/docs/b.md", [make_chunk("u", "same", "in doc b", source="/docs/b.md")])
    (mine,) = await store.get_chunks(Scope("t"), ["same"])
    (theirs,) = await store.get_chunks(Scope("u"), ["same"])
    assert (mine.text, mine.tenant_id) == ("in doc a", "t")
    assert (theirs.text, theirs.tenant_id) == ("in doc b", "u")


async def test_replace_rejects_mismatched_writes(store: SQLiteStore) -> None:
    good = make_chunk("t", "c1", "text")
    vec = await EMBEDDER.embed(["text"])
    foreign = make_chunk("u", "c1", "text")
    with pytest.raises(StoreError):
        await store.replace_documents("t", [(record("t", "/docs/a.md", [foreign]), [foreign], vec)])
    with pytest.raises(StoreError):
        await store.replace_documents("t", [(record("u", "/docs/a.md", [good]), [good], vec)])
    with pytest.raises(StoreError):
        await store.replace_documents(
            "t", [(record("t", "/docs/a.md", [good]), [good], np.zeros((2, 64), np.float32))]
        )
    with pytest.raises(StoreError):
        await store.replace_documents(
            "t", [(record("t", "/docs/a.md", [good]), [good], np.zeros((1, 32), np.float32))]
        )
    assert await store.document_hashes("t") == {}
    assert await store.document_hashes("u") == {}


async def test_vector_search_rejects_wrong_dimension(store: SQLiteStore) -> None:
    await put(store, "t", "/docs/a.md", [make_chunk("t", "c1", "text")])
    with pytest.raises(StoreError):
        await store.vector_search(Scope("t"), np.ones(32, np.float32), [], 5)


async def test_chunks_round_trip(store: SQLiteStore) -> None:
    when = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)
    chunk = Chunk(
        id="rt",
        source_id="/docs/r.md",
        tenant_id="t",
        text="round trip",
        title="T",
        section="A > B",
        page=7,
        position=3,
        kind="table",
        acl=("team-b", "team-a", "team-a"),
        created_at=when,
        updated_at=when,
        metadata={"tags": ["x", "y"], "n": 2, "ok": True, "s": "v", "none": None},
    )
    await put(store, "t", "/docs/r.md", [chunk])
    (back,) = await store.get_chunks(Scope("t", frozenset({"team-a"})), ["rt"])
    assert back.model_dump(exclude={"acl"}) == chunk.model_dump(exclude={"acl"})
    assert sorted(back.acl) == ["team-a", "team-b"]


async def test_get_chunks_keeps_the_asked_order(store: SQLiteStore) -> None:
    chunks = [make_chunk("t", f"c{i}", f"text {i}", position=i) for i in range(5)]
    await put(store, "t", "/docs/a.md", chunks)
    got = await store.get_chunks(Scope("t"), ["c3", "missing", "c0", "c4"])
    assert [c.id for c in got] == ["c3", "c0", "c4"]
    assert await store.get_chunks(Scope("t"), []) == []


async def test_document_hashes_prefix(store: SQLiteStore) -> None:
    await put(store, "t", "/a/x.md", [make_chunk("t", "1", "x", source="/a/x.md")], "h1")
    await put(store, "t", "/a/y/z.md", [make_chunk("t", "2", "z", source="/a/y/z.md")], "h2")
    await put(store, "t", "/ab/w.md", [make_chunk("t", "3", "w", source="/ab/w.md")], "h3")
    assert await store.document_hashes("t", "/a/") == {"/a/x.md": "h1", "/a/y/z.md": "h2"}
    assert await store.document_hashes("t", "/a/y/") == {"/a/y/z.md": "h2"}
    assert len(await store.document_hashes("t")) == 3
    assert await store.document_hashes("other") == {}


async def test_concurrent_writes_and_reads_serialise(store: SQLiteStore) -> None:
    scope = Scope("t")

    async def write(i: int) -> None:
        source = f"/docs/{i}.md"
        await put(store, "t", source, [make_chunk("t", f"c{i}", f"common word{i}", source=source)])

    async def read() -> None:
        await store.keyword_search(scope, "common", [], 100)
        await store.vector_search(scope, await query_vector("common"), [], 100)

    await asyncio.gather(*(write(i) for i in range(20)), *(read() for _ in range(10)))
    assert await store.count_chunks(scope) == 20
    assert len(await keyword_ids(store, scope, "common")) == 20


# -- tenant walls ---------------------------------------------------------------------------


@pytest.fixture
async def two_tenants(store: SQLiteStore) -> SQLiteStore:
    """Identical source ids, chunk ids and texts in tenants `acme` and `globex`, plus one
    text only globex has, and look-alike tenant names."""
    for tenant in ("acme", "globex", "Acme", "acme "):
        chunks = [
            make_chunk(tenant, "c1", "shared invoice policy"),
            make_chunk(
                tenant, "c2", f"shared refund rules for {tenant.strip().lower()}", position=1
            ),
        ]
        await put(store, tenant, "/docs/a.md", chunks)
    secret = [make_chunk("globex", "g1", "globex secret merger plan", source="/docs/g.md")]
    await put(store, "globex", "/docs/g.md", secret)
    return store


@pytest.mark.parametrize("tenant", ["acme", "Acme", "acme "])
async def test_searches_never_cross_tenants(two_tenants: SQLiteStore, tenant: str) -> None:
    store = two_tenants
    scope = Scope(tenant, frozenset({"alice", "admins"}))
    for text in ("shared invoice", "globex secret merger plan", "refund rules"):
        keyword = await store.keyword_search(scope, text, [], 100)
        dense = await store.vector_search(scope, await query_vector(text), [], 100)
        assert {cid for cid, _ in keyword} <= {"c1", "c2"}
        assert {cid for cid, _ in dense} == {"c1", "c2"}
    assert await keyword_ids(store, scope, "merger") == set()
    chunks = await store.get_chunks(scope, ["c1", "c2", "g1"])
    assert [c.id for c in chunks] == ["c1", "c2"]
    assert all(c.tenant_id == tenant for c in chunks)
    assert chunks[1].text == f"shared refund rules for {tenant.strip().lower()}"
    assert await store.count_chunks(scope) == 2
    assert [d.tenant_id for d in await store.list_documents(scope)] == [tenant]
    vectors = await store.chunk_vectors(scope, ["g1", "c1"])
    assert not vectors[0].any() and vectors[1].any()
    assert set(await store.document_hashes(tenant)) == {"/docs/a.md"}


async def test_exact_vector_of_other_tenant_is_not_found(two_tenants: SQLiteStore) -> None:
    vec = await query_vector("globex secret merger plan")
    hits = await two_tenants.vector_search(Scope("acme"), vec, [], 1)
    assert hits and hits[0][0] != "g1"
    hits = await two_tenants.vector_search(Scope("globex"), vec, [], 1)
    assert hits[0][0] == "g1" and hits[0][1] == pytest.approx(1.0, abs=1e-5)


async def test_unknown_tenant_sees_nothing(two_tenants: SQLiteStore) -> None:
    scope = Scope("initech")
    assert await two_tenants.keyword_search(scope, "shared", [], 10) == []
    assert await two_tenants.vector_search(scope, await query_vector("shared"), [], 10) == []
    assert await two_tenants.get_chunks(scope, ["c1", "c2", "g1"]) == []
    assert await two_tenants.count_chunks(scope) == 0
    assert await two_tenants.list_documents(scope) == []


async def test_deleting_in_one_tenant_keeps_the_other(two_tenants: SQLiteStore) -> None:
    assert await two_tenants.delete_documents("acme", ["/docs/a.md"]) == 1
    assert await two_tenants.count_chunks(Scope("acme")) == 0
    assert await keyword_ids(two_tenants, Scope("acme"), "shared") == set()
    assert await keyword_ids(two_tenants, Scope("globex"), "shared") == {"c1", "c2"}
    assert await keyword_ids(two_tenants, Scope("Acme"), "shared") == {"c1", "c2"}


# -- ACLs -----------------------------------------------------------------------------------

ACLS: dict[str, tuple[str, ...]] = {
    "pub": (PUBLIC,),
    "team_a": ("team-a",),
    "a_or_b": ("team-a", "team-b"),
    "alice": ("alice",),
    "pub_and_a": (PUBLIC, "team-a"),
    "nobody": (),
}
STATUS = {
    "pub": "open",
    "team_a": "open",
    "a_or_b": "closed",
    "alice": "open",
    "pub_and_a": "closed",
    "nobody": "open",
}


@pytest.fixture
async def acl_store(store: SQLiteStore) -> SQLiteStore:
    chunks = [
        make_chunk(
            "t",
            cid,
            f"budget forecast {cid}",
            source=f"/docs/{cid}.md",
            acl=acl,
            metadata={"status": STATUS[cid]},
        )
        for cid, acl in ACLS.items()
    ]
    vectors = await EMBEDDER.embed([c.text for c in chunks])
    await store.replace_documents(
        "t",
        [(record("t", c.source_id, [c]), [c], vectors[i : i + 1]) for i, c in enumerate(chunks)],
    )
    # Another tenant holding the same principals must not matter.
    await put(
        store, "u", "/docs/u.md", [make_chunk("u", "team_a", "budget forecast u", acl=("team-a",))]
    )
    return store


@pytest.mark.parametrize(
    ("principals", "visible"),
    [
        (set(), {"pub", "pub_and_a"}),
        ({PUBLIC}, {"pub", "pub_and_a"}),
        ({"team-a"}, {"pub", "pub_and_a", "team_a", "a_or_b"}),
        ({"team-b"}, {"pub", "pub_and_a", "a_or_b"}),
        ({"alice", "team-b"}, {"pub", "pub_and_a", "a_or_b", "alice"}),
        ({"ALICE", "team"}, {"pub", "pub_and_a"}),
        ({"team-a", "team-b", "alice"}, {"pub", "pub_and_a", "team_a", "a_or_b", "alice"}),
    ],
)
async def test_acl_visibility_everywhere(
    acl_store: SQLiteStore, principals: set[str], visible: set[str]
) -> None:
    scope = Scope("t", frozenset(principals))
    assert await keyword_ids(acl_store, scope, "budget forecast") == visible
    assert await vector_ids(acl_store, scope, "budget forecast") == visible
    got = await acl_store.get_chunks(scope, list(ACLS))
    assert {c.id for c in got} == visible
    assert all(c.tenant_id == "t" for c in got)
    assert await acl_store.count_chunks(scope) == len(visible)
    vectors = await acl_store.chunk_vectors(scope, list(ACLS))
    assert {cid for cid, row in zip(ACLS, vectors, strict=True) if row.any()} == visible


@pytest.mark.parametrize(
    ("principals", "filters", "visible"),
    [
        ({PUBLIC}, ["status=open"], {"pub"}),
        ({"team-a"}, ["status=open"], {"pub", "team_a"}),
        ({"team-a"}, ["status=closed"], {"a_or_b", "pub_and_a"}),
        ({"team-b"}, ["status!=open"], {"a_or_b", "pub_and_a"}),
        ({"alice"}, ["status=open"], {"pub", "alice"}),
        ({"alice"}, ["source_id=/docs/team_a.md"], set()),
        ({"team-a"}, ["source_id=/docs/team_a.md|/docs/alice.md"], {"team_a"}),
    ],
)
async def test_filters_combined_with_acl(
    acl_store: SQLiteStore, principals: set[str], filters: list[str], visible: set[str]
) -> None:
    scope = Scope("t", frozenset(principals))
    parsed = [parse_filter(f) for f in filters]
    assert await keyword_ids(acl_store, scope, "budget forecast", parsed) == visible
    assert await vector_ids(acl_store, scope, "budget forecast", parsed) == visible


async def test_visibility_updates_when_a_public_tenant_gets_restricted_chunks(
    store: SQLiteStore,
) -> None:
    """Searches on an all-public tenant take a fast path; it must notice a later write."""
    public = Scope("t")
    await put(
        store, "t", "/docs/p.md", [make_chunk("t", "p", "lighthouse keeper", source="/docs/p.md")]
    )
    assert await keyword_ids(store, public, "lighthouse") == {"p"}
    assert await vector_ids(store, public, "lighthouse") == {"p"}

    await put(
        store,
        "t",
        "/docs/r.md",
        [make_chunk("t", "r", "lighthouse secret", source="/docs/r.md", acl=("crew",))],
    )
    assert await keyword_ids(store, public, "lighthouse secret") == {"p"}
    assert await vector_ids(store, public, "lighthouse secret") == {"p"}
    crew = Scope("t", frozenset({"crew"}))
    assert await keyword_ids(store, crew, "lighthouse") == {"p", "r"}
    assert await vector_ids(store, crew, "lighthouse") == {"p", "r"}

    # Re-publishing the same document with a public ACL opens it up again.
    await put(
        store, "t", "/docs/r.md", [make_chunk("t", "r", "lighthouse secret", source="/docs/r.md")]
    )
    assert await keyword_ids(store, public, "lighthouse") == {"p", "r"}
    assert await vector_ids(store, public, "lighthouse") == {"p", "r"}


async def test_two_store_handles_see_each_others_writes(tmp_path: Path) -> None:
    """The in-memory vector index must not serve stale rows after another handle writes."""
    path = tmp_path / "shared.db"
    one = SQLiteStore(path, embed_model=EMBEDDER.model_id, dim=EMBEDDER.dim)
    two = SQLiteStore(path, embed_model=EMBEDDER.model_id, dim=EMBEDDER.dim)
    try:
        await put(one, "t", "/docs/a.md", [make_chunk("t", "a", "pelican")])
        assert await vector_ids(two, Scope("t"), "pelican") == {"a"}
        await put(one, "t", "/docs/a.md", [make_chunk("t", "a", "pelican", acl=("crew",))])
        assert await vector_ids(two, Scope("t"), "pelican") == set()
        assert await keyword_ids(two, Scope("t"), "pelican") == set()
        await one.delete_documents("t", ["/docs/a.md"])
        assert await vector_ids(two, Scope("t", frozenset({"crew"})), "pelican") == set()
    finally:
        await one.close()
        await two.close()
