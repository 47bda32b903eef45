"""The reranker seam. No cross-encoder weights ship on PyPI, so the default keeps order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tether.types import ScoredChunk


class Reranker(Protocol):
    async def rerank(self, query: str, chunks: Sequence[ScoredChunk]) -> list[ScoredChunk]: ...


class KeepOrder:
    """Identity reranker: the fused order is the final order."""

    async def rerank(self, query: str, chunks: Sequence[ScoredChunk]) -> list[ScoredChunk]:
        return list(chunks)
