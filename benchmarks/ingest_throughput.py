"""Ingest throughput against the bare embedding model on the same chunks, in one run.

    uv run python -m benchmarks.ingest_throughput [--docs 1500] [--rounds 3]

Writes SciFact abstracts as Markdown files, chunks them with tether's own chunker, then
alternates (a) the bare MiniLM model embedding exactly those chunk texts and (b) a full
`ingest_paths` (read, detect, parse, chunk, embed, write SQLite + FTS5) into a fresh
store with no embedding cache. Reports medians and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import DATA, require, write
from tether.evals.beir import load_corpus
from tether.indexer import embedding_input, ingest_paths, make_chunks
from tether.ingest import formats
from tether.ingest.drafts import ChunkOptions
from tether.models.minilm import MiniLMEmbedder
from tether.store.sqlite import SQLiteStore


def write_corpus(folder: Path, docs: int) -> list[Path]:
    corpus = load_corpus(require(DATA / "scifact" / "corpus.jsonl"))[:docs]
    paths = []
    for doc in corpus:
        path = folder / f"{doc.id}.md"
        path.write_text(f"# {doc.title}\n\n{doc.text}\n", encoding="utf-8")
        paths.append(path)
    return paths


def chunk_texts(paths: list[Path]) -> list[str]:
    texts = []
    for path in paths:
        data = path.read_bytes()
        parsed = formats.parse(
            formats.detect(path.name, data), data, name=path.name, options=ChunkOptions()
        )
        chunks = make_chunks(
            parsed.drafts,
            source_id=str(path),
            tenant_id="t",
            title=parsed.title or path.stem,
            acl=["*"],
        )
        texts.extend(embedding_input(c) for c in chunks)
    return texts


async def main(docs: int, rounds: int) -> None:
    embedder = MiniLMEmbedder()
    with tempfile.TemporaryDirectory(prefix="tether-ingest-bench-") as tmp:
        folder = Path(tmp) / "docs"
        folder.mkdir()
        paths = write_corpus(folder, docs)
        texts = chunk_texts(paths)
        embedder.embed_sync(texts[:64])  # warm-up
        bare, full = [], []
        for r in range(rounds):
            start = time.perf_counter()
            embedder.embed_sync(texts)
            bare.append(len(texts) / (time.perf_counter() - start))
            store = SQLiteStore(
                Path(tmp) / f"store{r}.db", embed_model=embedder.model_id, dim=embedder.dim
            )
            start = time.perf_counter()
            report = await ingest_paths([folder], store=store, embedder=embedder, tenant_id="t")
            full.append(report.chunks_written / (time.perf_counter() - start))
            await store.close()
            assert report.chunks_written == len(texts), (report.chunks_written, len(texts))
            print(f"round {r}: bare {bare[-1]:.1f} chunks/s, ingest {full[-1]:.1f} chunks/s")
    result = {
        "files": len(paths),
        "chunks": len(texts),
        "bare_chunks_per_s": round(statistics.median(bare), 1),
        "ingest_chunks_per_s": round(statistics.median(full), 1),
        "ratio": round(statistics.median(full) / statistics.median(bare), 3),
        "rounds": rounds,
    }
    print(result)
    write("ingest_throughput", result)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.docs, args.rounds))
