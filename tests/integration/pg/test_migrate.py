"""`tether migrate`: SQLite -> PostgreSQL with the same chunks, vectors, ACLs; rerunnable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tether.indexer import ingest_paths
from tether.migrate import migrate
from tether.models.fake import HashEmbedder
from tether.store.postgres import PostgresStore
from tether.store.protocol import Scope
from tether.store.sqlite import SQLiteStore

DOCS = Path(__file__).resolve().parents[2] / "fixtures" / "docs"
EMBEDDER = HashEmbedder(dim=64)


async def _sqlite_source(path: Path) -> str:
    store = SQLiteStore(path, embed_model=EMBEDDER.model_id, dim=EMBEDDER.dim)
    await ingest_paths([DOCS], store=store, embedder=EMBEDDER, tenant_id="acme")
    await ingest_paths(
        [DOCS / "guide.md"], store=store, embedder=EMBEDDER, tenant_id="globex", acl=["hr"]
    )
    await store.close()
    return f"sqlite:///{path}"


async def test_migration_copies_everything_without_reembedding(
    pg_database: str, tmp_path: Path
) -> None:
    source_url = await _sqlite_source(tmp_path / "s.db")
    results = {r.tenant_id: r for r in await migrate(source_url, pg_database)}
    assert set(results) == {"acme", "globex"} and results["acme"].copied >= 8
    source = SQLiteStore(tmp_path / "s.db", embed_model=EMBEDDER.model_id, dim=EMBEDDER.dim)
    target = await PostgresStore.open(pg_database, embed_model=EMBEDDER.model_id, dim=EMBEDDER.dim)
    try:
        for scope in (Scope("acme"), Scope("globex"), Scope("globex", frozenset({"hr"}))):
            assert await target.count_chunks(scope) == await source.count_chunks(scope)
            query = (await EMBEDDER.embed(["backup replica disk"]))[0]
            src_hits = await source.vector_search(scope, query, [], 5)
            dst_hits = await target.vector_search(scope, query, [], 5)
            assert [i for i, _ in dst_hits] == [i for i, _ in src_hits]
            ids = [i for i, _ in src_hits]
            np.testing.assert_allclose(
                await target.chunk_vectors(scope, ids),
                await source.chunk_vectors(scope, ids),
                atol=1e-6,
            )
            src_chunks = await source.get_chunks(scope, ids)
            assert await target.get_chunks(scope, ids) == src_chunks
        assert await target.count_chunks(Scope("globex")) == 0  # the ACL came along
    finally:
        await source.close()
        await target.close()
    again = await migrate(source_url, pg_database)
    assert all(r.copied == 0 and r.unchanged > 0 for r in again)
    # And back: PostgreSQL -> a new SQLite file holds the same chunks and vectors.
    back = tmp_path / "back.db"
    await migrate(pg_database, f"sqlite:///{back}")
    original = SQLiteStore(tmp_path / "s.db", embed_model=EMBEDDER.model_id, dim=EMBEDDER.dim)
    copy = SQLiteStore(back, embed_model=EMBEDDER.model_id, dim=EMBEDDER.dim)
    try:
        scope = Scope("acme")
        query = (await EMBEDDER.embed(["ticket owner status"]))[0]
        hits = await original.vector_search(scope, query, [], 8)
        assert await copy.vector_search(scope, query, [], 8) == hits
        assert await copy.document_hashes("acme") == await original.document_hashes("acme")
    finally:
        await original.close()
        await copy.close()


def test_migrate_cli(pg_database: str, tmp_path: Path) -> None:
    import asyncio

    source_url = asyncio.run(_sqlite_source(tmp_path / "c.db"))
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "from tether.cli import main; main()",
            "migrate",
            "--from",
            source_url,
            "--to",
            pg_database,
        ],
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "acme" in run.stdout and "globex" in run.stdout and "migrated in" in run.stdout
    missing = subprocess.run(
        [
            sys.executable,
            "-c",
            "from tether.cli import main; main()",
            "migrate",
            "--from",
            f"sqlite:///{tmp_path / 'nope.db'}",
            "--to",
            pg_database,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "no store at" in missing.stderr
