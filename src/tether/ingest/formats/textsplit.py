"""Text plumbing every format shares: strict decoding, whitespace, sentences, packing."""

from __future__ import annotations

import re
from collections.abc import Iterable

from tether.errors import UnreadableDocument

_BOM = b"\xef\xbb\xbf"

# Abbreviations whose trailing period must not end a sentence; lower-cased, no period.
_ABBREVIATIONS = frozenset(
    {
        "e.g", "i.e", "etc", "vs", "cf", "al", "approx", "no", "nr", "fig", "eq", "ch",
        "sec", "vol", "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "inc", "ltd",
        "co", "corp", "dept", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
        "sept", "oct", "nov", "dec",
    }
)  # fmt: skip

# A candidate boundary: terminal punctuation, optional closing quotes/brackets, whitespace,
# then something that can start a sentence. Lower-case starts are left alone on purpose:
# "version 2.1 is out" or "see fig. below" would otherwise be cut.
_CLOSERS = "\"'\u201d\u2019)\\]"
_OPENERS = "\"'\u201c\u2018(\\["
_BOUNDARY = re.compile(rf"([.!?\u2026]+)([{_CLOSERS}]*)(\s+)(?=[{_OPENERS}]?[A-Z0-9])")
_INLINE_SPACE = re.compile(r"[ \t\f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_ZERO_WIDTH = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff]")
_CONTROL = re.compile(r"[\x01-\x08\x0b\x0e-\x1f\x7f]")
_BLANK_RUN = re.compile(r"\n{3,}")


def decode_utf8(data: bytes) -> str:
    """Decode strictly: a wrong guess would index mojibake, so refuse instead."""
    if b"\x00" in data:
        raise UnreadableDocument("binary file (contains NUL bytes)")
    offset = len(_BOM) if data.startswith(_BOM) else 0
    try:
        return data[offset:].decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[offset + exc.start]
        raise UnreadableDocument(
            f"not valid UTF-8 (invalid byte 0x{bad:02x} at offset {offset + exc.start})"
        ) from None


def normalize_newlines(text: str) -> str:
    """Unify line endings and drop invisible characters; keeps indentation (code needs it)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ZERO_WIDTH.sub("", text)
    return _CONTROL.sub("", text)


def normalize_whitespace(text: str) -> str:
    """Prose form: collapse inline runs, trim lines, at most one blank line in a row."""
    lines = (_INLINE_SPACE.sub(" ", line).strip() for line in normalize_newlines(text).split("\n"))
    return _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip()


def collapse_spaces(text: str) -> str:
    """Single-line form: every whitespace run, newlines included, becomes one space."""
    return " ".join(text.split())


def split_paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs of already normalised text."""
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def split_sentences(text: str) -> list[str]:
    """Sentences of a paragraph, whitespace inside each collapsed to single spaces."""
    text = collapse_spaces(text)
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        if match.group(1) == "." and _is_abbreviation(text, match.start(1)):
            continue
        sentences.append(text[start : match.end(2)])
        start = match.end(3)
    if start < len(text):
        sentences.append(text[start:])
    return [s for s in sentences if s]


def _is_abbreviation(text: str, dot: int) -> bool:
    word_start = dot
    while word_start > 0 and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:dot].lstrip(_OPENERS.replace("\\", "")).lower()
    # Single letters are initials ("J. Smith"), not sentence ends.
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def hard_cut(text: str, max_chars: int) -> list[str]:
    """Cut text into pieces <= max_chars at word boundaries; mid-word only for huge words."""
    pieces: list[str] = []
    current = ""
    for word in text.split():
        while len(word) > max_chars:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:max_chars])
            word = word[max_chars:]
        if not current:
            current = word
        elif len(current) + 1 + len(word) <= max_chars:
            current = f"{current} {word}"
        else:
            pieces.append(current)
            current = word
    if current:
        pieces.append(current)
    return pieces


def tail_overlap(text: str, limit: int) -> str:
    """Up to `limit` trailing characters, starting at a sentence start or else a word start."""
    if limit <= 0 or not text:
        return ""
    if len(text) <= limit:
        window_start = 0
    else:
        window_start = len(text) - limit
        window = text[window_start:]
        boundary = _BOUNDARY.search(window)
        if boundary is not None:
            return window[boundary.end(3) :].strip()
        if not text[window_start - 1].isspace():
            space = re.search(r"\s", window)
            if space is None:
                return ""
            window_start += space.end()
    return text[window_start:].strip()


def pack_paragraphs(paragraphs: Iterable[str], max_chars: int, overlap_chars: int) -> list[str]:
    """Merge paragraphs into chunks of at most max_chars characters.

    A paragraph longer than max_chars is split at sentence boundaries (a sentence longer
    than max_chars is cut at word boundaries). Once the input needs more than one chunk,
    each continuation starts with up to overlap_chars of the previous chunk's tail.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    # (text, separator that joins it to what precedes it in the same chunk)
    units: list[tuple[str, str]] = []
    for paragraph in paragraphs:
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= max_chars:
            units.append((paragraph, "\n\n"))
            continue
        separator = "\n\n"
        for sentence in split_sentences(paragraph):
            for piece in hard_cut(sentence, max_chars) if len(sentence) > max_chars else [sentence]:
                units.append((piece, separator))
                separator = " "

    chunks: list[str] = []
    current = ""
    for text, separator in units:
        if not current:
            current = text
        elif len(current) + len(separator) + len(text) <= max_chars:
            current = f"{current}{separator}{text}"
        else:
            chunks.append(current)
            room = max_chars - len(text) - len(separator)
            overlap = tail_overlap(current, min(overlap_chars, room))
            current = f"{overlap}{separator}{text}" if overlap else text
    if current:
        chunks.append(current)
    return chunks
