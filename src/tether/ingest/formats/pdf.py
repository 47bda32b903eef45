"""PDF via pypdf: page by page, with paragraphs rebuilt from hard-wrapped lines."""

from __future__ import annotations

import io
import logging
import re

from pypdf import PasswordType, PdfReader

from tether.errors import EmptyDocument, UnreadableDocument
from tether.ingest.drafts import ChunkDraft, ChunkOptions, ParsedDocument
from tether.ingest.formats.textsplit import collapse_spaces, normalize_newlines, pack_paragraphs

_SENTENCE_END = re.compile("[.!?:\u2026][\"'\u201d\u2019)\\]]*$")
# Bullets, dashes (hyphen, en dash) and "1." / "2)" list markers.
_BULLET = re.compile("^(?:[\u2022\u25e6\u25aa\u2023*\\-\u2013]|\\d{1,3}[.)])\\s")
# The page's line width, robust to the odd overlong line (a URL, a table row).
_WIDTH_PERCENTILE = 0.9


def parse(data: bytes, *, name: str, options: ChunkOptions) -> ParsedDocument:
    if b"%PDF-" not in data[:1024]:
        raise UnreadableDocument("not a PDF (no %PDF- header)")
    reader, pages = _read(data)
    drafts: list[ChunkDraft] = []
    for number, text in enumerate(pages, start=1):
        chunks = pack_paragraphs(_paragraphs(text), options.max_chars, options.overlap_chars)
        drafts.extend(
            ChunkDraft(text=chunk, section=f"page {number}", page=number, metadata={"page": number})
            for chunk in chunks
        )
    if not drafts:
        raise EmptyDocument("no extractable text (scanned PDF?)")
    return ParsedDocument(title=_title(reader), drafts=drafts)


def _read(data: bytes) -> tuple[PdfReader, list[str]]:
    # pypdf raises far more than PyPdfError on hostile input (ValueError, KeyError,
    # struct/zlib errors, RecursionError...); any of them means the same to the user.
    # Its own warnings about malformed structure would only flood the ingest log.
    pypdf_log = logging.getLogger("pypdf")
    level = pypdf_log.level
    pypdf_log.setLevel(logging.ERROR)
    try:
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
                raise UnreadableDocument("PDF is encrypted")
            page_count = len(reader.pages)
        except UnreadableDocument:
            raise
        except Exception as exc:
            raise UnreadableDocument(_describe(exc, "PDF is corrupt or truncated")) from None
        texts: list[str] = []
        for index in range(page_count):
            try:
                texts.append(reader.pages[index].extract_text() or "")
            except Exception as exc:
                raise UnreadableDocument(
                    _describe(exc, f"PDF page {index + 1} could not be read")
                ) from None
        return reader, texts
    finally:
        pypdf_log.setLevel(level)


def _describe(exc: Exception, what: str) -> str:
    if "decrypt" in str(exc).lower() or "encrypt" in str(exc).lower():
        return "PDF is encrypted"
    return what


def _title(reader: PdfReader) -> str | None:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:
        # A broken info dictionary costs the title, not the document.
        return None
    if not title:
        return None
    return collapse_spaces(str(title)) or None


def _paragraphs(text: str) -> list[str]:
    """Rejoin hard-wrapped lines; break where the layout says a paragraph ended."""
    raw_lines = normalize_newlines(text).split("\n")
    widths = sorted(len(collapse_spaces(line)) for line in raw_lines if line.strip())
    if not widths:
        return []
    width = widths[min(len(widths) - 1, int(len(widths) * _WIDTH_PERCENTILE))]
    paragraphs: list[str] = []
    current = ""
    previous = ""
    for raw in raw_lines:
        line = collapse_spaces(raw)
        if not line:
            if current:
                paragraphs.append(current)
            current, previous = "", ""
            continue
        if current and _ends_paragraph(previous, raw, line, width):
            paragraphs.append(current)
            current = ""
        if not current:
            current = line
        elif current.endswith("-") and line[:1].islower():
            current = current[:-1] + line  # re-join a word hyphenated across the wrap
        else:
            current = f"{current} {line}"
        previous = line
    if current:
        paragraphs.append(current)
    return paragraphs


def _ends_paragraph(previous: str, raw: str, line: str, width: int) -> bool:
    if _BULLET.match(line):
        return True
    # Word wrap only breaks when the next word doesn't fit; if it would have fitted,
    # the author ended the line.
    first_word = line.split(" ", 1)[0]
    chosen_break = len(previous) + 1 + len(first_word) < width
    if _SENTENCE_END.search(previous):
        return chosen_break or raw[:1].isspace()
    # An unpunctuated line ended by choice before a capital is a heading or a label.
    return chosen_break and (line[:1].isupper() or line[:1].isdigit())
