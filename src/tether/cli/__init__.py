"""The `tether` command line: thin typer commands over the async library."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from tether.cli import (
    agent,
    ask,
    cache,
    db,
    demo,
    evaluate,
    ingest,
    memory,
    migrate,
    serve,
    traces,
    usage,
)
from tether.errors import TetherError

app = typer.Typer(
    name="tether",
    help="Grounded, cited answers from your documents - offline by default.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("ingest")(ingest.ingest_command)
app.command("ask")(ask.ask_command)
app.command("demo")(demo.demo_command)
app.command("usage")(usage.usage_command)
app.command("migrate")(migrate.migrate_command)
app.command("serve")(serve.serve_command)
app.add_typer(serve.keys_app, name="keys")
app.command("audit")(agent.audit_command)
app.add_typer(agent.runs_app, name="runs")
app.add_typer(memory.app, name="memory")
app.add_typer(evaluate.app, name="eval")
app.add_typer(cache.app, name="cache")
app.add_typer(db.app, name="db")
app.add_typer(traces.app, name="traces")


def main() -> None:
    try:
        app()
    except TetherError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {type(exc).__name__}: {exc}")
        sys.exit(2)
