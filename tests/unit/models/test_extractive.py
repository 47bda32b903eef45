"""The extractive answerer: cited evidence sentences, or a decline."""

from __future__ import annotations

import re

import pytest

from tether.citations import TAG, cited_ids, verify
from tether.ingest.ids import chunk_id
from tether.models.extractive import DECLINE_TEXT, ExtractiveOptions, extractive_answer
from tether.models.fake import HashEmbedder
from tether.types import Chunk, ScoredChunk

# Wide enough that unrelated words practically never share a bucket.
EMBEDDER = HashEmbedder(dim=4096)


def scored(
    text: str,
    *,
    source: str = "doc.md",
    position: int = 0,
    title: str = "",
    section: str = "",
    page: int | None = None,
    score: float = 1.0,
) -> ScoredChunk:
    return ScoredChunk(
        chunk=Chunk(
            id=chunk_id(source, position, text),
            source_id=source,
            tenant_id="t",
            text=text,
            title=title,
            section=section,
            page=page,
        ),
        score=score,
    )


REFUNDS = scored(
    "Refunds are issued to the original payment card within five business days. "
    "Store credit is offered when the card has expired.",
    source="refunds.md",
    title="Refund policy",
    section="Payments > Refunds",
)
SHIPPING = scored(
    "Orders ship from the Rotterdam warehouse every weekday afternoon. "
    "Express shipping reaches most of Europe overnight.",
    source="shipping.md",
    page=4,
)
CONTEXT = [REFUNDS, SHIPPING]
CONTEXT_IDS = {item.chunk.id for item in CONTEXT}
_TAGGED_SUMMARY = re.compile(r"[^\[\]]+ \[c[0-9a-f]{15}\](?: [^\[\]]+ \[c[0-9a-f]{15}\])*")


async def test_answer_cites_only_context_chunks() -> None:
    answer = await extractive_answer(
        "How many business days until refunds are issued?", CONTEXT, EMBEDDER
    )
    assert not answer.declined
    assert answer.citations
    assert {c.chunk_id for c in answer.citations} <= CONTEXT_IDS
    assert set(cited_ids(answer.summary)) <= CONTEXT_IDS
    assert "five business days" in answer.summary
    assert verify(answer, CONTEXT_IDS) is answer
    assert 0.0 < answer.confidence <= 1.0


async def test_every_summary_sentence_carries_a_chunk_tag() -> None:
    answer = await extractive_answer(
        "When do orders ship from the warehouse and how fast is express shipping?",
        CONTEXT,
        EMBEDDER,
    )
    assert not answer.declined
    # The summary is "<sentence> [id]" pieces joined by spaces: no untagged text anywhere.
    assert _TAGGED_SUMMARY.fullmatch(answer.summary), answer.summary
    pieces = re.findall(r"[^\[\]]+ \[c[0-9a-f]{15}\]", answer.summary)
    assert len(pieces) == len(TAG.findall(answer.summary)) >= 1
    for piece in pieces:
        sentence = TAG.sub("", piece).strip()
        owner = next(i for i in CONTEXT if i.chunk.id == TAG.search(piece).group(1))  # type: ignore[union-attr]
        assert sentence in owner.chunk.text  # each sentence is tagged with its own chunk


async def test_citations_carry_source_metadata_and_a_quote_from_the_chunk() -> None:
    answer = await extractive_answer("Which warehouse do orders ship from?", CONTEXT, EMBEDDER)
    assert not answer.declined
    citation = answer.citations[0]
    assert citation.chunk_id == SHIPPING.chunk.id
    assert citation.source_id == "shipping.md"
    assert citation.page == 4
    assert citation.quote and citation.quote in SHIPPING.chunk.text
    assert f"{citation.quote} [{citation.chunk_id}]" in answer.summary


async def test_declines_when_the_question_shares_nothing_with_the_context() -> None:
    answer = await extractive_answer("Quantum chromodynamics lattice gluon?", CONTEXT, EMBEDDER)
    assert answer.declined is True
    assert answer.citations == []
    assert answer.summary == DECLINE_TEXT == "The sources do not answer this."
    assert cited_ids(answer.summary) == []
    assert 0.0 <= answer.confidence <= 1.0
    assert verify(answer, CONTEXT_IDS) is answer


