"""`tether eval ...`: quality numbers from public benchmark files."""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from tether import prompts
from tether.evals.beir import load_corpus, load_qrels, load_queries
from tether.evals.datasets import load_clapnq
from tether.evals.redaction import evaluate_redaction, load_pii_cases
from tether.evals.report import EvalReport, check_thresholds, compare, load_thresholds, to_html
from tether.evals.retrieval import RetrievalReport, evaluate_retrieval, index_corpus
from tether.evals.runner import index_passages, run_answers
from tether.models.registry import open_chat_model
from tether.retrieval.fusion import FusionMethod
from tether.retrieval.retrieve import RetrievalConfig
from tether.runtime import answer_config, open_runtime
from tether.settings import Settings, feature_model, load_settings, model_api_key

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
    thresholds: Annotated[
        Path | None, typer.Option(help="TOML thresholds; exit 1 if a [retrieval] one fails.")
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
    if thresholds is not None:
        _gate(report.as_json(), "retrieval", thresholds, console)


def _gate(values: Mapping[str, object], kind: str, thresholds: Path, console: Console) -> None:
    failures = check_thresholds(values, load_thresholds(thresholds, kind))
    if failures:
        for failure in failures:
            console.print(f"[bold red]threshold failed:[/] {failure}")
        raise typer.Exit(1)
    console.print(f"[green]all {kind} thresholds in {thresholds} pass[/]")


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


def _print_report(report: EvalReport, console: Console) -> None:
    table = Table(
        "metric",
        "mean",
        "95% interval",
        "n",
        title=f"{report.kind}: {report.dataset} ({len(report.cases)} cases)",
    )
    for name, m in report.metrics.items():
        if m.mean is None:
            table.add_row(name, "-", "-", "0")
        else:
            table.add_row(name, f"{m.mean:.4f}", f"[{m.ci_low:.4f}, {m.ci_high:.4f}]", str(m.n))
    for name, value in report.ops.items():
        table.add_row(name, f"{value:.4g}", "", "")
    console.print(table)


def _finish(
    report: EvalReport,
    console: Console,
    json_out: Path | None,
    html_out: Path | None,
    thresholds: Path | None,
) -> None:
    _print_report(report, console)
    if json_out is not None:
        report.write(json_out)
    if html_out is not None:
        html_out.parent.mkdir(parents=True, exist_ok=True)
        html_out.write_text(to_html(report), encoding="utf-8")
    if thresholds is not None:
        _gate({**report.means(), **report.ops}, report.kind, thresholds, console)


async def _run_answers(
    settings: Settings,
    dataset: Path,
    concurrency: int,
    repeats: int,
    limit: int | None,
    console: Console,
    model_flag: str | None,
    judge_spec: str | None,
) -> EvalReport:
    cases = load_clapnq(dataset)
    spec = feature_model(settings, "ask", model_flag)
    config = answer_config(settings)
    if limit is not None:
        answerable = [c for c in cases if c.answerable][:limit]
        cases = answerable + [c for c in cases if not c.answerable][:limit]
    async with open_runtime(settings) as rt:
        scope = rt.scope("eval")
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("index passages", total=None)
            await index_passages(rt.store, rt.embedder, scope.tenant_id, cases)
            progress.update(task, description="answer", total=len(cases) * repeats, completed=0)
            async with (
                open_chat_model(spec, api_key=model_api_key(settings, spec)) as model,
                open_chat_model(
                    judge_spec or "", api_key=model_api_key(settings, judge_spec or "")
                ) as judge,
            ):
                return await run_answers(
                    cases,
                    store=rt.store,
                    embedder=rt.embedder,
                    scope=scope,
                    model=model,
                    config=config,
                    dataset=str(dataset),
                    concurrency=concurrency,
                    repeats=repeats,
                    run_config={
                        "prompt": prompts.get("qa.answer", config.prompt_version).key
                        if model
                        else "-",
                        "decline_threshold": settings.decline_threshold,
                        "top_k": settings.top_k,
                        "fusion": settings.fusion,
                        "embedder": rt.embedder.model_id,
                    },
                    on_progress=lambda d, _: progress.update(task, completed=d),
                    judge=judge,
                )


@app.command("answers")
def answers_command(
    dataset: Annotated[
        Path, typer.Option(help="ClapNQ-format folder: answerable.jsonl and unanswerable.jsonl.")
    ],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Write a self-contained HTML report here.")
    ] = None,
    thresholds: Annotated[
        Path | None, typer.Option(help="TOML thresholds; exit 1 if an [answers] one fails.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model spec (default: settings; extractive offline).")
    ] = None,
    repeats: Annotated[int, typer.Option(min=1, help="Run every case this many times.")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, help="Cases answered at once.")] = 4,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Only the first N answerable and N unanswerable.")
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(help="Model spec for an LLM faithfulness judge (rubric eval.faithfulness@1)."),
    ] = None,
    store: Annotated[
        str | None, typer.Option(help="Store URL to (re)use; default: a temporary one.")
    ] = None,
) -> None:
    """Index the dataset's passages, answer every question, and score citations, overlap,
    declines (the unanswerable half must be declined), faithfulness and cost."""
    console = Console()
    with tempfile.TemporaryDirectory(prefix="tether-eval-") as tmp:
        settings = load_settings(store=store or f"sqlite:///{Path(tmp) / 'eval.db'}")
        report = asyncio.run(
            _run_answers(settings, dataset, concurrency, repeats, limit, console, model, judge)
        )
    _finish(report, console, json_out, html_out, thresholds)


