"""`tether cache clear`: drop every cached model response."""

from __future__ import annotations

import typer
from rich.console import Console

from tether.models import cache as response_cache
from tether.settings import load_settings

app = typer.Typer(help="The model response cache.", no_args_is_help=True)


@app.command("clear")
def clear_command() -> None:
    """Delete every cached model response (TETHER_RESPONSE_CACHE)."""
    path = load_settings().response_cache
    removed = response_cache.clear(path)
    Console().print(f"removed {removed} cached response(s) from {path}")
