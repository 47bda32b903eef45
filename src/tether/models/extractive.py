"""The offline answerer: no LLM, the answer is the best evidence sentences, each cited.

It declines when the best sentence is weakly related to the question, rather than
stitching together something that merely shares words with it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tether.ingest.formats.textsplit import split_sentences
from tether.lexical import query_terms
from tether.models.embedder import Embedder, Vectors
from tether.types import Answer, Chunk, Citation, ScoredChunk

DECLINE_TEXT = "The sources do not answer this."
_MIN_CHARS = 25
_MAX_CHARS = 500


@dataclass(frozen=True)
class ExtractiveOptions:
    #: Below this evidence score the answer is a decline (see docs/benchmarks.md).
    decline_threshold: float = 0.35
    max_sentences: int = 3
    #: Keep sentences scoring at least this fraction of the best one.
    relative_floor: float = 0.8
    max_candidates: int = 60
    semantic_weight: float = 0.7


@dataclass(frozen=True)
class _Candidate:
    item: ScoredChunk
    text: str
    order: int


def _stem(word: str) -> str:
    return word[:6]


_ITEM = re.compile(r"^(?:[-*+\u2022]|\d+[.)])\s+")


def _units(text: str, headings: frozenset[str]) -> list[str]:
    """Paragraphs with hard-wrapped lines rejoined; list items and table rows stand alone;
    heading lines (the chunker repeats them at the top of a chunk) are dropped."""
    units: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        wrapped: list[str] = []
        for raw in paragraph.splitlines():
            line = raw.strip()
            if not line or line.lstrip("# ").lower() in headings:
                continue
            if line.startswith("|") or _ITEM.match(line):
                if wrapped:
                    units.append(" ".join(wrapped))
                    wrapped = []
                if line.startswith("|"):
                    cells = [c.strip() for c in line.strip("|").split("|")]
                    if all(set(c) <= set("-: ") for c in cells):
                        continue  # a table's header rule
                    line = "; ".join(c for c in cells if c)
                units.append(_ITEM.sub("", line))
            else:
                wrapped.append(line)
        if wrapped:
            units.append(" ".join(wrapped))
    return units


def _sentences(item: ScoredChunk) -> list[str]:
    return sentences_of(item.chunk)


def sentences_of(chunk: Chunk) -> list[str]:
    """The candidate answer sentences of a chunk, exactly as the answerer embeds them."""
    out: list[str] = []
    headings = frozenset(
        part.strip().lower() for part in (chunk.title, *chunk.section.split(" > "))
    )
    for unit in _units(chunk.text, headings):
        for sentence in split_sentences(unit):
            sentence = sentence.strip()
            if len(sentence) < _MIN_CHARS:
                continue
            out.append(sentence[:_MAX_CHARS])
    return out


async def prepare_sentences(chunks: Sequence[Chunk], embedder: Embedder) -> int:
    """Embed the chunks' candidate sentences now (at ingest), so that with a caching
    embedder a question's first answer finds them cached: it then costs one query
    embedding instead of up to `max_candidates` sentence embeddings (~0.4 s of CPU
    here). Returns how many sentences were embedded."""
    texts = list(dict.fromkeys(s for chunk in chunks for s in sentences_of(chunk)))
    if texts:
        await embedder.embed(texts, kind="document")
    return len(texts)


def _lexical(question_stems: set[str], sentence: str) -> float:
    if not question_stems:
        return 0.0
    words = {_stem(w) for w in query_terms(sentence)}
    return len(question_stems & words) / len(question_stems)


async def extractive_answer(
    question: str,
    context: Sequence[ScoredChunk],
    embedder: Embedder,
    options: ExtractiveOptions = ExtractiveOptions(),
    *,
    question_vector: Vectors | None = None,
) -> Answer:
    """`question_vector`, when the caller already embedded the question (retrieval
    did), saves embedding it again: the one text here the cache rarely holds."""
    candidates = [
        _Candidate(item, sentence, order)
        for order, item in enumerate(context)
        for sentence in _sentences(item)
    ][: options.max_candidates]
    if not candidates:
        return Answer(summary=DECLINE_TEXT, confidence=0.0, declined=True)
    if question_vector is None:
        vectors = await embedder.embed([question, *[c.text for c in candidates]], kind="document")
        semantic = vectors[1:] @ vectors[0]
    else:
        semantic = await embedder.embed([c.text for c in candidates]) @ question_vector
    stems = {_stem(w) for w in query_terms(question)}
    weight = options.semantic_weight
    scores = np.array(
        [
            weight * float(sim) + (1 - weight) * _lexical(stems, c.text)
            for sim, c in zip(semantic, candidates, strict=True)
        ]
    )
    best = float(scores.max())
    if best < options.decline_threshold:
        return Answer(
            summary=DECLINE_TEXT, confidence=round(max(0.0, 1.0 - best), 3), declined=True
        )
    picked: list[int] = []
    for index in np.argsort(-scores, kind="stable"):
        if len(picked) >= options.max_sentences or scores[index] < best * options.relative_floor:
            break
        if any(candidates[index].text == candidates[p].text for p in picked):
            continue
        picked.append(int(index))
    parts = [f"{candidates[i].text} [{candidates[i].item.chunk.id}]" for i in picked]
    citations: dict[str, Citation] = {}
    for i in picked:
        chunk = candidates[i].item.chunk
        citations.setdefault(
            chunk.id,
            Citation(
                chunk_id=chunk.id,
                source_id=chunk.source_id,
                title=chunk.title,
                section=chunk.section,
                page=chunk.page,
                quote=candidates[i].text,
            ),
        )
    return Answer(
        summary=" ".join(parts),
        citations=list(citations.values()),
        confidence=round(min(1.0, max(0.0, best)), 3),
        declined=False,
    )
