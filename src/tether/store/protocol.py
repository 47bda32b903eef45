"""The `Store` protocol. Every query takes a `Scope`; there is no 'all tenants' query."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from tether.errors import StoreError, TenantRequired
from tether.models.embedder import Vectors
from tether.store.filters import Filter
from tether.types import PUBLIC, Chunk


@dataclass(frozen=True)
class Scope:
    """Who is asking: a tenant (required) and the principals the caller holds."""

    tenant_id: str
    principals: frozenset[str] = field(default_factory=lambda: frozenset({PUBLIC}))

    def __post_init__(self) -> None:
        if not isinstance(self.tenant_id, str) or not self.tenant_id.strip():
            raise TenantRequired("a store query needs a tenant; refusing to search all tenants")
        # Everyone in a tenant holds the public principal.
        object.__setattr__(self, "principals", frozenset(self.principals) | {PUBLIC})


@dataclass(frozen=True)
class DocumentRecord:
    tenant_id: str
    source_id: str
    title: str
    content_hash: str
    chunk_count: int
    ingested_at: datetime


class Store(Protocol):
    """What retrieval and indexing need from a backend (SQLite now, PostgreSQL later)."""

    async def document_hashes(self, tenant_id: str, prefix: str = "") -> dict[str, str]:
        """source_id -> content hash for the tenant's documents whose id starts with prefix."""
        ...

    async def replace_documents(
        self, tenant_id: str, batch: Sequence[tuple[DocumentRecord, Sequence[Chunk], Vectors]]
    ) -> None:
        """Atomically replace each document's chunks (all of the batch, or none)."""
        ...

    async def delete_documents(self, tenant_id: str, source_ids: Sequence[str]) -> int: ...

    async def list_documents(self, scope: Scope) -> list[DocumentRecord]: ...

    async def keyword_search(
        self, scope: Scope, text: str, filters: Sequence[Filter], limit: int
    ) -> list[tuple[str, float]]:
        """(chunk id, score) best first; higher is better."""
        ...

    async def vector_search(
        self, scope: Scope, vector: Vectors, filters: Sequence[Filter], limit: int
    ) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) best first."""
        ...

    async def get_chunks(self, scope: Scope, ids: Sequence[str]) -> list[Chunk]:
        """The chunks with these ids that the scope may see, in the order asked."""
        ...

    async def chunk_vectors(self, scope: Scope, ids: Sequence[str]) -> Vectors: ...

    async def count_chunks(self, scope: Scope) -> int: ...

    async def optimize(self) -> None:
        """Refresh planner statistics after bulk writes (ingest, migrate)."""
        ...

    async def tenants(self) -> list[str]:
        """Every tenant with a partition (for operators' tools such as `tether migrate`)."""
        ...

    def export_documents(
        self, tenant_id: str, *, batch: int = 100
    ) -> AsyncIterator[list[tuple[DocumentRecord, list[Chunk], Vectors]]]:
        """A tenant's documents with their chunks and vectors, in batches, unfiltered by
        ACL: an operator's copy, not a caller's query."""
        ...

    async def close(self) -> None: ...


def check_batch(
    tenant_id: str,
    batch: Sequence[tuple[DocumentRecord, Sequence[Chunk], Vectors]],
    dim: int,
) -> None:
    """What every backend checks before a write: a tenant, one tenant throughout, and one
    vector of the store's dimension per chunk."""
    Scope(tenant_id)
    for record, chunks, vectors in batch:
        if record.tenant_id != tenant_id or any(c.tenant_id != tenant_id for c in chunks):
            raise StoreError("a document or chunk names another tenant than the write")
        if vectors.shape != (len(chunks), dim):
            raise StoreError(
                f"{record.source_id}: {vectors.shape} vectors for {len(chunks)} chunks"
            )


async def open_store(url: str, *, embed_model: str, dim: int) -> Store:
    """Open the store a TETHER_STORE url names (migrating a PostgreSQL schema if needed)."""
    if url.startswith("sqlite:///"):
        from tether.store.sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///"), embed_model=embed_model, dim=dim)
    if url.startswith(("postgresql://", "postgres://")):
        from tether.store.postgres import PostgresStore

        return await PostgresStore.open(url, embed_model=embed_model, dim=dim)
    raise StoreError(f"unknown store url {url!r}; use sqlite:///path/to/tether.db")


__all__ = ["PUBLIC", "DocumentRecord", "Scope", "Store", "open_store"]
