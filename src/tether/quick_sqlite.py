"""SQLite for the event loop: a short operation runs inline when it cannot wait, else in a
thread.

A thread hop costs ~0.1 ms here, more than the ledger and cache statements themselves.
So `QuickDb` opens its file twice:

* `now`, busy timeout 0, used inline on the event loop and only when its lock is free:
  if another connection, thread or process holds SQLite's lock, the operation fails at
  once instead of blocking the loop;
* `waiting`, busy timeout `timeout_s`, used by a worker thread when `now` could not run,
  and by synchronous callers (`call`).

Two connections rather than one whose busy timeout is switched per call: the two PRAGMAs
that switching takes cost ~35 µs of a gateway request here. Operations must be safe to
re-run after a busy failure (begin their transaction first).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, TypeVar

T = TypeVar("T")
Synchronous = Literal["NORMAL", "FULL"]


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def use_wal(db: sqlite3.Connection, timeout_s: float = 30.0) -> None:
    """Put `db`'s file in WAL mode. Processes opening a new file at once (the workers of
    `tether serve --workers N` at first start) race to switch it, and SQLite answers the
    loser "database is locked" at once, whatever its busy timeout: 110 of 400 such opens
    failed here. So the loser waits and tries again, up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    pause = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def connect(
    path: str | Path,
    *,
    schema: str = "",
    synchronous: Synchronous = "NORMAL",
    timeout_s: float = 30.0,
    pragmas: Sequence[str] = (),
) -> sqlite3.Connection:
    """A WAL connection in autocommit mode (transactions are explicit `BEGIN IMMEDIATE`),
    shareable across threads behind the caller's lock; `schema` runs once. NORMAL may lose
    the last commits on power loss (never corrupts); FULL syncs every commit, for rows
    that must survive it (API keys and their revocation)."""
    file = Path(path).expanduser()
    file.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(file, isolation_level=None, check_same_thread=False, timeout=timeout_s)
    use_wal(db, timeout_s)
    db.execute(f"PRAGMA synchronous={synchronous}")
    for pragma in pragmas:
        db.execute(f"PRAGMA {pragma}")
    if schema:
        db.executescript(schema)
    return db


def transaction(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """`fn(db)` inside `BEGIN IMMEDIATE` … `COMMIT`, rolled back if it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = fn(db)
        # Inside the try: a COMMIT that fails must not leave the transaction open, holding
        # the write lock against the retry on the other connection.
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return result


class QuickDb:
    """One SQLite file on two connections (see the module): `run` for the event loop,
    `call` for threads and synchronous code. `lock` guards `waiting`."""

    def __init__(
        self,
        path: str | Path,
        *,
        schema: str = "",
        synchronous: Synchronous = "NORMAL",
        timeout_s: float = 30.0,
        pragmas: Sequence[str] = (),
    ) -> None:
        self.path = Path(path).expanduser()
        self.waiting = connect(
            self.path, schema=schema, synchronous=synchronous, timeout_s=timeout_s, pragmas=pragmas
        )
        self.lock = threading.RLock()
        # Opened with a busy timeout like any other connection (opening may have to wait
        # for another process's WAL recovery); it never waits once open.
        self.now = connect(self.path, synchronous=synchronous, timeout_s=timeout_s, pragmas=pragmas)
        self.now.execute("PRAGMA busy_timeout=0")
        self._now_lock = threading.Lock()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(now)` inline if nothing holds a lock, else `fn(waiting)` in a worker thread."""
        if self._now_lock.acquire(blocking=False):
            try:
                return fn(self.now)
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
            finally:
                self._now_lock.release()
        return await asyncio.to_thread(self.call, fn)

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(waiting)`, waiting for SQLite's lock up to the busy timeout."""
        with self.lock:
            return fn(self.waiting)

    def close(self) -> None:
        with self._now_lock:
            self.now.close()
        with self.lock:
            self.waiting.close()
