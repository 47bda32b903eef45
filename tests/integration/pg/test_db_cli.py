"""`tether db status|upgrade` and opening a bare database, against real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg

from tether.models.minilm import DIM, MODEL_ID
from tether.store.postgres import SCHEMA_VERSION, PostgresStore


def tether(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TETHER_STORE": dsn, "COLUMNS": "200", "TETHER_CONFIG": "/nonexistent"}
    return subprocess.run(
        [sys.executable, "-c", "from tether.cli import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_status_then_upgrade_then_status(pg_database: str) -> None:
    before = tether(pg_database, "db", "status")
    assert before.returncode == 0, before.stderr
    assert "schema version 0" in before.stdout and "pending" in before.stdout
    upgraded = tether(pg_database, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"schema version {SCHEMA_VERSION}" in upgraded.stdout
    after = tether(pg_database, "db", "status")
    assert "up to date" in after.stdout
    again = tether(pg_database, "db", "upgrade")  # idempotent
    assert again.returncode == 0 and f"schema version {SCHEMA_VERSION}" in again.stdout


def test_db_commands_refuse_a_sqlite_store() -> None:
    run = tether("sqlite:////tmp/x.db", "db", "status")
    assert run.returncode == 2 and "postgresql://" in run.stderr


async def test_open_creates_the_extension_in_a_bare_database(pg_database: str) -> None:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("DROP EXTENSION vector")
    store = await PostgresStore.open(pg_database, embed_model=MODEL_ID, dim=DIM)
    try:
        assert await store.schema_version() == SCHEMA_VERSION
    finally:
        await store.close()


def test_ingest_and_ask_on_postgresql_through_the_cli(pg_database: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    from pathlib import Path

    docs = Path(__file__).resolve().parents[3] / "docs"
    env_extra = {"TETHER_EMBED_CACHE": str(tmp_path / "cache.db")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "TETHER_STORE": pg_database,
            "COLUMNS": "200",
            "TETHER_CONFIG": "/nonexistent",
            **env_extra,
        }
        return subprocess.run(
            [sys.executable, "-c", "from tether.cli import main; main()", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    ingested = run("ingest", str(docs))
    assert ingested.returncode == 0, ingested.stderr
    again = run("ingest", str(docs))
    assert "0 ingested" in again.stdout and "unchanged" in again.stdout
    asked = run("ask", "--json", "How does tether keep one tenant's documents away from another?")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    retrieved = {r["chunk_id"] for r in answer["retrieved"]}
    assert not answer["declined"] and answer["citations"]
    assert {c["chunk_id"] for c in answer["citations"]} <= retrieved
    assert all(c["source_id"].startswith(str(docs)) for c in answer["citations"])


async def test_upgrade_from_version_1_rebuilds_the_vector_index(pg_database: str) -> None:
    store = await PostgresStore.open(pg_database, embed_model=MODEL_ID, dim=DIM)
    await store.close()
    # Put the database back the way schema version 1 left it.
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("DELETE FROM tether_schema WHERE version = 2")
        conn.execute("DROP INDEX chunks_embedding")
        conn.execute(
            "CREATE INDEX chunks_embedding ON chunks USING hnsw (embedding vector_cosine_ops)"
        )
    status = tether(pg_database, "db", "status")
    assert "schema version 1" in status.stdout, status.stdout
    upgraded = tether(pg_database, "db", "upgrade")
    assert upgraded.returncode == 0 and "schema version 2" in upgraded.stdout, upgraded.stderr
    with psycopg.connect(pg_database, autocommit=True) as conn:
        (definition,) = conn.execute(
            "SELECT pg_get_indexdef('chunks_embedding'::regclass)"
        ).fetchone()  # type: ignore[misc]
        versions = [v for (v,) in conn.execute("SELECT version FROM tether_schema ORDER BY 1")]
    assert "ef_construction='128'" in definition
    assert versions == [1, 2]
