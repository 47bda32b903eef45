"""Format registry: which parser reads a file, and the single entry point to run it."""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Literal, Protocol, TypeAlias

from tether.errors import EmptyDocument, UnsupportedType
from tether.ingest.drafts import ChunkOptions, ParsedDocument
from tether.ingest.formats import chats, code, html, markdown, pdf, python, table, tickets
from tether.ingest.formats.textsplit import decode_utf8

FormatName: TypeAlias = Literal[
    "markdown", "text", "html", "pdf", "python", "code", "csv", "tickets", "chats"
]


class Parser(Protocol):
    def __call__(self, data: bytes, *, name: str, options: ChunkOptions) -> ParsedDocument: ...


_BY_EXTENSION: dict[str, FormatName] = {
    ".md": "markdown", ".markdown": "markdown", ".mdx": "markdown",
    ".txt": "text", ".rst": "text", ".text": "text", "": "text",
    ".html": "html", ".htm": "html", ".xhtml": "html",
    ".pdf": "pdf",
    ".py": "python", ".pyi": "python",
    ".csv": "csv", ".tsv": "csv",
    **{extension: "code" for extension in code.LANGUAGES},
}  # fmt: skip
_JSONL = frozenset({".jsonl", ".ndjson"})
_PEEK_RECORDS = 5

_PARSERS: dict[FormatName, Parser] = {
    "markdown": markdown.parse,
    "text": markdown.parse_text,
    "html": html.parse,
    "pdf": pdf.parse,
    "python": python.parse,
    "code": code.parse,
    "csv": table.parse,
    "tickets": tickets.parse,
    "chats": chats.parse,
}

# Keys only an issue tracker export would have; a chat line never carries them.
_TICKET_KEYS = frozenset(
    {*tickets.THREAD_KEYS, *tickets.TITLE_KEYS, "status", "state", "comments", "assignee"}
)


def detect(name: str, data: bytes) -> FormatName:
    """Pick a format from the file name, sniffing content where the name can't decide."""
    if data[:1024].lstrip()[:5] == b"%PDF-":
        return "pdf"
    extension = PurePath(name).suffix.lower()
    if extension in _JSONL:
        return _detect_jsonl(data)
    try:
        return _BY_EXTENSION[extension]
    except KeyError:
        raise UnsupportedType(f"unsupported file type '{extension}'") from None


def parse(fmt: FormatName, data: bytes, *, name: str, options: ChunkOptions) -> ParsedDocument:
    return _PARSERS[fmt](data, name=name, options=options)


def _detect_jsonl(data: bytes) -> FormatName:
    keys_seen: list[set[str]] = []
    for line in decode_utf8(data).splitlines():
        if len(keys_seen) == _PEEK_RECORDS:
            break
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the parser reports bad lines with their number; here we only peek
        if isinstance(record, dict):
            keys_seen.append(set(record))
    if not keys_seen:
        if not data.strip():
            raise EmptyDocument("no text found")
        raise UnsupportedType("JSONL file has no JSON object lines")
    if any(keys & _TICKET_KEYS for keys in keys_seen):
        return "tickets"
    if any(keys & set(chats.SPEAKER_KEYS) and keys & set(chats.TEXT_KEYS) for keys in keys_seen):
        return "chats"
    raise UnsupportedType("JSONL records look like neither tickets nor chat messages")
