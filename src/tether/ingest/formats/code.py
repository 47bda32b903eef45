"""Source code other than Python.

JS/TS, Go, Rust and Java go by symbol (formats/treesitter.py); other languages, and files
where no symbol could be found, fall back to top-level blocks merged up to max_chars.
"""

from __future__ import annotations

from pathlib import PurePath

from tether.errors import EmptyDocument
from tether.ingest.drafts import ChunkDraft, ChunkOptions, ParsedDocument
from tether.ingest.formats import treesitter
from tether.ingest.formats.textsplit import decode_utf8, normalize_newlines

LANGUAGES: dict[str, str] = {
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".go": "go", ".rs": "rust", ".java": "java", ".kt": "kotlin", ".kts": "kotlin",
    ".scala": "scala", ".swift": "swift", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp",
    ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp", ".cs": "csharp", ".rb": "ruby",
    ".php": "php", ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".ps1": "powershell",
    ".sql": "sql", ".lua": "lua", ".pl": "perl", ".r": "r", ".jl": "julia", ".dart": "dart",
    ".ex": "elixir", ".exs": "elixir", ".erl": "erlang", ".hs": "haskell", ".clj": "clojure",
    ".ml": "ocaml", ".vue": "vue", ".svelte": "svelte", ".css": "css", ".scss": "scss",
    ".proto": "protobuf", ".tf": "terraform", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml",
    ".ini": "ini", ".cfg": "ini",
}  # fmt: skip

_Span = tuple[int, int]  # 1-based inclusive line range


def language_for(name: str) -> str:
    return LANGUAGES.get(PurePath(name).suffix.lower(), "text")


def parse(data: bytes, *, name: str, options: ChunkOptions) -> ParsedDocument:
    source = normalize_newlines(decode_utf8(data))
    language = language_for(name)
    drafts = treesitter.symbol_drafts(source, name=name, language=language, options=options)
    if drafts is None:
        drafts = _block_drafts(source.split("\n"), name, language, options)
    if not drafts:
        raise EmptyDocument("no text found")
    return ParsedDocument(title=None, drafts=drafts)


def _block_drafts(
    lines: list[str], name: str, language: str, options: ChunkOptions
) -> list[ChunkDraft]:
    pieces: list[tuple[_Span, str]] = []
    for start, end in _top_level_blocks(lines):
        pieces.extend(_split_block(lines, start, end, options.max_chars))
    return [
        ChunkDraft(
            text=text,
            section=f"lines {start}-{end}",
            kind="code",
            metadata={"file": name, "language": language, "line_start": start, "line_end": end},
        )
        for (start, end), text in _merge(lines, pieces, options.max_chars)
    ]


def _top_level_blocks(lines: list[str]) -> list[_Span]:
    """A block starts at a column-0 line right after a blank line; blanks are trimmed off."""
    blocks: list[_Span] = []
    start: int | None = None
    last_text = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        starts_block = not line[0].isspace() and number > 1 and not lines[number - 2].strip()
        if start is not None and starts_block:
            blocks.append((start, last_text))
            start = None
        if start is None:
            start = number
        last_text = number
    if start is not None:
        blocks.append((start, last_text))
    return blocks


def _source(lines: list[str], start: int, end: int) -> str:
    return "\n".join(line.rstrip() for line in lines[start - 1 : end])


def _split_block(lines: list[str], start: int, end: int, max_chars: int) -> list[tuple[_Span, str]]:
    """Cut an oversize block between lines, preferring blank lines; minified lines by length."""
    if len(_source(lines, start, end)) <= max_chars:
        return [((start, end), _source(lines, start, end))]
    pieces: list[tuple[_Span, str]] = []
    first = start
    while first <= end:
        if not lines[first - 1].strip():
            first += 1
            continue
        line = lines[first - 1].rstrip()
        if len(line) > max_chars:
            pieces.extend(
                ((first, first), line[i : i + max_chars]) for i in range(0, len(line), max_chars)
            )
            first += 1
            continue
        size, last, last_blank = len(line), first, None
        while last < end and size + 1 + len(lines[last].rstrip()) <= max_chars:
            size += 1 + len(lines[last].rstrip())
            last += 1
            if not lines[last - 1].strip():
                last_blank = last
        if last < end and last_blank is not None:
            last = last_blank - 1
        while not lines[last - 1].strip():
            last -= 1
        pieces.append(((first, last), _source(lines, first, last)))
        first = last + 1
    return pieces


def _merge(
    lines: list[str], pieces: list[tuple[_Span, str]], max_chars: int
) -> list[tuple[_Span, str]]:
    merged: list[tuple[_Span, str]] = []
    for (start, end), text in pieces:
        if merged:
            (prev_start, prev_end), _ = merged[-1]
            # Merging only whole lines keeps the source (and its blank lines) verbatim.
            combined = _source(lines, prev_start, end)
            if prev_end < start and len(combined) <= max_chars:
                merged[-1] = ((prev_start, end), combined)
                continue
        merged.append(((start, end), text))
    return merged
