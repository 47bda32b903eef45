"""The shared vocabulary every layer speaks: messages, chunks, citations, answers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

Role: TypeAlias = Literal["system", "user", "assistant", "tool"]

#: Values a chunk's metadata may hold: JSON scalars or a list of strings.
MetaValue: TypeAlias = str | int | float | bool | list[str] | None

#: The principal that every caller of a tenant holds; a chunk whose ACL names it is
#: visible to the whole tenant.
PUBLIC: str = "*"


class Message(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Role
    content: str
    name: str | None = None


class Chunk(BaseModel):
    """One retrievable piece of a source document, with everything needed to cite it."""

    model_config = ConfigDict(frozen=True)

    id: str
    source_id: str
    tenant_id: str
    text: str
    title: str = ""
    section: str = ""
    page: int | None = None
    position: int = 0
    kind: str = "text"
    acl: tuple[str, ...] = (PUBLIC,)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    metadata: dict[str, MetaValue] = Field(default_factory=dict)


class ScoredChunk(BaseModel):
    """A chunk with the fused score it was ranked by and the per-signal evidence."""

    model_config = ConfigDict(frozen=True)

    chunk: Chunk
    score: float
    #: Per-retriever evidence, e.g. {"bm25_rank": 1, "dense": 0.71}.
    signals: dict[str, float] = Field(default_factory=dict)


class Citation(BaseModel):
    model_config = ConfigDict(frozen=True)

    chunk_id: str
    source_id: str
    title: str = ""
    section: str = ""
    page: int | None = None
    quote: str = ""


class Answer(BaseModel):
    summary: str
    citations: list[Citation] = Field(default_factory=list)
    confidence: float = Field(ge=0.0, le=1.0)
    declined: bool = False
    #: Things the caller should know, e.g. citations dropped because they named chunks
    #: that were not in the context.
    flags: list[str] = Field(default_factory=list)


class Usage(BaseModel):
    """Token counts one model call consumed, as the provider reported them."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    #: Input tokens served from the provider's prompt cache (billed at the cached rate).
    cached_input_tokens: int = Field(default=0, ge=0)
    #: Input tokens written to the provider's prompt cache (Anthropic bills these apart).
    cache_write_tokens: int = Field(default=0, ge=0)
