"""Running answer cases: index their passages, answer each question (bounded concurrency,
n repeats), score, and summarise into an `EvalReport`."""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from tether import prompts
from tether.errors import TetherError
from tether.evals.answers import CaseScore, score_case
from tether.evals.datasets import AnswerCase
from tether.evals.judge import JUDGE_PROMPT, judged_faithfulness
from tether.evals.metrics import percentile
from tether.evals.report import EvalReport, Scalar
from tether.indexer import make_chunks, write_batch
from tether.ingest.drafts import ChunkDraft
from tether.ingest.ids import content_hash
from tether.models.budget import calling_as
from tether.models.chat import ChatModel
from tether.models.embedder import Embedder
from tether.pricing import cost_usd, default_table
from tether.rag import AnswerConfig, answer
from tether.store.protocol import DocumentRecord, Scope, Store

PASSAGE_PREFIX = "passage:"

#: Report metric -> the per-case field it averages (and which cases it applies to).
ANSWER_METRICS: dict[str, tuple[str, bool | None]] = {
    "citation_precision": ("citation_precision", None),
    "citation_recall": ("citation_recall", None),
    "answer_f1": ("answer_f1", None),
    "faithfulness": ("faithfulness", None),
    "decline_accuracy": ("decline_correct", False),
    "answerable_accuracy": ("decline_correct", True),
    "schema_validity": ("schema_valid", None),
    "retrieval_hit": ("retrieval_hit", None),
}
#: Added when a judge model is given.
JUDGE_METRIC = "faithfulness_judge"


async def index_passages(
    store: Store, embedder: Embedder, tenant_id: str, cases: Sequence[AnswerCase]
) -> int:
    """Every case's passages as documents (`passage:<id>`), skipping unchanged ones."""
    known = await store.document_hashes(tenant_id, PASSAGE_PREFIX)
    docs = []
    seen: set[str] = set()
    for case in cases:
        for passage in case.passages:
            source_id = PASSAGE_PREFIX + passage.id
            digest = content_hash(f"{passage.title}\x00{passage.text}".encode())
            if source_id in seen or known.get(source_id) == digest:
                continue
            seen.add(source_id)
            chunks = make_chunks(
                [ChunkDraft(text=passage.text)],
                source_id=source_id,
                tenant_id=tenant_id,
                title=passage.title,
                acl=("*",),
            )
            record = DocumentRecord(
                tenant_id, source_id, passage.title, digest, len(chunks), datetime.now(UTC)
            )
            docs.append((record, chunks))
    written = 0
    for start in range(0, len(docs), 64):
        written += await write_batch(store, embedder, tenant_id, docs[start : start + 64])
    return written


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _case_values(scores: list[CaseScore], judged: list[float] | None) -> dict[str, float]:
    """One case's metric values, averaged over its repeats (NaN-safe)."""
    out: dict[str, float] = {}
    answerable = scores[0].answerable
    if judged is not None:
        out[JUDGE_METRIC] = _mean(judged)
    for metric, (field, applies_to) in ANSWER_METRICS.items():
        if applies_to is not None and applies_to != answerable:
            out[metric] = math.nan
            continue
        out[metric] = _mean([getattr(s, field) for s in scores])
    out["latency_ms"] = statistics.fmean(s.latency_ms for s in scores)
    return out


async def run_answers(
    cases: Sequence[AnswerCase],
    *,
    store: Store,
    embedder: Embedder,
    scope: Scope,
    model: ChatModel | None,
    config: AnswerConfig,
    dataset: str,
    concurrency: int = 4,
    repeats: int = 1,
    run_config: dict[str, Scalar] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    judge: ChatModel | None = None,
) -> EvalReport:
    price = default_table().price(model.name) if model is not None else None
    gate = asyncio.Semaphore(max(1, concurrency))
    done = 0
    total = len(cases) * repeats

    async def one(case: AnswerCase) -> tuple[CaseScore, float]:
        nonlocal done
        async with gate:
            start = time.perf_counter()
            judged = math.nan
            try:
                result = await answer(
                    case.question,
                    store=store,
                    embedder=embedder,
                    scope=scope,
                    model=model,
                    config=config,
                )
                score = score_case(
                    case,
                    result,
                    latency_ms=(time.perf_counter() - start) * 1000,
                    cost_usd=cost_usd(result.usage, price) if price and result.usage else 0.0,
                )
                if judge is not None:
                    with calling_as(feature="eval.judge", tenant=scope.tenant_id):
                        judged = await judged_faithfulness(judge, result)
            except TetherError as exc:
                score = score_case(
                    case,
                    None,
                    latency_ms=(time.perf_counter() - start) * 1000,
                    error=type(exc).__name__,
                )
            done += 1
            if on_progress:
                on_progress(done, total)
            return score, judged

    with calling_as(feature="eval", tenant=scope.tenant_id):
        runs = [await asyncio.gather(*(one(c) for c in cases)) for _ in range(repeats)]
    by_case = {c.id: [run[i][0] for run in runs] for i, c in enumerate(cases)}
    judged = {c.id: [run[i][1] for run in runs] for i, c in enumerate(cases)}
    flat = [s for run in runs for s, _ in run]
    latencies = [s.latency_ms for s in flat]
    errors = sum(s.error is not None for s in flat)
    ops = {
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
        "input_tokens": float(sum(s.input_tokens for s in flat)),
        "output_tokens": float(sum(s.output_tokens for s in flat)),
        "cost_usd": sum(s.cost_usd for s in flat),
        "errors": float(errors),
        "error_rate": errors / len(flat) if flat else 0.0,
    }
    return EvalReport.from_cases(
        kind="answers",
        dataset=dataset,
        cases={
            cid: _case_values(scores, judged[cid] if judge is not None else None)
            for cid, scores in by_case.items()
        },
        metric_names=[*ANSWER_METRICS, *([JUDGE_METRIC] if judge is not None else [])],
        config={
            "model": model.name if model else "extractive",
            "judge": f"{judge.name} with {prompts.get(JUDGE_PROMPT).key}" if judge else None,
            **(run_config or {}),
        },
        repeats=repeats,
        ops=ops,
        latencies_ms=latencies,
    )
