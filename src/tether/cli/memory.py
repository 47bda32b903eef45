"""`tether memory facts | history | forget`: what memory holds about a user, and erasure."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tether.errors import ConfigError
from tether.memory import Fact, ForgetReceipt, Forgettable, Memory
from tether.memory_places import AnswerLogPlace, ResponseCachePlace, SpanStorePlace
from tether.settings import load_settings

app = typer.Typer(help="Facts and conversations remembered per user.", no_args_is_help=True)

Db = Annotated[
    Path | None,
    typer.Option("--db", help="The memory SQLite file (default: the memory_db setting)."),
]
Tenant = Annotated[str, typer.Option(help="The tenant (every read and write is scoped to it).")]
User = Annotated[str, typer.Option(help="The user whose facts to show.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
#: A place option left unset uses the configured file; "off" skips the place.
PlaceOption = Annotated[str | None, typer.Option(show_default="from settings")]


def _open(db: Path | None) -> Memory:
    db = db or Path(load_settings().memory_db)
    # Reading must not create an empty store at a mistyped path.
    if not db.expanduser().exists():
        raise ConfigError(f"no memory store at {db}")
    return Memory(db)


def _print_facts(facts: Sequence[Fact], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([f.model_dump(mode="json") for f in facts], indent=2))
        return
    if not facts:
        Console().print("no facts")
        return
    table = Table("id", "subject", "value", "source", "confidence", "version", "superseded")
    for f in facts:
        table.add_row(
            f.id,
            f.subject,
            f.value,
            f.source,
            f"{f.confidence:.2f}",
            str(f.version),
            "-" if f.superseded_at is None else f"{f.superseded_at:.0f}",
        )
    Console().print(table)


@app.command("facts")
def facts_command(
    tenant: Tenant,
    user: User,
    subject: Annotated[str | None, typer.Option(help="Only this subject.")] = None,
    as_json: AsJson = False,
    db: Db = None,
) -> None:
    """The user's current facts with their source, time and confidence."""
    memory = _open(db)
    try:
        facts = asyncio.run(memory.facts(tenant, user, subject))
    finally:
        memory.close()
    _print_facts(facts, as_json)


@app.command("history")
def history_command(
    tenant: Tenant,
    user: User,
    subject: Annotated[str, typer.Option(help="The subject whose values to list.")],
    as_json: AsJson = False,
    db: Db = None,
) -> None:
    """Every value a subject has had, oldest first, superseded ones included."""
    memory = _open(db)
    try:
        facts = asyncio.run(memory.history(tenant, user, subject))
    finally:
        memory.close()
    _print_facts(facts, as_json)


def _places(
    response_cache: str | None, traces_db: str | None, answers_db: str | None
) -> list[Forgettable]:
    if None in (response_cache, traces_db, answers_db):
        settings = load_settings()
        response_cache = response_cache or settings.response_cache
        traces_db = traces_db or settings.traces_db
        answers_db = answers_db or settings.answers_db
    assert response_cache is not None and traces_db is not None and answers_db is not None
    places: list[Forgettable] = []
    if response_cache.strip().lower() not in ("", "off"):
        places.append(ResponseCachePlace(response_cache))
    if traces_db.strip().lower() not in ("", "off"):
        places.append(SpanStorePlace(traces_db))
    if answers_db.strip().lower() not in ("", "off"):
        places.append(AnswerLogPlace(answers_db))
    return places


def _print_receipt(receipt: ForgetReceipt, as_json: bool) -> None:
    if as_json:
        typer.echo(receipt.model_dump_json(indent=2))
        return
    console = Console()
    removed = ", ".join(f"{place} {n}" for place, n in receipt.removed.items())
    console.print(f"forgot {receipt.target} in tenant {receipt.tenant}: {removed}")
    if receipt.unchecked_texts:
        console.print(
            f"{receipt.unchecked_texts} text(s) too short or still held by other rows were "
            "not searched for elsewhere"
        )
    if receipt.verified:
        console.print("verified: no file holds the forgotten text")
    else:
        console.print(
            "NOT verified; forgotten text or rows remain in: " + ", ".join(receipt.residue)
        )


@app.command("forget")
def forget_command(
    tenant: Tenant,
    fact: Annotated[str | None, typer.Option(help="Forget this fact version (its id).")] = None,
    conversation: Annotated[
        str | None, typer.Option(help="Forget this conversation, messages and summary.")
    ] = None,
    user: Annotated[
        str | None, typer.Option(help="Forget this user (with --subject: only that subject).")
    ] = None,
    subject: Annotated[
        str | None, typer.Option(help="With --user: forget every version of this subject.")
    ] = None,
    response_cache: PlaceOption = None,
    traces_db: PlaceOption = None,
    answers_db: PlaceOption = None,
    as_json: AsJson = False,
    db: Db = None,
) -> None:
    """Forget a fact, a conversation or a user in memory and in the response cache, the
    span store and the answer log, then check the files' bytes. Exits 1 if unverified."""
    memory = _open(db)
    try:
        receipt = asyncio.run(
            memory.forget(
                tenant,
                fact_id=fact,
                conversation_id=conversation,
                user=user,
                subject=subject,
                places=_places(response_cache, traces_db, answers_db),
            )
        )
    finally:
        memory.close()
    _print_receipt(receipt, as_json)
    if not receipt.verified:
        raise typer.Exit(1)
