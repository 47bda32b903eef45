"""`tether demo`: ingest the project's docs/ into a throwaway store and answer three questions."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tether.cli import render
from tether.cli.ingest import run_ingest
from tether.errors import ConfigError
from tether.rag import answer
from tether.runtime import answer_config, open_runtime
from tether.settings import load_settings

QUESTIONS = (
    "Which file types can tether ingest?",
    "How does tether keep one tenant's documents away from another tenant?",
    "What does tether do when the retrieved evidence is weak?",
)


async def _ask_all(settings_store: str, console: Console) -> None:
    settings = load_settings(store=settings_store)
    async with open_runtime(settings) as rt:
        for question in QUESTIONS:
            result = await answer(
                question,
                store=rt.store,
                embedder=rt.embedder,
                scope=rt.scope(None),
                config=answer_config(settings),
            )
            render.answer(console, question, result)
            console.print()


def demo_command(
    docs: Annotated[Path, typer.Option(help="Folder to ingest.")] = Path("docs"),
) -> None:
    """Ingest docs/ into a temporary store and answer three questions about tether."""
    if not docs.is_dir():
        raise ConfigError(f"{docs} is not a folder; run the demo from the tether checkout")
    console = Console()
    with tempfile.TemporaryDirectory(prefix="tether-demo-") as tmp:
        store = f"sqlite:///{Path(tmp) / 'demo.db'}"
        settings = load_settings(store=store)
        started = time.perf_counter()
        report = asyncio.run(run_ingest(settings, [docs], None, None, console))
        render.ingest_report(console, report)
        console.print()
        asyncio.run(_ask_all(store, console))
        console.print(f"[dim]demo finished in {time.perf_counter() - started:.1f}s[/]")
