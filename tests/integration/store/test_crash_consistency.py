"""SIGKILL an ingest mid-way: the store stays consistent and a rerun finishes the job.

A child process ingests 300 generated markdown files in small batches. It reports each
committed batch on stdout; the parent waits for a few commits, confirms through a read-only
connection that the documents table is partly filled, and kills the child. Two variants:
killed between batches (wherever the slowed-down child happens to be), and killed while a
write transaction is open with half of a batch already inserted.
"""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tether.indexer import ingest_paths
from tether.models.fake import HashEmbedder
from tether.store.protocol import Scope
from tether.store.sqlite import SQLiteStore

N_DOCS = 300
TENANT = "crash-tenant"
BATCH_CHUNKS = 8
TIMEOUT = 30.0

CHILD = textwrap.dedent(
    """
    import asyncio
    import sys
    import threading
    from pathlib import Path

    from tether.indexer import ingest_paths
    from tether.models.fake import HashEmbedder
    from tether.store.sqlite import SQLiteStore

    folder, db_path, mode, tenant, batch = sys.argv[1:6]


    class SlowEmbedder(HashEmbedder):
        # Same model id as HashEmbedder: the parent's rerun must see the same fingerprint.
        async def embed(self, texts, *, kind="document"):
            await asyncio.sleep(0.01)
            return await super().embed(texts, kind=kind)


    class ReportingStore(SQLiteStore):
        commits = 0

        async def replace_documents(self, tenant_id, batch):
            await super().replace_documents(tenant_id, batch)
            self.commits += 1
            print(f"committed {self.commits}", flush=True)


    async def main():
        embedder = SlowEmbedder()
        store = ReportingStore(db_path, embed_model=embedder.model_id, dim=embedder.dim)
        if mode == "inside_transaction":
            hang = threading.Event()

            def trace(sql):
                # Inside the third batch's transaction: chunks and FTS rows of its first
                # document are written, its documents row is about to be.
                if store.commits >= 2 and sql.lstrip().upper().startswith("INSERT INTO DOCUMENTS"):
                    print("in transaction", flush=True)
                    hang.wait(60)

            store._db.set_trace_callback(trace)
        await ingest_paths(
            [Path(folder)], store=store, embedder=embedder, tenant_id=tenant,
            batch_chunks=int(batch),
        )
        print("finished", flush=True)


    asyncio.run(main())
    """
)


def _write_docs(folder: Path) -> None:
    folder.mkdir()
    for i in range(N_DOCS):
        sections = "".join(
            f"## Part {j}\n\nSection {j} of document {i} mentions tok{i}x{j} and harbour "
            f"logistics.\n\n"
            for j in range(i % 3 + 1)
        )
        (folder / f"doc{i:03d}.md").write_text(f"# Document {i}\n\n{sections}", encoding="utf-8")


def _read_lines(stream: object, lines: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line.strip())
    lines.put(None)


def _wait_for(lines: queue.Queue[str | None], wanted: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            pytest.fail(f"child did not print {wanted!r} within {TIMEOUT}s")
        if line is None or line == "finished":
            stderr = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"child ended before {wanted!r} (line={line!r}): {stderr[-2000:]}")
        if line == wanted:
            return


def _documents_read_only(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=TIMEOUT)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0])
    finally:
        conn.close()


def _check_consistent(db: Path) -> int:
    """Structural consistency of a store file; returns its number of documents."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        wrong_counts = conn.execute(
            "SELECT d.source_id, d.chunk_count, COUNT(c.rowid) FROM documents d "
            "LEFT JOIN chunks c ON c.tenant_id = d.tenant_id AND c.source_id = d.source_id "
            "GROUP BY d.tenant_id, d.source_id HAVING COUNT(c.rowid) != d.chunk_count"
        ).fetchall()
        assert wrong_counts == []
        orphans = conn.execute(
            "SELECT COUNT(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM documents d "
            "WHERE d.tenant_id = c.tenant_id AND d.source_id = c.source_id)"
        ).fetchone()[0]
        assert orphans == 0
        duplicate_ids = conn.execute(
            "SELECT tenant_id, id FROM chunks GROUP BY tenant_id, id HAVING COUNT(*) > 1"
        ).fetchall()
        assert duplicate_ids == []
        for tenant, part in conn.execute("SELECT tenant_id, part FROM tenants").fetchall():
            fts = f"fts_{part}"
            conn.execute(f"INSERT INTO {fts}({fts}) VALUES('integrity-check')")
            indexed = {r[0] for r in conn.execute(f"SELECT id FROM {fts}_docsize")}
            chunk_rows = {
                r[0]
                for r in conn.execute("SELECT rowid FROM chunks WHERE tenant_id = ?", (tenant,))
            }
            assert indexed == chunk_rows, f"FTS rows of {tenant!r} differ from its chunks"
        total = int(conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])
        expected = conn.execute("SELECT COALESCE(SUM(chunk_count), 0) FROM documents").fetchone()[0]
        assert total == expected
        return int(conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["between_batches", "inside_transaction"])
async def test_sigkill_mid_ingest_then_rerun(tmp_path: Path, mode: str) -> None:
    folder = tmp_path / "docs"
    _write_docs(folder)
    db = tmp_path / "store.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")

    proc = subprocess.Popen(
        [sys.executable, str(script), str(folder), str(db), mode, TENANT, str(BATCH_CHUNKS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    try:
        _wait_for(lines, "committed 3" if mode == "between_batches" else "in transaction", proc)
        seen = _documents_read_only(db)
        assert 0 < seen < N_DOCS
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=TIMEOUT) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=TIMEOUT)
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()

    committed = _check_consistent(db)
    assert seen <= committed < N_DOCS
    if mode == "inside_transaction":
        # The hung batch never committed: exactly the two earlier batches are there.
        assert committed == seen

    embedder = HashEmbedder()
    store = SQLiteStore(db, embed_model=embedder.model_id, dim=embedder.dim)
    try:
        report = await ingest_paths(
            [folder], store=store, embedder=embedder, tenant_id=TENANT, batch_chunks=BATCH_CHUNKS
        )
        assert report.count("failed") == 0, [f.reason for f in report.files if f.reason]
        assert report.count("unchanged") == committed
        assert report.count("ok") == N_DOCS - committed
        assert _check_consistent(db) == N_DOCS

        scope = Scope(TENANT)
        docs = await store.list_documents(scope)
        assert len(docs) == N_DOCS
        assert sum(d.chunk_count for d in docs) == await store.count_chunks(scope)
        assert await store.count_chunks(scope) == sum(i % 3 + 1 for i in range(N_DOCS))
        by_source = {Path(d.source_id).name: d.chunk_count for d in docs}
        for i in range(0, N_DOCS, 7):
            assert by_source[f"doc{i:03d}.md"] == i % 3 + 1
            hits = await store.keyword_search(scope, f"tok{i}x0", [], 10)
            assert len(hits) == 1
            (chunk,) = await store.get_chunks(scope, [hits[0][0]])
            assert chunk.source_id == (folder / f"doc{i:03d}.md").resolve().as_posix()

        again = HashEmbedder()
        third = await ingest_paths(
            [folder], store=store, embedder=again, tenant_id=TENANT, batch_chunks=BATCH_CHUNKS
        )
        assert [f.status for f in third.files] == ["unchanged"] * N_DOCS
        assert again.calls == 0
        assert third.chunks_written == 0
    finally:
        await store.close()
