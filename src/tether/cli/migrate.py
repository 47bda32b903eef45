"""`tether migrate --from URL --to URL`."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tether.migrate import migrate


def migrate_command(
    source: Annotated[
        str, typer.Option("--from", help="Source store URL (sqlite:/// or postgresql://).")
    ],
    target: Annotated[str, typer.Option("--to", help="Target store URL.")],
    batch: Annotated[int, typer.Option(help="Documents per write transaction.")] = 100,
) -> None:
    """Copy a store to another backend with its vectors (no re-embedding). Rerunnable:
    documents already copied with the same content are skipped."""
    started = time.perf_counter()
    results = asyncio.run(migrate(source, target, batch=batch))
    table = Table("tenant", "documents copied", "unchanged", "chunks copied")
    for r in results:
        table.add_row(r.tenant_id, str(r.copied), str(r.unchanged), str(r.chunks))
    console = Console()
    console.print(table)
    console.print(f"migrated in {time.perf_counter() - started:.1f}s")