@app.command("compare")
def compare_command(
    before: Annotated[Path, typer.Argument(help="Report JSON of the current setting.")],
    after: Annotated[Path, typer.Argument(help="Report JSON of the candidate.")],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the comparison here.")
    ] = None,
) -> None:
    """Per metric: the change, its 95% interval and whether it is significant (paired over
    the cases both reports share)."""
    a, b = EvalReport.read(before), EvalReport.read(after)
    if a.kind != b.kind:
        raise typer.BadParameter(f"cannot compare a {a.kind} report with a {b.kind} report")
    diffs = compare(a, b)
    table = Table("metric", "before", "after", "change", "95% interval", "p", "n", "significant")
    for d in diffs:
        if d.delta is None:
            table.add_row(d.metric, "-", "-", "-", "-", "-", "0", "no")
            continue
        table.add_row(
            d.metric,
            f"{d.a:.4f}" if d.a is not None else "-",
            f"{d.b:.4f}" if d.b is not None else "-",
            f"{d.delta:+.4f}",
            f"[{d.ci_low:+.4f}, {d.ci_high:+.4f}]",
            f"{d.p_value:.3f}",
            str(d.n),
            "[bold]yes[/]" if d.significant else "no",
        )
    Console().print(table)
    if json_out is not None:
        json_out.write_text(
            json.dumps([d.model_dump() for d in diffs], indent=2) + "\n", encoding="utf-8"
        )


@app.command("redteam")
def redteam_command(
    bipia: Annotated[
        Path | None, typer.Option(help="BIPIA folder (email/, code/, table/, *_attack_train.json).")
    ] = None,
    tensor_trust: Annotated[
        Path | None, typer.Option(help="Tensor Trust folder (hijacking.jsonl, extraction.jsonl).")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
    limit: Annotated[
        int, typer.Option(min=0, help="Use only the first N cases of each set (0: all).")
    ] = 0,
) -> None:
    """Injection screen precision/recall on attacked vs clean contexts, and, for an agent
    whose model obeys every injection, the unapproved-write and leak rates (both must be
    0: the command exits 1 otherwise)."""
    from tether.evals.redteam import run_redteam
    from tether.evals.redteam_data import load_bipia, load_tensor_trust

    if bipia is None and tensor_trust is None:
        raise typer.BadParameter("give --bipia and/or --tensor-trust")
    cases = []
    for loaded in (
        load_bipia(bipia) if bipia else [],
        load_tensor_trust(tensor_trust) if tensor_trust else [],
    ):
        cases.extend(loaded[:limit] if limit else loaded)
    report = asyncio.run(run_redteam(cases))
    console = Console()
    table = Table("set", "tp", "fp", "fn", "tn", "precision", "recall", title="injection screen")
    for name, s in report.screen_by_task.items():
        c = s.counts
        table.add_row(
            name,
            str(c.tp),
            str(c.fp),
            str(c.fn),
            str(c.tn),
            f"{s.precision:.3f}",
            f"{s.recall:.3f}",
        )
    table.add_row(
        "all", "", "", "", "", f"{report.screen_precision:.3f}", f"{report.screen_recall:.3f}"
    )
    console.print(table)
    agent = Table("agent (model obeys every injection)", "value", title=f"{report.agent_runs} runs")
    for label, value in (
        ("write attempts", report.write_attempts),
        ("held for approval", report.held_for_approval),
        ("unapproved writes", report.unapproved_writes),
        ("unapproved_write_rate", f"{report.unapproved_write_rate:.4f}"),
        ("leak attempts", report.leak_attempts),
        ("leaks after the output guard", report.leaks),
        ("leak_rate", f"{report.leak_rate:.4f}"),
        ("guard false blocks on clean answers", report.guard_false_blocks),
        ("seconds", report.seconds),
    ):
        agent.add_row(label, str(value))
    console.print(agent)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    if report.unapproved_write_rate > 0 or report.leak_rate > 0:
        console.print("[bold red]an injection got through: see the counts above[/]")
        raise typer.Exit(1)
