"""Per-case answer scoring against hand-built cases and results."""

from __future__ import annotations

import math

import pytest

from tether.evals.answers import score_case, support, token_f1
from tether.evals.datasets import AnswerCase, Passage
from tether.rag import AnswerResult
from tether.types import Answer, Chunk, Citation, ScoredChunk

PASSAGE = (
    "The Berlin Wall fell on 9 November 1989. Crowds crossed the border that night. "
    "Demolition began in June 1990."
)
CA, CB = "c00000000000000a", "c00000000000000b"
OTHER = "Cold feet is a British comedy-drama series first broadcast in 1997."


def chunk(cid: str, text: str, source: str) -> ScoredChunk:
    return ScoredChunk(chunk=Chunk(id=cid, source_id=source, tenant_id="t", text=text), score=1.0)


def case(answerable: bool = True) -> AnswerCase:
    return AnswerCase(
        id="q1",
        question="When did the Berlin Wall fall?",
        passages=[Passage(id="q1-0", text=PASSAGE)],
        answerable=answerable,
        answers=["The Berlin Wall fell on 9 November 1989."] if answerable else [],
        gold_sentences=["The Berlin Wall fell on 9 November 1989 ."] if answerable else [],
    )


def result(summary: str, cited: list[str], declined: bool = False) -> AnswerResult:
    retrieved = [chunk(CA, PASSAGE, "passage:q1-0"), chunk(CB, OTHER, "passage:q2-0")]
    return AnswerResult(
        answer=Answer(
            summary=summary,
            citations=[Citation(chunk_id=c, source_id="s") for c in cited],
            confidence=0.9,
            declined=declined,
        ),
        retrieved=retrieved,
        context=retrieved,
    )


def test_token_f1_is_squad_f1() -> None:
    assert token_f1("The Berlin Wall fell", "the berlin wall fell.") == 1.0
    assert token_f1("wall fell", "the berlin wall fell") == pytest.approx(
        2 * 1 * 2 / 3 / (1 + 2 / 3)
    )
    assert token_f1("nothing here", "berlin wall") == 0.0


def test_support_is_the_share_of_content_words_in_the_evidence() -> None:
    assert support("The wall fell in 1989", PASSAGE) == 1.0
    assert support("The wall was painted blue", PASSAGE) == pytest.approx(1 / 3)
    assert math.isnan(support("the of and", PASSAGE))


def test_a_correct_cited_answer_scores_well() -> None:
    score = score_case(
        case(), result(f"The Berlin Wall fell on 9 November 1989 [{CA}].", [CA]), latency_ms=5
    )
    assert score.citation_precision == 1.0 and score.faithfulness == 1.0
    assert score.citation_recall == 1.0 and score.answer_f1 == 1.0
    assert score.decline_correct == 1.0 and score.retrieval_hit == 1.0


def test_citing_the_wrong_chunk_costs_precision_recall_and_faithfulness() -> None:
    score = score_case(
        case(), result(f"The Berlin Wall fell on 9 November 1989 [{CB}].", [CB]), latency_ms=5
    )
    assert score.citation_precision == 0.0 and score.faithfulness == 0.0
    assert score.citation_recall == 0.0
    assert score.answer_f1 == 1.0  # the words are right; the evidence is not


def test_declining_an_unanswerable_case_is_correct_and_has_no_precision() -> None:
    score = score_case(
        case(answerable=False), result("I cannot answer.", [], declined=True), latency_ms=5
    )
    assert score.decline_correct == 1.0
    assert math.isnan(score.citation_precision) and math.isnan(score.answer_f1)
    wrong = score_case(
        case(answerable=True), result("I cannot answer.", [], declined=True), latency_ms=5
    )
    assert wrong.decline_correct == 0.0 and wrong.answer_f1 == 0.0 and wrong.citation_recall == 0.0


def test_a_failed_case_counts_against_the_system() -> None:
    score = score_case(case(), None, latency_ms=5, error="Timeout")
    assert score.schema_valid == 0.0 and score.decline_correct == 0.0 and score.error == "Timeout"


async def test_an_llm_judge_scores_faithfulness_sentence_by_sentence() -> None:
    import json as _json

    from tether.evals.judge import judged_faithfulness
    from tether.models.chat import ChatRequest, ChatResponse
    from tether.models.fake import FakeChatModel

    seen: list[ChatRequest] = []

    def judge(request: ChatRequest) -> ChatResponse:
        seen.append(request)
        text = request.messages[-1].content
        supported = "1989" in text.split("<sentence>")[1] and "1989" in text.split("<sentence>")[0]
        return ChatResponse(text=_json.dumps({"supported": supported, "reason": "checked"}))

    model = FakeChatModel([], responder=judge)
    answered = result(
        f"The wall fell in 1989 [{CA}]. It was painted blue in 1990 [{CB}].", [CA, CB]
    )
    assert await judged_faithfulness(model, answered) == 0.5
    assert len(seen) == 2
    assert "Rubric:" in seen[0].messages[0].content  # the versioned judge prompt
    assert math.isnan(await judged_faithfulness(model, result("No.", [], declined=True)))
