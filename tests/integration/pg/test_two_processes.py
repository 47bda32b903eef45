"""Two tether processes on one PostgreSQL: one ingests while the other queries."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

WRITER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from tether.indexer import ingest_paths
    from tether.models.fake import HashEmbedder
    from tether.store.postgres import PostgresStore

    class Slow(HashEmbedder):
        async def embed(self, texts, *, kind="document"):
            await asyncio.sleep(0.05)  # a real embedder takes time: let the reader interleave
            return await super().embed(texts, kind=kind)

    async def main():
        embedder = Slow(dim=64)
        store = await PostgresStore.open(sys.argv[1], embed_model=embedder.model_id, dim=64)
        report = await ingest_paths([Path(sys.argv[2])], store=store, embedder=embedder,
                                    tenant_id="shared", batch_chunks=3)
        await store.close()
        print(report.count("ok"))

    asyncio.run(main())
""")

READER = textwrap.dedent("""
    import asyncio, json, sys, time
    from tether.models.fake import HashEmbedder
    from tether.store.postgres import PostgresStore
    from tether.store.protocol import Scope

    async def main():
        embedder = HashEmbedder(dim=64)
        store = await PostgresStore.open(sys.argv[1], embed_model=embedder.model_id, dim=64)
        scope, seen, rounds, problems, partial = Scope("shared"), 0, 0, [], 0
        print("ready", flush=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            hits = await store.keyword_search(scope, "lighthouse", [], 1000)
            chunks = await store.get_chunks(scope, [h for h, _ in hits])
            docs = {d.source_id: d.chunk_count for d in await store.list_documents(scope)}
            rounds += 1
            if len(chunks) != len(hits):
                problems.append(f"{len(hits) - len(chunks)} search hits did not resolve")
            if any(c.source_id not in docs for c in chunks):
                problems.append("a chunk was visible before its document")
            if len(docs) < seen:
                problems.append(f"documents went from {seen} to {len(docs)}")
            seen = max(seen, len(docs))
            partial += 0 < len(docs) < int(sys.argv[2])
            if seen == int(sys.argv[2]):
                break
        await store.close()
        print(json.dumps({"rounds": rounds, "seen": seen, "problems": problems,
                          "partial": partial}))

    asyncio.run(main())
""")


def test_concurrent_ingest_and_queries_stay_consistent(pg_database: str, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    files = 40
    for n in range(files):
        (folder / f"note{n:02d}.md").write_text(
            f"# Note {n}\n\nThe lighthouse log entry {n}.\n\n" + "Filler paragraph. " * 30
        )
    # Create the schema first so both processes start on a migrated database.
    setup = subprocess.run(
        [sys.executable, "-c", WRITER, pg_database, str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert setup.returncode == 0, setup.stderr
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, pg_database, str(files)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    writer = subprocess.run(
        [sys.executable, "-c", WRITER, pg_database, str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out, err = reader.communicate(timeout=120)
    out = out.strip().splitlines()[-1]
    assert writer.returncode == 0, writer.stderr
    assert int(writer.stdout.strip()) == files
    assert reader.returncode == 0, err
    result = json.loads(out)
    assert result["problems"] == [] and result["seen"] == files
    assert result["partial"] >= 1  # it really read while the writer was half-way