async def test_empty_context_declines() -> None:
    answer = await extractive_answer("How are refunds issued?", [], EMBEDDER)
    assert answer.declined is True
    assert answer.citations == []
    assert answer.summary == DECLINE_TEXT
    assert answer.confidence == 0.0


async def test_context_with_only_short_fragments_declines() -> None:
    tiny = scored("Yes.\n\nNo.\n\nRefunds: 5 days.")
    answer = await extractive_answer("Refunds days?", [tiny], EMBEDDER)
    assert answer.declined


async def test_decline_threshold_is_respected() -> None:
    question = "How many business days until refunds are issued?"
    strict = await extractive_answer(
        question, CONTEXT, EMBEDDER, ExtractiveOptions(decline_threshold=1.01)
    )
    assert strict.declined and strict.citations == []
    lenient = await extractive_answer(
        question, CONTEXT, EMBEDDER, ExtractiveOptions(decline_threshold=0.0)
    )
    assert not lenient.declined


async def test_max_sentences_bounds_the_answer() -> None:
    many = scored(
        "Refunds are issued within five days. Refunds are issued to the card. "
        "Refunds are issued by the finance team. Refunds are issued after review. "
        "Refunds are issued in euros only."
    )
    answer = await extractive_answer(
        "refunds are issued",
        [many],
        EMBEDDER,
        ExtractiveOptions(max_sentences=2, relative_floor=0.0),
    )
    assert len(TAG.findall(answer.summary)) == 2
    # Two sentences from one chunk make one citation.
    assert len(answer.citations) == 1


async def test_repeated_sentences_are_not_repeated_in_the_answer() -> None:
    sentence = "Refunds are issued to the original payment card within five business days."
    a = scored(sentence, source="a.md")
    b = scored(sentence, source="b.md")
    answer = await extractive_answer("refunds issued within five business days", [a, b], EMBEDDER)
    assert answer.summary.count(sentence) == 1


async def test_heading_lines_are_not_answer_sentences() -> None:
    heading = "Configuring the embedding cache directory"
    text = (
        f"## {heading}\n\n"
        "Set TETHER_EMBED_CACHE to a file path to move the embedding cache directory elsewhere."
    )
    item = scored(text, title="Tether guide", section=f"Setup > {heading}")
    # The question is the heading itself, and relative_floor=0 lets every candidate in.
    answer = await extractive_answer(
        heading, [item], EMBEDDER, ExtractiveOptions(relative_floor=0.0)
    )
    assert not answer.declined
    assert heading not in answer.summary
    assert all(c.quote != heading and not c.quote.startswith("#") for c in answer.citations)
    assert "TETHER_EMBED_CACHE" in answer.summary


async def test_title_line_is_not_an_answer_sentence() -> None:
    title = "Warehouse operations handbook for Rotterdam"
    item = scored(
        f"{title}\n\nThe Rotterdam warehouse opens at six and closes at ten on weekdays.",
        title=title,
    )
    # relative_floor=0 lets every candidate in: the title line would show if it were one.
    answer = await extractive_answer(
        "When does the Rotterdam warehouse open on weekdays?",
        [item],
        EMBEDDER,
        ExtractiveOptions(relative_floor=0.0),
    )
    assert not answer.declined
    assert all(c.quote != title for c in answer.citations)
    assert title not in answer.summary
    assert "opens at six" in answer.summary


async def test_list_items_and_table_rows_stand_alone() -> None:
    item = scored(
        "Supported formats are listed below.\n"
        "- Markdown files keep their heading structure when chunked.\n"
        "- PDF files are read page by page with page numbers.\n\n"
        "| format | loader |\n|---|---|\n| spreadsheets in CSV | the table loader reads rows |"
    )
    answer = await extractive_answer(
        "Are PDF files read page by page?", [item], EMBEDDER, ExtractiveOptions(max_sentences=1)
    )
    assert not answer.declined
    quote = answer.citations[0].quote
    assert quote == "PDF files are read page by page with page numbers."


@pytest.mark.parametrize("order", [[0, 1], [1, 0]])
async def test_answer_does_not_depend_on_a_context_chunk_it_does_not_use(order: list[int]) -> None:
    context = [CONTEXT[i] for i in order]
    answer = await extractive_answer("Which warehouse do orders ship from?", context, EMBEDDER)
    assert [c.chunk_id for c in answer.citations] == [SHIPPING.chunk.id]
