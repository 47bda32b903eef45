"""QuickDb: inline when the database is free, a worker thread when it is locked."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from tether.ledger import Caller, Ledger, Limit
from tether.quick_sqlite import QuickDb, transaction


async def test_free_database_runs_inline_on_the_loop_thread(tmp_path: Path) -> None:
    quick = QuickDb(tmp_path / "q.db", schema="CREATE TABLE t (x INTEGER)")
    seen: list[tuple[int, sqlite3.Connection]] = []

    def op(db: sqlite3.Connection) -> int:
        seen.append((threading.get_ident(), db))
        return 7

    assert await quick.run(op) == 7
    assert seen == [(threading.get_ident(), quick.now)]
    quick.close()


async def test_a_locked_database_waits_in_a_thread_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    ledger = Ledger(tmp_path / "usage.db")
    other = sqlite3.connect(tmp_path / "usage.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    task = asyncio.create_task(
        ledger.areserve(Caller(), "m", 10, 0.0, [Limit("user_day", tokens=100)])
    )
    ticks = 0
    for _ in range(10):  # the loop keeps running while the reservation waits
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks == 10 and not task.done()
    other.execute("ROLLBACK")
    reservation = await asyncio.wait_for(task, 5)
    assert reservation > 0
    other.close()
    ledger.close()


async def test_a_busy_operation_is_rerun_whole_on_the_waiting_connection(
    tmp_path: Path,
) -> None:
    quick = QuickDb(tmp_path / "q.db", schema="CREATE TABLE t (x INTEGER)")
    other = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ran_on: list[tuple[int, sqlite3.Connection]] = []

    def insert(db: sqlite3.Connection) -> None:
        ran_on.append((threading.get_ident(), db))
        db.execute("INSERT INTO t VALUES (1)")

    task = asyncio.create_task(quick.run(lambda db: transaction(db, insert)))
    await asyncio.sleep(0.05)
    other.execute("ROLLBACK")
    await asyncio.wait_for(task, 5)
    # BEGIN IMMEDIATE failed at once on `now`, before `insert` ran; it ran once, waiting.
    assert [db for _, db in ran_on] == [quick.waiting]
    assert ran_on[0][0] != threading.get_ident()
    assert other.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1
    other.close()
    quick.close()


async def test_the_waiting_connection_in_use_by_a_thread_also_sends_work_to_a_thread(
    tmp_path: Path,
) -> None:
    quick = QuickDb(tmp_path / "q.db", schema="CREATE TABLE t (x INTEGER)")
    held, release = threading.Event(), threading.Event()

    def holder(db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        held.set()
        release.wait(5)
        db.execute("INSERT INTO t VALUES (1)")
        db.execute("COMMIT")

    thread = threading.Thread(target=quick.call, args=(holder,))
    thread.start()
    held.wait(5)
    task = asyncio.create_task(
        quick.run(
            lambda db: transaction(db, lambda d: d.execute("INSERT INTO t VALUES (2)").rowcount)
        )
    )
    await asyncio.sleep(0.02)
    assert not task.done()
    release.set()
    assert await asyncio.wait_for(task, 5) == 1
    thread.join()
    assert sorted(r[0] for r in quick.waiting.execute("SELECT x FROM t")) == [1, 2]
    quick.close()


async def test_other_errors_are_raised_not_retried(tmp_path: Path) -> None:
    quick = QuickDb(tmp_path / "q.db")
    calls: list[sqlite3.Connection] = []

    def broken(db: sqlite3.Connection) -> None:
        calls.append(db)
        db.execute("SELECT * FROM no_such_table")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await quick.run(broken)
    assert calls == [quick.now]
    quick.close()


def test_a_failed_commit_leaves_no_transaction_holding_the_lock(tmp_path: Path) -> None:
    # A deferred foreign key is checked at COMMIT, so COMMIT itself fails.
    quick = QuickDb(
        tmp_path / "q.db",
        schema="CREATE TABLE parent (id INTEGER PRIMARY KEY);"
        "CREATE TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
        pragmas=("foreign_keys=ON",),
    )

    def orphan(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO child VALUES (42)")

    with pytest.raises(sqlite3.IntegrityError):
        quick.call(lambda db: transaction(db, orphan))
    assert not quick.waiting.in_transaction
    other = sqlite3.connect(tmp_path / "q.db", isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")  # the write lock is free
    assert other.execute("SELECT COUNT(*) FROM child").fetchone()[0] == 0
    other.execute("ROLLBACK")
    other.close()
    quick.close()


def _open_at_once(path: str, barrier: Any, failures: Any) -> None:
    barrier.wait()
    try:
        QuickDb(path, schema="CREATE TABLE IF NOT EXISTS t (x INTEGER)").close()
    except sqlite3.Error as exc:
        failures.put(str(exc))


def test_processes_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Two workers of `tether serve --workers 2` create the same files at first start;
    SQLite refuses the loser of the switch to WAL at once, busy timeout or not (without
    the retry about a quarter of such opens failed here)."""
    ctx = multiprocessing.get_context("fork")
    failures = ctx.Queue()
    for i in range(20):
        barrier = ctx.Barrier(2)
        path = str(tmp_path / f"new-{i}.db")
        workers = [ctx.Process(target=_open_at_once, args=(path, barrier, failures)) for _ in "ab"]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
            assert worker.exitcode == 0
    assert failures.empty()
    assert sqlite3.connect(tmp_path / "new-0.db").execute("PRAGMA journal_mode").fetchone() == (
        "wal",
    )
