"""How commands show results: rich tables for people, JSON for machines."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tether.indexer import IngestReport
from tether.rag import AnswerResult


def ingest_report(console: Console, report: IngestReport, *, verbose: bool = False) -> None:
    summary = (
        f"tenant [bold]{report.tenant_id}[/]: {report.count('ok')} ingested, "
        f"{report.count('unchanged')} unchanged, {report.count('removed')} removed, "
        f"{report.count('failed')} failed; {report.chunks_written} chunks written "
        f"in {report.seconds:.1f}s"
    )
    console.print(summary)
    rows = [f for f in report.files if verbose or f.status in ("failed", "removed")]
    if not rows:
        return
    table = Table("status", "file", "format", "chunks", "reason")
    for f in rows:
        style = {"failed": "red", "removed": "yellow", "ok": "green"}.get(f.status, "")
        table.add_row(
            f"[{style}]{f.status}[/]" if style else f.status,
            f.source_id,
            f.format,
            str(f.chunks),
            f.reason,
        )
    console.print(table)


def answer(console: Console, question: str, result: AnswerResult) -> None:
    ans = result.answer
    console.print(f"[bold]Q:[/] {escape(question)}")
    style = "yellow" if ans.declined else "green"
    console.print(f"[bold {style}]A:[/] {escape(ans.summary)}")
    console.print(f"   confidence {ans.confidence:.2f}" + ("  (declined)" if ans.declined else ""))
    for flag in ans.flags:
        console.print(f"   [yellow]note:[/] {escape(flag)}")
    for citation in ans.citations:
        where = citation.section or "-"
        if citation.page is not None:
            where += f", page {citation.page}"
        console.print(
            f"   [cyan]{escape('[' + citation.chunk_id + ']')}[/] "
            f"{escape(citation.source_id)} ({escape(where)})"
        )
    t = result.timings_ms
    console.print(
        f"   [dim]retrieve {t['retrieve']:.1f} ms, pack {t['pack']:.1f} ms, "
        f"answer {t['answer']:.1f} ms, total {t['total']:.1f} ms; model {escape(result.model)}"
        + (
            f", {result.usage.input_tokens} in / {result.usage.output_tokens} out tokens"
            if result.usage
            else ""
        )
        + (f"; trace {result.trace_id}" if result.trace_id else "")
        + "[/]"
    )
