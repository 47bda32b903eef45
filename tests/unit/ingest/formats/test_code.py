from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import EmptyDocument, UnreadableDocument
from tether.ingest.drafts import ChunkOptions, ParsedDocument
from tether.ingest.formats import code

DOCS = Path(__file__).parents[3] / "fixtures" / "docs"
# Kotlin has no tree-sitter grammar here, so it always goes through the block splitter.
BILLING = (DOCS.parent / "code" / "billing.kt").read_bytes()
LINES = BILLING.decode().split("\n")


def _parse(data: bytes = BILLING, name: str = "billing.kt", **options: int) -> ParsedDocument:
    return code.parse(data, name=name, options=ChunkOptions(**options))


def _lines(start: object, end: object) -> str:
    assert isinstance(start, int) and isinstance(end, int)
    return "\n".join(LINES[start - 1 : end])


def test_small_file_is_one_chunk_with_metadata() -> None:
    drafts = _parse(max_chars=5000).drafts
    assert len(drafts) == 1
    meta = drafts[0].metadata
    assert meta == {"file": "billing.kt", "language": "kotlin", "line_start": 1, "line_end": 42}
    assert drafts[0].kind == "code"
    assert drafts[0].section == "lines 1-42"


def test_blocks_merge_up_to_max_chars_and_keep_source_verbatim() -> None:
    drafts = _parse(max_chars=400).drafts
    assert len(drafts) > 2
    assert all(len(d.text) <= 400 for d in drafts)
    for draft in drafts:
        assert draft.text == _lines(draft.metadata["line_start"], draft.metadata["line_end"])
        assert draft.section == f"lines {draft.metadata['line_start']}-{draft.metadata['line_end']}"
    # Two short neighbouring functions share a chunk.
    assert any("listInvoices" in d.text and "voidInvoice" in d.text for d in drafts)


def test_blocks_start_at_column_zero_after_a_blank_line() -> None:
    drafts = _parse(max_chars=400).drafts
    starts = [LINES[int(str(d.metadata["line_start"])) - 1] for d in drafts]
    for line, draft in zip(starts, drafts, strict=True):
        if draft.metadata["line_start"] != 1 and not line.startswith(" "):
            assert LINES[int(str(draft.metadata["line_start"])) - 2] == ""
    # The comment above a function stays with it.
    assert any(d.text.startswith("// Sums open invoices") for d in drafts)


def test_oversize_block_is_split_between_lines_in_order() -> None:
    drafts = _parse(max_chars=300).drafts
    assert all(len(d.text) <= 300 for d in drafts)
    flat = [int(str(d.metadata[key])) for d in drafts for key in ("line_start", "line_end")]
    assert flat == sorted(flat)
    assert "\n".join(d.text for d in drafts).count("suspend fun request") == 1
    # `request` (lines 14-30) is longer than 300 characters, so it was cut.
    assert not any(d.metadata["line_start"] <= 14 and d.metadata["line_end"] >= 30 for d in drafts)


def test_minified_line_is_hard_cut() -> None:
    # JavaScript, but no symbol in it: the block splitter takes over.
    data = ("var a=" + "1+" * 400 + "1;\n").encode()
    drafts = _parse(data, name="bundle.min.js", max_chars=300).drafts
    assert all(len(d.text) <= 300 for d in drafts)
    assert "".join(d.text for d in drafts) == data.decode().rstrip("\n")
    assert {d.metadata["language"] for d in drafts} == {"javascript"}


def test_language_from_extension() -> None:
    assert code.language_for("main.go") == "go"
    assert code.language_for("lib.RS") == "rust"
    assert code.language_for("query.sql") == "sql"
    assert code.language_for("App.tsx") == "typescript"


def test_whitespace_only_file_is_empty() -> None:
    with pytest.raises(EmptyDocument):
        _parse(b"\n   \n\t\n", name="x.go")


def test_supported_language_is_chunked_by_symbol() -> None:
    drafts = _parse((DOCS / "client.ts").read_bytes(), name="client.ts").drafts
    sections = [d.section for d in drafts]
    assert sections == [
        "client",
        "Invoice",
        "request",
        "listInvoices",
        "voidInvoice",
        "outstandingCents",
    ]
    request = drafts[2]
    assert request.metadata == {
        "file": "client.ts",
        "symbol": "request",
        "symbol_kind": "function",
        "line_start": 14,
        "line_end": 30,
        "language": "typescript",
    }
    assert request.text.startswith('import { setTimeout as sleep } from "node:timers/promises";')


def test_unsupported_language_uses_blocks_even_for_code_tree_sitter_would_parse() -> None:
    # The same TypeScript text named .swift: no grammar, so no symbols.
    drafts = _parse((DOCS / "client.ts").read_bytes(), name="client.swift", max_chars=5000).drafts
    assert [d.section for d in drafts] == ["lines 1-45"]
    assert "symbol" not in drafts[0].metadata


def test_file_without_any_symbol_falls_back_to_blocks_with_all_its_text() -> None:
    data = b"this is not go at all {{{\n\n))) random ((( text\n"
    drafts = _parse(data, name="notes.go").drafts
    assert [d.section for d in drafts] == ["lines 1-3"]
    assert drafts[0].text == data.decode().rstrip("\n")
    assert drafts[0].metadata["language"] == "go"


def test_imports_only_file_falls_back_to_blocks() -> None:
    data = b'import "./polyfill";\nimport "./styles.css";\n'
    drafts = _parse(data, name="index.js").drafts
    assert [(d.section, d.text) for d in drafts] == [("lines 1-2", data.decode().rstrip())]


@pytest.mark.parametrize("name", ["client.ts", "main.go", "lib.rs", "App.java", "notes.kt"])
def test_undecodable_source_is_unreadable(name: str) -> None:
    with pytest.raises(UnreadableDocument, match="UTF-8"):
        _parse(b"function f() {}\n\xff\xfe\n", name=name)
    with pytest.raises(UnreadableDocument, match="binary"):
        _parse(b"fn main() {}\x00\n", name=name)
