"""`tether serve` and `tether keys create|list|revoke`."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tether.server.keys import ROLES, KeyStore
from tether.settings import load_settings

keys_app = typer.Typer(help="API keys for `tether serve` (stored hashed).", no_args_is_help=True)


def serve_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1)] = 1,
    store: Annotated[str | None, typer.Option(help="Store URL.")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve the HTTP API, the OpenAI-compatible gateway and the web page."""
    import uvicorn

    settings = load_settings(store=store)
    options = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        "proxy_headers": False,
    }
    if workers == 1:
        from tether.server.app import create_app

        uvicorn.run(create_app(settings), **options)  # type: ignore[arg-type]
        return
    # Each worker builds its own app from the same settings (flags go via the env).
    if store:
        os.environ["TETHER_STORE"] = store
    uvicorn.run(
        "tether.server.app:app_from_env",
        factory=True,
        workers=workers,
        **options,  # type: ignore[arg-type]
    )


@keys_app.command("create")
def create(
    tenant: Annotated[str, typer.Option(help="The tenant the key acts for.")],
    role: Annotated[str, typer.Option(help="reader, writer or admin.")] = "reader",
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    principal: Annotated[
        list[str] | None,
        typer.Option("--principal", help="ACL principal the key holds (repeatable)."),
    ] = None,
    rps: Annotated[
        float | None, typer.Option(help="Requests per second allowed (0 = unlimited).")
    ] = None,
    burst: Annotated[int | None, typer.Option(help="Requests allowed at once above rps.")] = None,
) -> None:
    """Create a key and print it (once: only its hash is stored)."""
    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}")
    settings = load_settings()
    store = KeyStore(settings.keys_db)
    try:
        _, secret = store.create(
            tenant,
            role,  # narrowed to Role by the check above
            name=name,
            principals=tuple(principal or ("*",)),
            rps=settings.key_rps if rps is None else rps,
            burst=settings.key_burst if burst is None else burst,
        )
    finally:
        store.close()
    typer.echo(secret)


@keys_app.command("list")
def list_keys(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List keys (ids, never secrets)."""
    store = KeyStore(load_settings().keys_db)
    try:
        keys = store.list(tenant)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([k.__dict__ for k in keys], indent=2))
        return
    table = Table("id", "tenant", "role", "name", "rps", "created", "revoked")
    for k in keys:
        table.add_row(
            k.id, k.tenant, k.role, k.name, f"{k.rps:g}", k.created_at, k.revoked_at or ""
        )
    Console().print(table)


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key id (from `keys list`).")]) -> None:
    """Revoke a key; servers stop accepting it within 5 seconds."""
    store = KeyStore(load_settings().keys_db)
    try:
        if not store.revoke(key_id):
            raise typer.BadParameter(f"no live key {key_id!r}")
    finally:
        store.close()
    typer.echo(f"revoked {key_id}")
