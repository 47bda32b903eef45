"""Stable ids: the same content at the same place always gets the same id."""

from __future__ import annotations

import hashlib


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunk_id(source_id: str, position: int, text: str) -> str:
    """Derived from source id + position + content hash, so an edit changes exactly the
    ids of the chunks it touched (and those after an inserted or removed chunk)."""
    digest = hashlib.sha256(
        f"{source_id}\x00{position}\x00{content_hash(text.encode())}".encode()
    ).hexdigest()
    return f"c{digest[:15]}"
