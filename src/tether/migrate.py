"""Copy a store to another backend without re-embedding (e.g. SQLite -> PostgreSQL)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tether.errors import StoreError
from tether.store.protocol import Store, open_store


async def store_identity(url: str) -> tuple[str, int]:
    """(embedding model id, dimension) recorded in an existing store."""
    try:
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            if not path.is_file():
                raise StoreError(f"no store at {path}")
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        else:
            async with await psycopg.AsyncConnection.connect(url) as conn:
                cur = await conn.execute("SELECT key, value FROM tether_meta")
                meta = {str(k): str(v) for k, v in await cur.fetchall()}
    except (sqlite3.Error, psycopg.Error) as exc:
        raise StoreError(f"cannot read the store at {url.split('@')[-1]}: {exc}") from exc
    if "embed_model" not in meta or "dim" not in meta:
        raise StoreError("the source is not a tether store (no embedding metadata)")
    return str(meta["embed_model"]), int(meta["dim"])


@dataclass
class TenantCopy:
    tenant_id: str
    copied: int = 0
    unchanged: int = 0
    chunks: int = 0


async def copy_store(
    source: Store,
    target: Store,
    *,
    batch: int = 100,
    on_progress: Callable[[str, int], None] | None = None,
) -> list[TenantCopy]:
    """Copy every tenant's documents, chunks and vectors. Documents the target already
    holds with the same content hash are skipped, so an interrupted copy can be rerun."""
    results = []
    for tenant in await source.tenants():
        done = TenantCopy(tenant)
        existing = await target.document_hashes(tenant)
        async for docs in source.export_documents(tenant, batch=batch):
            fresh = [d for d in docs if existing.get(d[0].source_id) != d[0].content_hash]
            done.unchanged += len(docs) - len(fresh)
            if fresh:
                await target.replace_documents(tenant, fresh)
                done.copied += len(fresh)
                done.chunks += sum(len(chunks) for _, chunks, _ in fresh)
            if on_progress:
                on_progress(tenant, done.copied + done.unchanged)
        results.append(done)
    await target.optimize()
    return results


async def migrate(source_url: str, target_url: str, *, batch: int = 100) -> list[TenantCopy]:
    model, dim = await store_identity(source_url)
    source = await open_store(source_url, embed_model=model, dim=dim)
    try:
        target = await open_store(target_url, embed_model=model, dim=dim)
        try:
            return await copy_store(source, target, batch=batch)
        finally:
            await target.close()
    finally:
        await source.close()
