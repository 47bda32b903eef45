"""`rag.answer` with a ChatModel: qa.answer prompt, structured output, citation repair."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.indexer import ingest_paths
from tether.models.extractive import DECLINE_TEXT
from tether.models.fake import FakeChatModel, HashEmbedder
from tether.rag import AnswerConfig, AnswerResult, answer
from tether.store.protocol import Scope
from tether.store.sqlite import SQLiteStore

DOCS = Path(__file__).resolve().parents[2] / "fixtures" / "docs"
EMBEDDER = HashEmbedder(dim=256)
SCOPE = Scope("default")
QUESTION = "Why does the nightly backup job fail on the replica?"
UNKNOWN = "cffffffffffffff0"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteStore]:
    db = SQLiteStore(
        tmp_path_factory.mktemp("rag-llm") / "t.db", embed_model=EMBEDDER.model_id, dim=EMBEDDER.dim
    )
    asyncio.run(ingest_paths([DOCS], store=db, embedder=EMBEDDER, tenant_id="default"))
    yield db
    asyncio.run(db.close())


def reply(answer: str, cited: list[str], declined: bool = False, confidence: float = 0.8) -> str:
    return json.dumps(
        {"answer": answer, "cited_ids": cited, "declined": declined, "confidence": confidence}
    )


async def ask(store: SQLiteStore, model: FakeChatModel, question: str = QUESTION) -> AnswerResult:
    return await answer(
        question, store=store, embedder=EMBEDDER, scope=SCOPE, model=model, config=AnswerConfig(k=4)
    )


async def context_ids(store: SQLiteStore) -> list[str]:
    probe = FakeChatModel([reply(DECLINE_TEXT, [], declined=True)])
    return [c.chunk.id for c in (await ask(store, probe)).context]


async def test_a_grounded_answer_keeps_its_citations(store: SQLiteStore) -> None:
    ids = await context_ids(store)
    model = FakeChatModel([reply(f"The disk fills up [{ids[0]}].", [ids[0]])])
    result = await ask(store, model)
    assert not result.answer.declined and result.answer.flags == []
    assert [c.chunk_id for c in result.answer.citations] == [ids[0]]
    assert result.usage is not None and result.usage.output_tokens > 0
    request = model.requests[0]
    assert request.messages[0].role == "system" and "<sources>" in request.messages[1].content
    wire = request.response_format.json_schema  # type: ignore[union-attr]
    assert set(wire["properties"]["cited_ids"]["items"]["enum"]) == set(ids)


async def test_unknown_citations_are_repaired(store: SQLiteStore) -> None:
    ids = await context_ids(store)
    model = FakeChatModel(
        [
            reply(f"It fails [{UNKNOWN}].", [UNKNOWN]),
            reply(f"It fails [{ids[1]}].", [ids[1]]),
        ]
    )
    result = await ask(store, model)
    assert len(model.requests) == 2
    assert UNKNOWN in model.requests[1].messages[-1].content
    assert [c.chunk_id for c in result.answer.citations] == [ids[1]]
    assert result.answer.flags == []


async def test_unknown_citations_left_after_repair_are_dropped_and_flagged(
    store: SQLiteStore,
) -> None:
    ids = await context_ids(store)
    stubborn = reply(f"It fails [{ids[0]}]. Also this [{UNKNOWN}].", [ids[0], UNKNOWN])
    result = await ask(store, FakeChatModel([stubborn] * 3))
    assert [c.chunk_id for c in result.answer.citations] == [ids[0]]
    assert UNKNOWN not in result.answer.summary and ids[0] in result.answer.summary
    assert any(UNKNOWN in flag for flag in result.answer.flags)


async def test_an_answer_citing_nothing_valid_becomes_a_flagged_decline(
    store: SQLiteStore,
) -> None:
    result = await ask(store, FakeChatModel([reply(f"Made up [{UNKNOWN}].", [UNKNOWN])] * 3))
    assert result.answer.declined and result.answer.citations == []
    assert result.answer.summary == DECLINE_TEXT and len(result.answer.flags) == 2


async def test_a_declined_reply_is_a_decline(store: SQLiteStore) -> None:
    result = await ask(
        store, FakeChatModel([reply(DECLINE_TEXT, [], declined=True, confidence=0.9)])
    )
    assert result.answer.declined and result.answer.confidence == pytest.approx(0.9)


async def test_no_context_means_no_model_call(store: SQLiteStore) -> None:
    model = FakeChatModel([])
    result = await answer(
        QUESTION, store=store, embedder=EMBEDDER, scope=Scope("empty-tenant"), model=model
    )
    assert result.answer.declined and model.requests == []
