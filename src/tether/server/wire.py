"""JSON shapes shared by the routes: a citation with what a reader needs to check it, a
faster JSON response, server-sent events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse
from pydantic_core import to_json

from tether.types import Chunk, Citation

SNIPPET_CHARS = 280


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def citation_payload(citation: Citation, chunks: dict[str, Chunk]) -> dict[str, Any]:
    chunk = chunks.get(citation.chunk_id)
    return {
        "chunk_id": citation.chunk_id,
        "source_id": citation.source_id,
        "title": citation.title,
        "section": citation.section,
        "page": citation.page,
        "snippet": snippet(citation.quote or (chunk.text if chunk else "")),
    }


class FastJSONResponse(JSONResponse):
    """JSONResponse rendered by pydantic-core: the same compact UTF-8 JSON, ~4x faster
    than the stdlib encoder for a completion (non-finite floats become null rather than
    failing the response)."""

    def render(self, content: Any) -> bytes:
        return to_json(content, inf_nan_mode="null")


def sse_response(events: AsyncIterator[str]) -> StreamingResponse:
    """Server-sent events, unbuffered by proxies along the way."""
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
