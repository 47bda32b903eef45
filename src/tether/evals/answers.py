"""Scoring one answer against an `AnswerCase`: citations, overlap, declines, faithfulness.

Definitions (NaN where a metric does not apply to the case, so means skip it):

* `citation_precision` — of the (answer sentence, chunk it cites) pairs, the share where
  the chunk supports the sentence (`support` >= SUPPORT_THRESHOLD);
* `citation_recall` — of the gold evidence sentences, the share found in the cited chunks;
* `answer_f1` — SQuAD token F1 of the answer text against the best gold answer;
* `faithfulness` — the share of answer sentences supported by at least one chunk they
  cite (a sentence that cites nothing is unsupported);
* `decline_correct` — 1 when the system declined exactly when the case is unanswerable;
  averaged over unanswerable cases it is `decline_accuracy`, over answerable ones
  `answerable_accuracy` (answered, not declined);
* `retrieval_hit` — a chunk of the case's own passage was retrieved;
* `schema_valid` — the answer came back in the schema (always so for the extractive answerer).

`support` is lexical: the share of a sentence's content words (stopwords out, stemmed
lightly) that the chunk contains. It is cheap and deterministic; an LLM judge with a
versioned rubric (`eval.faithfulness@1`) can replace it when a model is configured.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter

from pydantic import BaseModel

from tether.citations import TAG
from tether.evals.datasets import AnswerCase
from tether.ingest.formats.textsplit import split_sentences
from tether.lexical import query_terms
from tether.rag import AnswerResult

SUPPORT_THRESHOLD = 0.6
#: A gold sentence counts as cited when this share of its content words is in the cited text.
EVIDENCE_THRESHOLD = 0.8
NAN = math.nan

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


class CaseScore(BaseModel):
    id: str
    answerable: bool
    declined: bool
    schema_valid: float
    citation_precision: float
    citation_recall: float
    answer_f1: float
    faithfulness: float
    decline_correct: float
    retrieval_hit: float
    latency_ms: float
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None


def squad_tokens(text: str) -> list[str]:
    lowered = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return lowered.split()


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = squad_tokens(prediction), squad_tokens(gold)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    return {_stem(w) for w in query_terms(text)}


def support(sentence: str, evidence: str) -> float:
    """Share of the sentence's content words present in the evidence (NaN: none to check)."""
    words = content_words(sentence)
    if not words:
        return NAN
    return len(words & content_words(evidence)) / len(words)


def sentences_with_citations(result: AnswerResult) -> list[tuple[str, list[str]]]:
    answer = result.answer
    pairs = []
    for sentence in split_sentences(answer.summary):
        cited = [m.group(1) for m in TAG.finditer(sentence)]
        text = TAG.sub("", sentence).strip()
        if text:
            pairs.append((text, cited))
    if pairs and not any(cited for _, cited in pairs):
        # Citations listed beside the answer rather than inline: any of them may support.
        every = [c.chunk_id for c in answer.citations]
        pairs = [(text, every) for text, _ in pairs]
    return pairs


def score_case(
    case: AnswerCase,
    result: AnswerResult | None,
    *,
    latency_ms: float,
    error: str | None = None,
    cost_usd: float = 0.0,
) -> CaseScore:
    if result is None:
        return CaseScore(
            id=case.id,
            answerable=case.answerable,
            declined=False,
            schema_valid=0.0,
            citation_precision=NAN,
            citation_recall=0.0 if case.answerable else NAN,
            answer_f1=0.0 if case.answerable else NAN,
            faithfulness=NAN,
            decline_correct=0.0,
            retrieval_hit=NAN,
            latency_ms=latency_ms,
            error=error,
        )
    answer = result.answer
    texts = {item.chunk.id: item.chunk.text for item in result.context}
    texts.update({item.chunk.id: item.chunk.text for item in result.retrieved})
    own = {p.id for p in case.passages}
    hit = float(any(item.chunk.source_id.split(":", 1)[-1] in own for item in result.retrieved))

    precision = faithfulness = NAN
    if not answer.declined:
        pairs = sentences_with_citations(result)
        judged = [
            (sentence, [support(sentence, texts.get(cid, "")) for cid in cited])
            for sentence, cited in pairs
        ]
        scored = [s for _, scores in judged for s in scores if not math.isnan(s)]
        if scored:
            precision = sum(s >= SUPPORT_THRESHOLD for s in scored) / len(scored)
        sentences = [scores for _, scores in judged]
        if sentences:
            faithfulness = sum(
                any(s >= SUPPORT_THRESHOLD for s in scores if not math.isnan(s))
                for scores in sentences
            ) / len(sentences)

    recall = NAN
    if case.answerable and case.gold_sentences:
        cited_text = " ".join(texts.get(c.chunk_id, "") for c in answer.citations)
        covered = (
            [s for s in case.gold_sentences if support(s, cited_text) >= EVIDENCE_THRESHOLD]
            if not answer.declined
            else []
        )
        recall = len(covered) / len(case.gold_sentences)

    f1 = NAN
    if case.answerable:
        summary = TAG.sub("", answer.summary)
        f1 = (
            0.0
            if answer.declined
            else max((token_f1(summary, g) for g in case.answers), default=0.0)
        )

    usage = result.usage
    return CaseScore(
        id=case.id,
        answerable=case.answerable,
        declined=answer.declined,
        schema_valid=1.0,
        citation_precision=precision,
        citation_recall=recall,
        answer_f1=f1,
        faithfulness=faithfulness,
        decline_correct=float(answer.declined != case.answerable),
        retrieval_hit=hit if case.answerable else NAN,
        latency_ms=latency_ms,
        input_tokens=usage.input_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        cost_usd=cost_usd,
        error=error,
    )
