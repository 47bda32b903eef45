"""`tether usage`: what the model calls cost, from the usage ledger."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tether.ledger import Ledger
from tether.settings import load_settings

GROUPS = ("day", "month", "model", "user", "feature", "tenant")


def usage_command(
    by: Annotated[
        list[str] | None, typer.Option("--by", help=f"Group by (repeatable): {', '.join(GROUPS)}.")
    ] = None,
    since: Annotated[str, typer.Option(help="Only days on or after YYYY-MM-DD.")] = "",
) -> None:
    """Summarise model calls: calls, tokens and cost, grouped by day and model by default."""
    columns = by or ["day", "model"]
    unknown = [c for c in columns if c not in GROUPS]
    if unknown:
        raise typer.BadParameter(f"cannot group by {unknown}; use {', '.join(GROUPS)}")
    ledger = Ledger(load_settings().usage_db)
    try:
        rows = ledger.summary(columns, since_day=since)
    finally:
        ledger.close()
    table = Table(*columns, "calls", "input tokens", "cached", "output tokens", "cost (USD)")
    for row in rows:
        table.add_row(
            *row.key,
            str(row.calls),
            str(row.input_tokens),
            str(row.cached_input_tokens),
            str(row.output_tokens),
            f"{row.usd:.6f}",
        )
    Console().print(table if rows else "no model calls recorded yet")
