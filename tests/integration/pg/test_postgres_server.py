"""The test PostgreSQL server is real: PostgreSQL 18, pgvector with HNSW, full-text search,
isolated databases, and a teardown that leaves nothing behind."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgvector import Vector
from pgvector.psycopg import register_vector, register_vector_async
from psycopg_pool import AsyncConnectionPool

from tests.support.postgres import (
    OS_USER_PREFIX,
    PostgresInfo,
    PostgresStartupError,
    os_users_created_by,
    pg_bin_dir,
    postgres_available,
    running_postgres,
)

ROWS = [
    (1, [1.0, 0.0, 0.0]),
    (2, [0.0, 1.0, 0.0]),
    (3, [0.0, 0.0, 1.0]),
    (4, [0.6, 0.8, 0.0]),
]


def _skip_if_unavailable() -> None:
    reason = postgres_available()
    if reason is not None:
        pytest.skip(reason)


def test_sync_connection_reports_postgres_18_with_pgvector(postgres: PostgresInfo) -> None:
    with psycopg.connect(postgres.dsn) as conn:
        version = conn.execute("SELECT version()").fetchone()
        extension = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
        assert conn.info.dbname == postgres.dbname
    assert version is not None and version[0].startswith("PostgreSQL 18")
    assert extension is not None
    assert postgres.dsn.startswith("postgresql://")
    assert postgres.host == "127.0.0.1" and postgres.user == "postgres"


async def test_async_connection_reports_postgres_18(postgres: PostgresInfo) -> None:
    async with await psycopg.AsyncConnection.connect(postgres.dsn) as conn:
        version = await (await conn.execute("SELECT version()")).fetchone()
        number = await (await conn.execute("SHOW server_version_num")).fetchone()
    assert version is not None and version[0].startswith("PostgreSQL 18")
    assert number is not None and 180000 <= int(number[0]) < 190000


def test_dsn_works_with_psql(postgres: PostgresInfo) -> None:
    bin_dir = pg_bin_dir()
    assert bin_dir is not None
    out = subprocess.run(
        [str(bin_dir / "psql"), postgres.dsn, "-XAtc", "SELECT current_database()"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.strip() == postgres.dbname


def test_hnsw_cosine_nearest_neighbour(pg_database: str) -> None:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, embedding vector(3) NOT NULL)")
        conn.execute(
            "CREATE INDEX items_embedding_hnsw ON items USING hnsw (embedding vector_cosine_ops)"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO items (id, embedding) VALUES (%s, %s)",
                [(i, np.array(v, dtype=np.float32)) for i, v in ROWS],
            )
        query = np.array([0.9, 0.1, 0.0], dtype=np.float32)
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT id FROM items ORDER BY embedding <=> %s LIMIT 2", (query,)
            )
        )
        rows = conn.execute(
            "SELECT id, embedding, embedding <=> %s AS distance"
            " FROM items ORDER BY embedding <=> %s LIMIT 2",
            (query, query),
        ).fetchall()
    assert "items_embedding_hnsw" in plan
    assert [r[0] for r in rows] == [1, 4]
    assert isinstance(rows[0][1], Vector)  # register_vector decodes the column too
    np.testing.assert_allclose(rows[0][1].to_numpy(), [1.0, 0.0, 0.0])
    assert rows[0][2] < rows[1][2]


async def test_async_pool_with_vectors(pg_database: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg_database, autocommit=True) as conn:
        await conn.execute("CREATE TABLE items (id int PRIMARY KEY, embedding vector(3))")
    async with AsyncConnectionPool(
        pg_database, min_size=1, max_size=2, configure=register_vector_async, open=False
    ) as pool:
        async with pool.connection() as conn, conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO items VALUES (%s, %s)",
                [(i, np.array(v, dtype=np.float32)) for i, v in ROWS],
            )
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id FROM items ORDER BY embedding <=> %s LIMIT 1",
                (np.array([0.0, 0.2, 0.9], dtype=np.float32),),
            )
            row = await cur.fetchone()
    assert row == (3,)


def test_full_text_search_with_gin_index(pg_database: str) -> None:
    docs = [
        (1, "The quick brown fox jumps over the lazy dog"),
        (2, "Dogs were running through the park"),
        (3, "PostgreSQL stores vectors and text"),
    ]
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text NOT NULL)")
        conn.execute("CREATE INDEX docs_body_fts ON docs USING gin (to_tsvector('english', body))")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO docs VALUES (%s, %s)", docs)
        conn.execute("SET enable_seqscan = off")
        search = (
            "SELECT id FROM docs"
            " WHERE to_tsvector('english', body) @@ to_tsquery('english', %s) ORDER BY id"
        )
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + search, ("dog",)))
        dog = [r[0] for r in conn.execute(search, ("dog",))]
        run_dog = [r[0] for r in conn.execute(search, ("run & dogs",))]
        none = conn.execute(search, ("cat",)).fetchall()
    assert "docs_body_fts" in plan
    assert dog == [1, 2]  # "dog" and "Dogs" stem alike
    assert run_dog == [2]  # "running" stems to "run"
    assert none == []


def test_databases_are_isolated(
    postgres: PostgresInfo, pg_database: str, pg_database_factory: Callable[[], str]
) -> None:
    other = pg_database_factory()
    assert other != pg_database
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE only_here (x int)")
        conn.execute("INSERT INTO only_here VALUES (1)")
    with psycopg.connect(other, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('only_here')").fetchone() == (None,)
        # each database got its own pgvector
        assert conn.execute("SELECT '[1,2,3]'::vector(3) <-> '[1,2,4]'").fetchone() == (1.0,)
    with psycopg.connect(postgres.dsn) as conn:
        assert conn.execute("SELECT to_regclass('only_here')").fetchone() == (None,)
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert {pg_database.rsplit("/", 1)[1], other.rsplit("/", 1)[1]} <= names


def test_a_second_server_leaves_nothing_behind(postgres: PostgresInfo, tmp_path: Path) -> None:
    # Runs next to the session server: separate port, data dir and OS user. As root the data
    # cannot live under pytest's 0700 tmp tree, so it goes in a private dir in the temp dir.
    base = tmp_path / "second"
    started = time.monotonic()
    with running_postgres(base) as info:
        startup = time.monotonic() - started
        assert info.port != postgres.port
        assert info.data_dir.is_dir() and info.data_dir != postgres.data_dir
        with psycopg.connect(info.dsn) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("tether",)
            assert conn.execute(
                "SELECT 1 FROM pg_extension WHERE extname = 'vector'"
            ).fetchone() == (1,)
        if os.geteuid() == 0:
            assert info.os_user is not None and info.os_user.startswith(OS_USER_PREFIX)
            assert info.os_user != postgres.os_user
            entry = pwd.getpwnam(info.os_user)
            assert entry.pw_uid != 0
            assert info.data_dir.parent == Path(tempfile.gettempdir()) / info.os_user
            owner = info.data_dir.parent.stat()
            assert owner.st_uid == entry.pw_uid and owner.st_mode & 0o777 == 0o700
        else:
            assert info.os_user is None
            assert info.data_dir.parent.parent == base.resolve()
    assert startup < 20
    assert not info.data_dir.parent.exists()  # data dir and server log
    assert list(base.iterdir()) == []
    assert not Path(f"/proc/{info.pid}").exists()  # stopped and reaped, not a zombie
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(info.dsn, connect_timeout=2)
    if info.os_user is not None:
        with pytest.raises(KeyError):
            pwd.getpwnam(info.os_user)
        with pytest.raises(KeyError):
            grp.getgrnam(info.os_user)
    # the session server is untouched
    with psycopg.connect(postgres.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_teardown_runs_when_the_body_fails() -> None:
    # A base dir anyone can reach, so the data goes under it also as root.
    _skip_if_unavailable()
    base = Path(tempfile.mkdtemp(prefix="tether-pg-test-"))
    try:
        base.chmod(0o755)
        users_before = os_users_created_by(os.getpid())
        with pytest.raises(ZeroDivisionError), running_postgres(base) as info:
            assert info.data_dir.parent.parent == base.resolve()
            _ = 1 / 0
        assert list(base.iterdir()) == []
        assert not Path(f"/proc/{info.pid}").exists()
        assert os_users_created_by(os.getpid()) == users_before
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_startup_failure_reports_the_server_log(tmp_path: Path) -> None:
    _skip_if_unavailable()
    users_before = os_users_created_by(os.getpid())
    started = time.monotonic()
    with (
        pytest.raises(PostgresStartupError) as excinfo,
        running_postgres(tmp_path, settings={"shared_buffers": "'lots'"}),
    ):
        pytest.fail("the server should not have started")
    message = str(excinfo.value)
    assert "server log tail" in message
    assert 'invalid value for parameter "shared_buffers"' in message
    assert time.monotonic() - started < 20
    assert excinfo.value.data_dir is not None
    assert not excinfo.value.data_dir.parent.exists()
    assert list(tmp_path.iterdir()) == []
    assert os_users_created_by(os.getpid()) == users_before
