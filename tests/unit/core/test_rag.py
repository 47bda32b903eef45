"""`rag.answer` end to end on a real SQLite store filled from tests/fixtures/docs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.citations import cited_ids
from tether.errors import InvalidQuestion, TenantRequired
from tether.indexer import ingest_paths
from tether.models.extractive import DECLINE_TEXT, ExtractiveOptions
from tether.models.fake import HashEmbedder
from tether.rag import AnswerConfig, AnswerResult, answer, check_question
from tether.retrieval.pack import PackOptions
from tether.store.filters import parse_filter
from tether.store.protocol import Scope
from tether.store.sqlite import SQLiteStore
from tether.tokens import TiktokenCounter

DOCS = Path(__file__).resolve().parents[2] / "fixtures" / "docs"
TENANT = "default"
SCOPE = Scope(TENANT)
EMBEDDER = HashEmbedder(dim=256)
ANSWERABLE = "Why does the nightly backup job fail on the replica?"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteStore]:
    path = tmp_path_factory.mktemp("rag") / "t.db"
    db = SQLiteStore(path, embed_model=EMBEDDER.model_id, dim=EMBEDDER.dim)

    async def fill() -> None:
        report = await ingest_paths([DOCS], store=db, embedder=EMBEDDER, tenant_id=TENANT)
        assert report.count("failed") == 0, report
        assert report.count("ok") >= 8
        private = await ingest_paths(
            [DOCS / "guide.md"], store=db, embedder=EMBEDDER, tenant_id="acme", acl=["alice"]
        )
        assert private.count("ok") == 1

    asyncio.run(fill())
    yield db
    asyncio.run(db.close())


async def _ask(store: SQLiteStore, question: str, **kwargs: object) -> AnswerResult:
    options: dict[str, object] = {"scope": SCOPE, **kwargs}
    return await answer(question, store=store, embedder=EMBEDDER, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("question", ["", "   ", "\n\t "])
async def test_empty_question_is_rejected(store: SQLiteStore, question: str) -> None:
    with pytest.raises(InvalidQuestion, match="empty"):
        await _ask(store, question)


async def test_over_long_question_is_rejected(store: SQLiteStore) -> None:
    config = AnswerConfig(max_question_chars=40)
    with pytest.raises(InvalidQuestion, match="41 characters; the limit is 40"):
        await _ask(store, "x" * 41, config=config)


async def test_default_limit_is_2000_characters(store: SQLiteStore) -> None:
    with pytest.raises(InvalidQuestion):
        await _ask(store, "backup " * 300)


def test_check_question_strips_before_measuring() -> None:
    assert check_question("  " + "y" * 10 + "  \n", 10) == "y" * 10
    with pytest.raises(InvalidQuestion):
        check_question("y" * 11, 10)


async def test_rejected_question_never_reaches_the_embedder(store: SQLiteStore) -> None:
    embedder = HashEmbedder(dim=256)
    with pytest.raises(InvalidQuestion):
        await answer("", store=store, embedder=embedder, scope=SCOPE)
    assert embedder.calls == 0


async def test_answerable_question_cites_only_its_context(store: SQLiteStore) -> None:
    result = await _ask(store, ANSWERABLE)
    assert not result.answer.declined
    assert result.answer.citations
    context_ids = {item.chunk.id for item in result.context}
    retrieved_ids = {item.chunk.id for item in result.retrieved}
    assert context_ids <= retrieved_ids
    assert {c.chunk_id for c in result.answer.citations} <= context_ids
    assert set(cited_ids(result.answer.summary)) <= context_ids
    assert any(c.source_id.endswith("tickets.jsonl") for c in result.answer.citations)
    assert 0.0 < result.answer.confidence <= 1.0
    assert set(result.timings_ms) == {"retrieve", "pack", "answer", "total"}


async def test_with_no_decline_threshold_every_answer_cites_its_context(store: SQLiteStore) -> None:
    config = AnswerConfig(extractive=ExtractiveOptions(decline_threshold=0.0))
    for question in (
        "How do I install tether from source?",
        "Which Python files define the store?",
        "What does the oat milk cost?",
    ):
        result = await _ask(store, question, config=config)
        assert not result.answer.declined, question
        context_ids = {item.chunk.id for item in result.context}
        assert {c.chunk_id for c in result.answer.citations} <= context_ids
        assert set(cited_ids(result.answer.summary)) <= context_ids


async def test_retrieval_respects_k_and_the_context_budget(store: SQLiteStore) -> None:
    config = AnswerConfig(k=5, packing=PackOptions(max_tokens=200, per_source_cap=2))
    result = await _ask(store, ANSWERABLE, config=config)
    assert 0 < len(result.retrieved) <= 5
    counter = TiktokenCounter()
    assert sum(counter.count(item.chunk.text) for item in result.context) <= 200
    sources = [item.chunk.source_id for item in result.context]
    assert all(sources.count(s) <= 2 for s in sources)


async def test_kind_filter_restricts_retrieved_chunks(store: SQLiteStore) -> None:
    result = await _ask(store, "What does the oat milk cost?", filters=[parse_filter("kind=table")])
    assert result.retrieved
    assert {item.chunk.kind for item in result.retrieved} == {"table"}
    assert all(item.chunk.source_id.endswith("prices.csv") for item in result.retrieved)
    # Only 4 table chunks exist, so without the filter the top 8 must hold other kinds.
    unfiltered = await _ask(store, "What does the oat milk cost?")
    assert {item.chunk.kind for item in unfiltered.retrieved} - {"table"}


async def test_metadata_filter_restricts_retrieved_chunks(store: SQLiteStore) -> None:
    question = "Which tickets are about failing jobs or tests?"
    result = await _ask(store, question, filters=[parse_filter("status=open")])
    assert result.retrieved
    assert {item.chunk.metadata.get("status") for item in result.retrieved} == {"open"}
    assert {c.chunk_id for c in result.answer.citations} <= {i.chunk.id for i in result.context}
    both = await _ask(
        store, question, filters=[parse_filter("status=open"), parse_filter("kind=text")]
    )
    assert both.retrieved == []


async def test_filter_matching_nothing_declines(store: SQLiteStore) -> None:
    result = await _ask(store, ANSWERABLE, filters=[parse_filter("kind=nonexistent")])
    assert result.retrieved == [] and result.context == []
    assert result.answer.declined
    assert result.answer.summary == DECLINE_TEXT
    assert result.answer.citations == []


async def test_other_tenant_sees_nothing(store: SQLiteStore) -> None:
    result = await _ask(store, ANSWERABLE, scope=Scope("other"))
    assert result.retrieved == []
    assert result.answer.declined and result.answer.citations == []


async def test_acl_hides_private_chunks_from_the_public_principal(store: SQLiteStore) -> None:
    question = "How do I install tether from source?"
    public = await _ask(store, question, scope=Scope("acme"))
    assert public.retrieved == []
    alice = await _ask(
        store,
        question,
        scope=Scope("acme", frozenset({"alice"})),
        config=AnswerConfig(extractive=ExtractiveOptions(decline_threshold=0.0)),
    )
    assert alice.retrieved
    assert all(item.chunk.tenant_id == "acme" for item in alice.retrieved)
    assert all("alice" in item.chunk.acl for item in alice.retrieved)


def test_scope_without_tenant_is_refused() -> None:
    with pytest.raises(TenantRequired):
        Scope("")
    with pytest.raises(TenantRequired):
        Scope("   ")
