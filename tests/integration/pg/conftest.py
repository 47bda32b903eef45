"""A real PostgreSQL 18 + pgvector server for the integration tests under this directory.

One server per session (``postgres``); each test that wants a clean slate takes ``pg_database``,
a database of its own with pgvector installed, dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.support.postgres import (
    PostgresInfo,
    create_database,
    drop_database,
    postgres_available,
    running_postgres,
)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresInfo]:
    """The session's server; its ``dsn`` points at database ``tether`` (pgvector installed).

    Skips only when PostgreSQL cannot run here at all; a server that fails to start is an error.
    """
    reason = postgres_available()
    if reason is not None:
        pytest.skip(reason)
    with running_postgres(tmp_path_factory.mktemp("postgres")) as info:
        yield info


@pytest.fixture
def pg_database_factory(postgres: PostgresInfo) -> Iterator[Callable[[], str]]:
    """Call it to get the DSN of another fresh database; all of them are dropped after the test."""
    names: list[str] = []

    def make() -> str:
        name = f"test_{uuid.uuid4().hex[:16]}"
        names.append(name)
        return create_database(postgres, name)

    try:
        yield make
    finally:
        for name in reversed(names):
            drop_database(postgres, name)


@pytest.fixture
def pg_database(pg_database_factory: Callable[[], str]) -> str:
    """DSN of a fresh, uniquely named database (pgvector installed), dropped after the test."""
    return pg_database_factory()
