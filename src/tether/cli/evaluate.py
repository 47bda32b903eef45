"""`tether eval ...`: quality numbers from public benchmark files."""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from tether.evals.beir import load_corpus, load_qrels, load_queries
from tether.evals.redaction import evaluate_redaction, load_pii_cases
from tether.evals.retrieval import RetrievalReport, evaluate_retrieval, index_corpus
from tether.retrieval.fusion import FusionMethod
from tether.retrieval.retrieve import RetrievalConfig
from tether.runtime import open_runtime
from tether.settings import Settings, load_settings

app = typer.Typer(help="Evaluate retrieval and answers.", no_args_is_help=True)


async def _run(
    settings: Settings,
    corpus: Path,
    queries: Path,
    qrels: Path,
    config: RetrievalConfig,
    console: Console,
) -> RetrievalReport:
    docs, qs, judgements = load_corpus(corpus), load_queries(queries), load_qrels(qrels)
    async with open_runtime(settings) as rt:
        scope = rt.scope("eval")
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("index corpus", total=len(docs))
            await index_corpus(
                rt.store,
                rt.embedder,
                scope.tenant_id,
                docs,
                on_progress=lambda done, _: progress.update(task, completed=done),
            )
        return await evaluate_retrieval(rt.store, rt.embedder, scope, qs, judgements, config=config)


@app.command("retrieval")
def retrieval_command(
    corpus: Annotated[Path, typer.Option(help="BEIR corpus.jsonl (_id, title, text).")],
    queries: Annotated[Path, typer.Option(help="BEIR queries.jsonl (_id, text).")],
    qrels: Annotated[Path, typer.Option(help="qrels TSV with header 'query-id corpus-id score'.")],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the metrics here.")
    ] = None,
    mode: Annotated[str, typer.Option(help="hybrid, bm25 or dense.")] = "hybrid",
    fusion: Annotated[str | None, typer.Option(help="rrf, convex or zconvex.")] = None,
    store: Annotated[
        str | None, typer.Option(help="Store URL to (re)use; default: a temporary one.")
    ] = None,
) -> None:
    """Index a BEIR corpus and report nDCG@10, Recall@100, MRR@10, hit@10 and latency."""
    if mode not in ("hybrid", "bm25", "dense"):
        raise typer.BadParameter("mode must be hybrid, bm25 or dense")
    console = Console()
    with tempfile.TemporaryDirectory(prefix="tether-eval-") as tmp:
        settings = load_settings(store=store or f"sqlite:///{Path(tmp) / 'eval.db'}")
        method: FusionMethod = fusion or settings.fusion  # type: ignore[assignment]
        if method not in ("rrf", "convex", "zconvex"):
            raise typer.BadParameter("fusion must be rrf, convex or zconvex")
        config = RetrievalConfig(
            candidates=settings.candidates,
            fusion=method,
            rrf_k=settings.rrf_k,
            dense_weight=settings.dense_weight,
            mode=mode,
        )
        report = asyncio.run(_run(settings, corpus, queries, qrels, config, console))
    table = Table(
        "metric", "value", title=f"retrieval ({report.queries} queries, {mode}, {report.fusion})"
    )
    for key, value in report.as_json().items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    if json_out is not None:
        json_out.write_text(json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8")


@app.command("redaction")
def redaction_command(
    dataset: Annotated[
        Path, typer.Option(help="Presidio-format JSONL (full_text, spans[entity_type, ...]).")
    ],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the per-entity scores here.")
    ] = None,
) -> None:
    """Per-entity precision and recall of secret/PII redaction on labelled spans."""
    report = evaluate_redaction(load_pii_cases(dataset))
    table = Table(
        "entity", "gold", "recall", "precision", "masked", title=f"redaction ({report.cases} cases)"
    )
    for entity, score in report.entities.items():
        table.add_row(
            entity,
            str(score.gold),
            _fmt(score.recall),
            _fmt(score.precision),
            _fmt(score.masked),
        )
    Console().print(table)
    if json_out is not None:
        json_out.write_text(json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8")


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"
