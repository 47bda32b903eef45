"""Property: whatever is stored and whoever asks, results stay inside the caller's tenant
and ACL. Checked through retrieve() (hybrid), keyword_search, vector_search, get_chunks
and count_chunks, after random writes, replacements and deletions."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.models.fake import HashEmbedder
from tether.retrieval.retrieve import RetrievalConfig, retrieve
from tether.store.protocol import DocumentRecord, Scope
from tether.store.sqlite import SQLiteStore
from tether.types import PUBLIC, Chunk

TENANTS = ["acme", "Acme", "globex", "acme ", "initech"]
PRINCIPALS = ["alice", "bob", "team-a", "team-b"]
# Stable under the porter stemmer and not stopwords, so "contains the word" is exact.
VOCAB = ["harbor", "invoice", "kestrel", "lantern", "meadow", "pepper", "quartz", "walrus"]
EMBEDDER = HashEmbedder()


@dataclass(frozen=True)
class Doc:
    tenant: str
    source: str
    #: (chunk id, words, acl) per chunk; ids repeat across tenants on purpose.
    chunks: tuple[tuple[str, tuple[str, ...], frozenset[str]], ...]


acls = st.frozensets(st.sampled_from([PUBLIC, *PRINCIPALS]), max_size=3)
texts = st.lists(st.sampled_from(VOCAB), min_size=1, max_size=5).map(tuple)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Doc], list[str], str, Scope]:
    tenants = draw(st.lists(st.sampled_from(TENANTS), min_size=1, max_size=4, unique=True))
    docs: list[Doc] = []
    for tenant in tenants:
        n_docs = draw(st.integers(1, 3))
        next_id = itertools.count()
        for d in range(n_docs):
            chunks = tuple(
                (f"c{next(next_id)}", draw(texts), draw(acls))
                for _ in range(draw(st.integers(1, 3)))
            )
            docs.append(Doc(tenant, f"/docs/{d}.md", chunks))
    # Some documents are deleted again after everything is written.
    deleted = draw(
        st.lists(st.sampled_from([f"{d.tenant}\x00{d.source}" for d in docs]), max_size=2)
    )
    query = " ".join(
        draw(
            st.lists(
                st.sampled_from([*VOCAB, "the", "NEAR(", '"', "zebra"]), min_size=1, max_size=4
            )
        )
    )
    caller = Scope(
        draw(st.sampled_from([*tenants, "umbrella"])),
        draw(st.frozensets(st.sampled_from(PRINCIPALS), max_size=3)),
    )
    return docs, deleted, query, caller


def test_results_stay_in_tenant_and_acl(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "prop.db", embed_model=EMBEDDER.model_id, dim=EMBEDDER.dim)
    examples = itertools.count()

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(scenarios())
    def check(scenario: tuple[list[Doc], list[str], str, Scope]) -> None:
        # Fresh tenant names per example keep examples independent in one store.
        prefix = f"ex{next(examples)}/"
        asyncio.run(_check(store, prefix, *scenario))

    try:
        check()
    finally:
        asyncio.run(store.close())


async def _check(
    store: SQLiteStore, prefix: str, docs: list[Doc], deleted: list[str], query: str, caller: Scope
) -> None:
    stored: dict[tuple[str, str], Chunk] = {}
    for doc in docs:
        tenant = prefix + doc.tenant
        source = prefix + doc.source  # same source ids in every tenant
        chunks = [
            Chunk(
                id=cid,
                source_id=source,
                tenant_id=tenant,
                text=" ".join(words),
                position=i,
                acl=tuple(acl),
            )
            for i, (cid, words, acl) in enumerate(doc.chunks)
        ]
        vectors = await EMBEDDER.embed([c.text for c in chunks])
        rec = DocumentRecord(tenant, source, "t", "h", len(chunks), datetime.now(UTC))
        await store.replace_documents(tenant, [(rec, chunks, vectors)])
        stored.update({(tenant, c.id): c for c in chunks})
    for key in set(deleted):
        tenant, source = key.split("\x00")
        await store.delete_documents(prefix + tenant, [prefix + source])
        for k in [
            k
            for k, c in stored.items()
            if k[0] == prefix + tenant and c.source_id == prefix + source
        ]:
            del stored[k]

    scope = Scope(prefix + caller.tenant_id, caller.principals)
    allowed = scope.principals

    def may_see(chunk: Chunk) -> bool:
        return chunk.tenant_id == scope.tenant_id and bool(set(chunk.acl) & allowed)

    visible = {
        cid: c for (tenant, cid), c in stored.items() if tenant == scope.tenant_id and may_see(c)
    }
    all_ids = sorted({cid for _, cid in stored})
    query_words = {w.lower() for w in query.split()} & set(VOCAB)

    # keyword: exactly the visible chunks sharing a query word.
    keyword = await store.keyword_search(scope, query, [], 1000)
    expected_keyword = {cid for cid, c in visible.items() if set(c.text.split()) & query_words}
    assert {cid for cid, _ in keyword} == expected_keyword

    # dense: every visible chunk has a finite score, nothing else comes back.
    vector = np.asarray((await EMBEDDER.embed([query], kind="query"))[0])
    dense = await store.vector_search(scope, vector, [], 1000)
    assert {cid for cid, _ in dense} == set(visible)
    assert len(dense) == len(visible)

    # get_chunks, asked for every id of every tenant: the visible ones, with this tenant's text.
    got = await store.get_chunks(scope, all_ids)
    assert {c.id for c in got} == set(visible)
    for chunk in got:
        assert may_see(chunk)
        assert chunk.text == visible[chunk.id].text
        assert set(chunk.acl) == set(visible[chunk.id].acl)

    assert await store.count_chunks(scope) == len(visible)

    for mode in ("hybrid", "bm25", "dense"):
        results = await retrieve(
            store, EMBEDDER, query, scope=scope, k=50, config=RetrievalConfig(mode=mode)
        )
        ids = [r.chunk.id for r in results]
        assert len(ids) == len(set(ids))
        for r in results:
            assert may_see(r.chunk)
            assert r.chunk.text == visible[r.chunk.id].text
        if mode != "bm25":
            assert set(ids) == set(visible) or len(ids) == 50
