"""Indexing: files -> parsed chunks -> embeddings -> one store transaction per batch.

Unchanged files are skipped by content hash; a changed file's chunks are replaced in the
same transaction that writes the new ones; files gone from an ingested folder are removed.
A crash loses at most the batch in flight, and a rerun finishes it: nothing is half-written.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from tether.errors import FileTooLarge, IngestError, TetherError
from tether.ingest import formats
from tether.ingest.drafts import ChunkDraft, ChunkOptions
from tether.ingest.ids import chunk_id, content_hash
from tether.models.cached import CachedEmbedder
from tether.models.embedder import Embedder
from tether.models.extractive import prepare_sentences
from tether.store.protocol import DocumentRecord, Store
from tether.types import PUBLIC, Chunk

#: Bump when chunking changes, so every document is re-chunked on the next ingest.
CHUNKER_VERSION = "1"
Status = Literal["ok", "unchanged", "failed", "removed"]
Progress = Callable[[int, int, str], None]


class FileOutcome(BaseModel):
    source_id: str
    status: Status
    format: str = ""
    chunks: int = 0
    reason: str = ""


class IngestReport(BaseModel):
    tenant_id: str
    files: list[FileOutcome] = []
    chunks_written: int = 0
    seconds: float = 0.0

    def count(self, status: Status) -> int:
        return sum(1 for f in self.files if f.status == status)


@dataclass
class _Pending:
    record: DocumentRecord
    chunks: list[Chunk]
    outcome: FileOutcome


@dataclass
class _Batch:
    docs: list[_Pending] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(len(d.chunks) for d in self.docs)


def embedding_input(chunk: Chunk) -> str:
    """What the embedder sees: the chunk with its title/section when the text lacks them."""
    head = chunk.text[:300]
    context = [part for part in (chunk.title, chunk.section) if part and part not in head]
    return "\n".join([*context, chunk.text]) if context else chunk.text


def make_chunks(
    drafts: Sequence[ChunkDraft],
    *,
    source_id: str,
    tenant_id: str,
    title: str,
    acl: Sequence[str],
    modified: datetime | None = None,
) -> list[Chunk]:
    acl_tuple = tuple(sorted(set(acl))) or (PUBLIC,)
    return [
        Chunk(
            id=chunk_id(source_id, position, draft.text),
            source_id=source_id,
            tenant_id=tenant_id,
            text=draft.text,
            title=title,
            section=draft.section,
            page=draft.page,
            position=position,
            kind=draft.kind,
            acl=acl_tuple,
            created_at=draft.created_at or modified,
            updated_at=draft.updated_at or modified,
            metadata=draft.metadata,
        )
        for position, draft in enumerate(drafts)
    ]


async def write_batch(
    store: Store,
    embedder: Embedder,
    tenant_id: str,
    docs: Sequence[tuple[DocumentRecord, list[Chunk]]],
    *,
    prepare_answers: bool = False,
) -> int:
    """Embed every chunk of the batch, then write it in one transaction. With
    `prepare_answers` and a caching embedder, the extractive answerer's sentences are
    embedded too (see `prepare_sentences`)."""
    texts = [embedding_input(c) for _, chunks in docs for c in chunks]
    vectors = await embedder.embed(texts, kind="document")
    if prepare_answers and isinstance(embedder, CachedEmbedder):
        await prepare_sentences([c for _, chunks in docs for c in chunks], embedder)
    rows = []
    offset = 0
    for record, chunks in docs:
        rows.append((record, chunks, vectors[offset : offset + len(chunks)]))
        offset += len(chunks)
    await store.replace_documents(tenant_id, rows)
    return len(texts)


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        # Hidden folders (.git, .venv) are tooling, not documents.
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def _source_id(path: Path) -> str:
    # Absolute but not symlink-resolved: a linked file belongs to the folder it sits in,
    # so it is skipped when unchanged and removed when the link goes.
    return Path(os.path.abspath(path)).as_posix()


async def ingest_paths(
    paths: Sequence[Path],
    *,
    store: Store,
    embedder: Embedder,
    tenant_id: str,
    acl: Sequence[str] = (PUBLIC,),
    options: ChunkOptions = ChunkOptions(),
    max_file_bytes: int = 50 * 1024 * 1024,
    batch_chunks: int = 256,
    on_progress: Progress | None = None,
    prepare_answers: bool = False,
) -> IngestReport:
    started = time.perf_counter()
    report = IngestReport(tenant_id=tenant_id)
    fingerprint = json.dumps(
        {
            "v": CHUNKER_VERSION,
            "o": options.model_dump(),
            "acl": sorted(set(acl)),
            "m": embedder.model_id,
        },
        sort_keys=True,
    )
    files: dict[str, Path] = {}
    gone: list[str] = []
    roots: list[str] = []
    for path in paths:
        # A folder named twice, or a file inside a named folder, is still one document.
        if path.is_dir():
            roots.append(_source_id(path) + "/")
            files.update((_source_id(p), p) for p in _walk(path))
        elif path.is_file():
            files.setdefault(_source_id(path), path)
        else:
            gone.append(_source_id(path))
    known = await store.document_hashes(tenant_id)
    for source_id in gone:
        if source_id not in known:
            report.files.append(
                FileOutcome(source_id=source_id, status="failed", reason="no such file or folder")
            )
    seen: set[str] = set()
    batch = _Batch()

    async def flush() -> None:
        if not batch.docs:
            return
        try:
            report.chunks_written += await write_batch(
                store,
                embedder,
                tenant_id,
                [(d.record, d.chunks) for d in batch.docs],
                prepare_answers=prepare_answers,
            )
            report.files.extend(d.outcome for d in batch.docs)
        except TetherError as exc:
            for doc in batch.docs:
                doc.outcome.status, doc.outcome.reason = "failed", str(exc)
                report.files.append(doc.outcome)
        batch.docs.clear()

    for done, (source_id, path) in enumerate(files.items(), start=1):
        seen.add(source_id)
        if on_progress:
            on_progress(done, len(files), path.name)
        outcome = FileOutcome(source_id=source_id, status="ok")
        try:
            stat = path.stat()
            if stat.st_size > max_file_bytes:
                raise FileTooLarge(f"{stat.st_size} bytes is over the {max_file_bytes}-byte limit")
            data = path.read_bytes()
            digest = content_hash(data + fingerprint.encode())
            if known.get(source_id) == digest:
                outcome.status = "unchanged"
                report.files.append(outcome)
                continue
            fmt = formats.detect(path.name, data)
            outcome.format = fmt
            parsed = formats.parse(fmt, data, name=path.name, options=options)
            title = parsed.title or path.stem
            modified = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
            chunks = make_chunks(
                parsed.drafts,
                source_id=source_id,
                tenant_id=tenant_id,
                title=title,
                acl=acl,
                modified=modified,
            )
            if not chunks:
                raise IngestError("no text found")
        except Exception as exc:  # one bad file must never sink the batch
            outcome.status = "failed"
            if isinstance(exc, IngestError):
                outcome.reason = str(exc)
            elif isinstance(exc, OSError):
                outcome.reason = f"cannot read: {exc}"
            else:
                outcome.reason = f"parser crashed: {type(exc).__name__}: {exc}"
            if source_id in known:
                outcome.reason += " (the previously ingested version is kept)"
            report.files.append(outcome)
            continue
        outcome.chunks = len(chunks)
        record = DocumentRecord(tenant_id, source_id, title, digest, len(chunks), datetime.now(UTC))
        batch.docs.append(_Pending(record, chunks, outcome))
        if batch.size >= batch_chunks:
            await flush()
    await flush()
    removed = sorted(
        s
        for s in known
        if s not in seen and (s in gone or any(s.startswith(root) for root in roots))
    )
    if removed:
        await store.delete_documents(tenant_id, removed)
        report.files.extend(FileOutcome(source_id=s, status="removed") for s in removed)
    if report.chunks_written or removed:
        await store.optimize()
    report.seconds = time.perf_counter() - started
    return report
