"""Keyword search on hostile user text: query words in, FTS5-indexed terms out, never an error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.lexical import query_terms
from tether.models.fake import HashEmbedder
from tether.store.protocol import DocumentRecord, Scope
from tether.store.sqlite import SQLiteStore
from tether.types import Chunk

TENANT = "fts-tenant"
SCOPE = Scope(TENANT)
TEXTS = {
    "k1": "alpha bravo charlie near the harbour",
    "k2": "delta echo foxtrot col term",
    "k3": "or and not near star minus quote",
    "k4": "café naïve 東京 tokyo 2024 x",
}

HOSTILE = [
    '"',
    '""',
    '"alpha',
    'alpha"',
    'al"pha',
    "*",
    "alpha*",
    "*alpha",
    "NEAR(",
    "NEAR(alpha bravo",
    "NEAR(alpha bravo, 2)",
    "alpha NEAR bravo",
    "OR",
    "AND",
    "NOT",
    "alpha OR",
    "OR alpha",
    "alpha AND NOT",
    "-alpha",
    "alpha -bravo",
    "--",
    "col:term",
    "title:alpha",
    "text : delta",
    "{title text}: alpha",
    "(",
    ")",
    "(alpha",
    "alpha)",
    "((alpha OR bravo)",
    "^alpha",
    "alpha + bravo",
    "'; DROP TABLE chunks; --",
    "\x00alpha",
    "alpha\nbravo\tcharlie",
    "\\",
    "%_",
    "a",
    "the and of",
]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    db = await _make_store(tmp_path)
    yield db
    await db.close()


async def _make_store(tmp_path: Path) -> SQLiteStore:
    embedder = HashEmbedder()
    db = SQLiteStore(tmp_path / "fts.db", embed_model=embedder.model_id, dim=embedder.dim)
    chunks = [
        Chunk(id=cid, source_id=f"/src/{cid}", tenant_id=TENANT, text=text)
        for cid, text in TEXTS.items()
    ]
    vectors = await embedder.embed([c.text for c in chunks])
    await db.replace_documents(
        TENANT,
        [
            (
                DocumentRecord(TENANT, c.source_id, c.id, c.id, 1, datetime.now(UTC)),
                [c],
                vectors[i : i + 1],
            )
            for i, c in enumerate(chunks)
        ],
    )
    return db


def test_query_terms_fold_dedupe_and_drop_syntax() -> None:
    assert query_terms("Alpha bravo") == ["alpha", "bravo"]
    assert query_terms("alpha ALPHA alpha") == ["alpha"]
    assert query_terms('NEAR("alpha" bravo*)') == ["near", "alpha", "bravo"]
    assert query_terms("col:term -x") == ["col", "term"]


@pytest.mark.parametrize("text", ["", "   ", "the", "The AND of", "a i", "?!.,", '"" * ( )'])
def test_empty_or_stopwords_only_gives_no_terms(text: str) -> None:
    assert query_terms(text) == []


def test_single_digits_are_kept_single_letters_dropped() -> None:
    assert query_terms("x 7 y") == ["7"]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_yields_plain_word_terms(text: str) -> None:
    for term in query_terms(text):
        assert term.isalnum() or "_" in term
        assert term == term.lower()
        # Each term is itself a plain, non-stopword term: the mapping is a fixpoint.
        assert query_terms(term) == [term]


@pytest.mark.parametrize("text", HOSTILE)
async def test_hostile_text_searches_without_error(store: SQLiteStore, text: str) -> None:
    results = await store.keyword_search(SCOPE, text, [], 10)
    assert {cid for cid, _ in results} <= set(TEXTS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NEAR(alpha bravo", {"k1", "k3"}),
        ("-delta", {"k2"}),
        ("col:term", {"k2"}),
        ('"charlie', {"k1"}),
        ("foxtrot*", {"k2"}),
        ("(echo OR", {"k2"}),
        ("tokyo", {"k4"}),
        ("2024", {"k4"}),
        ("CAFÉ", {"k4"}),
    ],
)
async def test_hostile_text_still_finds_its_words(
    store: SQLiteStore, text: str, expected: set[str]
) -> None:
    assert {cid for cid, _ in await store.keyword_search(SCOPE, text, [], 10)} == expected


@pytest.mark.parametrize("text", ["", "  ", "the of and", "***", '"'])
async def test_empty_expression_returns_nothing(store: SQLiteStore, text: str) -> None:
    assert await store.keyword_search(SCOPE, text, [], 10) == []


def test_random_text_never_breaks_a_real_search(tmp_path: Path) -> None:
    """Arbitrary unicode, FTS5 operators and punctuation: keyword_search never raises."""
    db = asyncio.run(_make_store(tmp_path))
    fragments = st.sampled_from(
        ['"', "*", "NEAR(", "NEAR", "OR", "AND", "NOT", "-", ":", "(", ")", "^", "+", "{", "}"]
    )
    words = st.sampled_from(["alpha", "bravo", "delta", "col", "term", "the", "x", "7"])
    texts = st.one_of(
        st.text(max_size=60),
        st.lists(st.one_of(fragments, words, st.text(max_size=5)), max_size=12).map(" ".join),
        st.lists(st.one_of(fragments, words), max_size=12).map("".join),
    )

    @settings(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(texts)
    def check(text: str) -> None:
        results = asyncio.run(db.keyword_search(SCOPE, text, [], 10))
        assert {cid for cid, _ in results} <= set(TEXTS)
        if not query_terms(text):
            assert results == []

    try:
        check()
    finally:
        asyncio.run(db.close())
