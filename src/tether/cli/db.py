"""`tether db upgrade|status`: the PostgreSQL schema's migrations."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from tether.errors import ConfigError
from tether.models.minilm import DIM, MODEL_ID
from tether.settings import load_settings
from tether.store.postgres import SCHEMA_VERSION, PostgresStore

app = typer.Typer(help="The PostgreSQL store's schema.", no_args_is_help=True)


def _dsn() -> str:
    url = load_settings().store
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"TETHER_STORE is {url!r}; db commands need a postgresql:// store")
    return url


async def _version(upgrade: bool) -> tuple[int, int]:
    # The embedder identity is only checked, never changed, by opening the store.
    store = await PostgresStore.open(_dsn(), embed_model=MODEL_ID, dim=DIM) if upgrade else None
    if store is None:
        pool = await PostgresStore.pool(_dsn(), vector=False)
        store = PostgresStore(pool, embed_model=MODEL_ID, dim=DIM)
    try:
        return await store.schema_version(), SCHEMA_VERSION
    finally:
        await store.close()


@app.command("upgrade")
def upgrade_command() -> None:
    """Apply pending migrations (safe to run from many replicas at once)."""
    current, latest = asyncio.run(_version(upgrade=True))
    Console().print(f"schema version {current} (latest {latest})")


@app.command("status")
def status_command() -> None:
    """Show the schema version and whether migrations are pending."""
    current, latest = asyncio.run(_version(upgrade=False))
    state = "up to date" if current == latest else f"{latest - current} migration(s) pending"
    Console().print(f"schema version {current} (latest {latest}): {state}")
