from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import EmptyDocument
from tether.ingest.drafts import ChunkOptions, ParsedDocument
from tether.ingest.formats import code

CLIENT = (Path(__file__).parents[3] / "fixtures" / "docs" / "client.ts").read_bytes()
LINES = CLIENT.decode().split("\n")


def _parse(data: bytes = CLIENT, name: str = "client.ts", **options: int) -> ParsedDocument:
    return code.parse(data, name=name, options=ChunkOptions(**options))


def _lines(start: object, end: object) -> str:
    assert isinstance(start, int) and isinstance(end, int)
    return "\n".join(LINES[start - 1 : end])


def test_small_file_is_one_chunk_with_metadata() -> None:
    drafts = _parse(max_chars=5000).drafts
    assert len(drafts) == 1
    meta = drafts[0].metadata
    assert meta == {"file": "client.ts", "language": "typescript", "line_start": 1, "line_end": 45}
    assert drafts[0].kind == "code"


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
    assert "\n".join(d.text for d in drafts).count("export async function request") == 1


def test_minified_line_is_hard_cut() -> None:
    data = ("var a=" + "1+" * 400 + "1;\n").encode()
    drafts = _parse(data, name="bundle.min.js", max_chars=300).drafts
    assert all(len(d.text) <= 300 for d in drafts)
    assert "".join(d.text for d in drafts) == data.decode().rstrip("\n")
    assert {d.metadata["language"] for d in drafts} == {"javascript"}


def test_language_from_extension() -> None:
    assert code.language_for("main.go") == "go"
    assert code.language_for("lib.RS") == "rust"
    assert code.language_for("query.sql") == "sql"


def test_whitespace_only_file_is_empty() -> None:
    with pytest.raises(EmptyDocument):
        _parse(b"\n   \n\t\n", name="x.go")
