"""What a format chunker hands back: chunk drafts before ids, tenant and ACL are stamped."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from tether.types import MetaValue


class ChunkOptions(BaseModel):
    """Sizing knobs shared by every format. Sizes are in characters (cheap, stable)."""

    model_config = ConfigDict(frozen=True)

    #: Largest chunk body; ~1200 characters is ~250 MiniLM word pieces.
    max_chars: int = Field(default=1200, ge=200)
    #: Characters of the previous chunk repeated at the start of the next one when a long
    #: section must be split, so a sentence straddling the cut stays findable.
    overlap_chars: int = Field(default=150, ge=0)
    #: CSV rows per chunk.
    rows_per_chunk: int = Field(default=20, ge=1)
    #: Chat turns per window and turns shared between neighbouring windows.
    chat_window: int = Field(default=8, ge=1)
    chat_overlap: int = Field(default=2, ge=0)


class ChunkDraft(BaseModel):
    """One chunk as a chunker sees it."""

    model_config = ConfigDict(frozen=True)

    text: str
    #: Section path, e.g. "Install > From source"; symbol name for code; "rows 21-40" for CSV.
    section: str = ""
    page: int | None = None
    kind: str = "text"
    created_at: datetime | None = None
    updated_at: datetime | None = None
    metadata: dict[str, MetaValue] = Field(default_factory=dict)


class ParsedDocument(BaseModel):
    """A parsed source: an optional title found in the content and its chunk drafts."""

    title: str | None = None
    drafts: list[ChunkDraft]


def code_draft(
    body: str,
    *,
    imports: str,
    file: str,
    symbol: str,
    symbol_kind: str,
    line_start: int,
    line_end: int,
    language: str,
) -> ChunkDraft:
    """One source-code symbol as a chunk: the import lines it uses, then its text."""
    return ChunkDraft(
        text=f"{imports}\n\n{body}" if imports else body,
        section=symbol,
        kind="code",
        metadata={
            "file": file,
            "symbol": symbol,
            "symbol_kind": symbol_kind,
            "line_start": line_start,
            "line_end": line_end,
            "language": language,
        },
    )
