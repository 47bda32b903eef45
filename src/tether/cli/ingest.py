"""`tether ingest PATH...`"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tether.cli import render
from tether.indexer import IngestReport, ingest_paths
from tether.ingest.drafts import ChunkOptions
from tether.runtime import open_runtime
from tether.settings import Settings, load_settings, prepares_answers


async def run_ingest(
    settings: Settings,
    paths: list[Path],
    tenant: str | None,
    acl: list[str] | None,
    console: Console,
) -> IngestReport:
    async with open_runtime(settings) as rt:
        scope = rt.scope(tenant)
        with Progress(
            TextColumn("[bold]ingest[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("", total=None)

            def on_progress(done: int, total: int, name: str) -> None:
                progress.update(task, completed=done, total=total, description=name[:40])

            return await ingest_paths(
                paths,
                store=rt.store,
                embedder=rt.embedder,
                tenant_id=scope.tenant_id,
                acl=acl or ["*"],
                options=ChunkOptions(
                    max_chars=settings.chunk_max_chars, overlap_chars=settings.chunk_overlap_chars
                ),
                max_file_bytes=settings.max_file_bytes,
                on_progress=on_progress,
                prepare_answers=prepares_answers(settings),
            )


def ingest_command(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.")],
    tenant: Annotated[str | None, typer.Option(help="Tenant to ingest into.")] = None,
    acl: Annotated[
        list[str] | None,
        typer.Option(
            "--acl",
            help="Principal allowed to see these documents (repeatable); default: everyone in the tenant.",
        ),
    ] = None,
    store: Annotated[
        str | None, typer.Option(help="Store URL, e.g. sqlite:///path/tether.db.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every file.")] = False,
) -> None:
    """Ingest files and folders: unchanged files are skipped, changed ones replaced,
    files removed from an ingested folder are dropped. Exit code 1 if any file failed."""
    settings = load_settings(store=store)
    console = Console()
    report = asyncio.run(run_ingest(settings, paths, tenant, acl, console))
    render.ingest_report(console, report, verbose=verbose)
    if report.count("failed"):
        raise typer.Exit(1)
