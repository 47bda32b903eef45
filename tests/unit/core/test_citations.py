"""Citation discipline: `verify` only lets through answers citing their own context."""

from __future__ import annotations

import pytest

from tether.citations import cited_ids, verify
from tether.errors import CitationError
from tether.types import Answer, Citation

A = "c" + "a" * 15
B = "c" + "b" * 15
C = "c" + "0123456789abcde"
OUTSIDE = "c" + "f" * 15


def _citation(chunk_id: str) -> Citation:
    return Citation(chunk_id=chunk_id, source_id="src")


def test_valid_answer_is_returned_unchanged() -> None:
    answer = Answer(
        summary=f"First [{A}]. Second [{B}].",
        citations=[_citation(A), _citation(B)],
        confidence=0.8,
    )
    assert verify(answer, [A, B, C]) is answer


def test_summary_tag_outside_context_is_rejected() -> None:
    answer = Answer(
        summary=f"Claim [{A}]. Other [{OUTSIDE}].", citations=[_citation(A)], confidence=0.8
    )
    with pytest.raises(CitationError, match=OUTSIDE):
        verify(answer, [A, B])


def test_citation_object_outside_context_is_rejected() -> None:
    answer = Answer(
        summary=f"Claim [{A}].", citations=[_citation(A), _citation(OUTSIDE)], confidence=0.8
    )
    with pytest.raises(CitationError, match=OUTSIDE):
        verify(answer, [A, B])


def test_stray_citation_rejected_even_when_declined() -> None:
    answer = Answer(
        summary="The sources do not answer this.",
        citations=[_citation(OUTSIDE)],
        confidence=0.1,
        declined=True,
    )
    with pytest.raises(CitationError):
        verify(answer, [A])


def test_empty_context_rejects_any_citation() -> None:
    answer = Answer(summary=f"Claim [{A}].", citations=[_citation(A)], confidence=0.9)
    with pytest.raises(CitationError):
        verify(answer, [])


def test_non_declined_answer_without_citations_is_rejected() -> None:
    answer = Answer(summary="Confident but unsupported.", confidence=0.9)
    with pytest.raises(CitationError, match="at least one"):
        verify(answer, [A, B])


def test_non_declined_answer_with_only_inline_tags_is_rejected() -> None:
    # An inline tag is not a citation: the citation list is what callers render.
    answer = Answer(summary=f"Claim [{A}].", confidence=0.9)
    with pytest.raises(CitationError):
        verify(answer, [A])


def test_declined_answer_without_citations_is_accepted() -> None:
    answer = Answer(summary="The sources do not answer this.", confidence=0.2, declined=True)
    assert verify(answer, []) is answer
    assert verify(answer, [A]) is answer


def test_cited_ids_keeps_first_seen_order_and_dedupes() -> None:
    text = f"x [{B}] y [{A}] z [{B}] w [{C}] v [{A}]"
    assert cited_ids(text) == [B, A, C]


@pytest.mark.parametrize(
    "text",
    [
        "no tags here",
        "[cAAAAAAAAAAAAAAA]",  # upper-case hex is not an id
        "[c0123]",  # too short
        f"[{A}0]",  # too long
        "[d" + "a" * 15 + "]",  # wrong prefix
        A,  # no brackets
    ],
)
def test_cited_ids_ignores_non_tags(text: str) -> None:
    assert cited_ids(text) == []


def test_cited_ids_finds_adjacent_tags() -> None:
    assert cited_ids(f"claim [{A}][{B}].") == [A, B]
