"""run_quickly: inline when the database is free, a worker thread when it is locked."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from tether.ledger import Caller, Ledger, Limit
from tether.quick_sqlite import run_quickly


async def test_free_database_runs_inline_on_the_loop_thread(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "q.db", isolation_level=None, check_same_thread=False)
    threads: list[int] = []
    result = await run_quickly(
        db, threading.RLock(), lambda: threads.append(threading.get_ident()) or 7, timeout_ms=1000
    )
    assert result == 7 and threads == [threading.get_ident()]


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


async def test_a_lock_held_by_another_thread_also_falls_back(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "q.db", isolation_level=None, check_same_thread=False)
    lock = threading.RLock()
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    task = asyncio.create_task(
        run_quickly(db, lock, lambda: threading.get_ident(), timeout_ms=1000)
    )
    await asyncio.sleep(0.02)
    assert not task.done()
    release.set()
    ran_on = await asyncio.wait_for(task, 5)
    thread.join()
    assert ran_on != threading.get_ident()
