from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import EmptyDocument, IngestError, UnreadableDocument, UnsupportedType
from tether.ingest.drafts import ChunkOptions
from tether.ingest.formats import FormatName, detect, parse

FIXTURES = Path(__file__).parents[3] / "fixtures"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("guide.md", "markdown"),
        ("page.html", "html"),
        ("report.pdf", "pdf"),
        ("store.py", "python"),
        ("client.ts", "code"),
        ("prices.csv", "csv"),
        ("tickets.jsonl", "tickets"),
        ("ticket_events.jsonl", "tickets"),
        ("chats.jsonl", "chats"),
    ],
)
def test_fixture_formats_detect_and_parse(name: str, expected: FormatName) -> None:
    data = (FIXTURES / "docs" / name).read_bytes()
    fmt = detect(name, data)
    assert fmt == expected
    doc = parse(fmt, data, name=name, options=ChunkOptions())
    assert doc.drafts and all(d.text.strip() for d in doc.drafts)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("notes.markdown", "markdown"),
        ("Page.MDX", "markdown"),
        ("README", "text"),
        ("notes.txt", "text"),
        ("index.rst", "text"),
        ("old.HTM", "html"),
        ("main.go", "code"),
        ("schema.sql", "code"),
        ("deploy.sh", "code"),
        ("app.tsx", "code"),
        ("cities.tsv", "csv"),
        ("dir/sub/module.py", "python"),
    ],
)
def test_extension_mapping(name: str, expected: FormatName) -> None:
    assert detect(name, b"content\n") == expected


def test_pdf_magic_wins_over_extension() -> None:
    report = (FIXTURES / "docs" / "report.pdf").read_bytes()
    assert detect("download", report) == "pdf"
    assert detect("report.bin", report) == "pdf"


def test_unknown_extension_is_unsupported() -> None:
    data = (FIXTURES / "bad" / "unknown.xyz").read_bytes()
    with pytest.raises(UnsupportedType, match=r"^unsupported file type '\.xyz'$"):
        detect("unknown.xyz", data)


def test_jsonl_that_is_neither_tickets_nor_chats() -> None:
    data = b'{"sensor": "t1", "value": 21.5}\n{"sensor": "t2", "value": 19.0}\n'
    with pytest.raises(UnsupportedType, match="neither tickets nor chat"):
        detect("metrics.ndjson", data)


def test_jsonl_peek_skips_bad_lines() -> None:
    data = b'not json\n{"speaker": "a", "text": "hi", "ts": 1}\n'
    assert detect("log.jsonl", data) == "chats"


def test_jsonl_with_only_garbage_is_unsupported() -> None:
    with pytest.raises(UnsupportedType):
        detect("x.jsonl", b"nope\nstill nope\n")


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("corrupt.pdf", UnreadableDocument, "PDF is corrupt or truncated"),
        ("latin1.txt", UnreadableDocument, "not valid UTF-8 (invalid byte 0xe9 at offset 3)"),
        ("empty.md", EmptyDocument, "no text found"),
        ("ragged.csv", UnreadableDocument, "CSV line 5 has 4 fields, header has 3"),
        ("broken.jsonl", UnreadableDocument, "line 3: invalid JSON"),
        ("unknown.xyz", UnsupportedType, "unsupported file type '.xyz'"),
    ],
)
def test_bad_fixtures_fail_with_a_short_reason(
    name: str, error: type[IngestError], message: str
) -> None:
    data = (FIXTURES / "bad" / name).read_bytes()
    with pytest.raises(error) as caught:
        parse(detect(name, data), data, name=name, options=ChunkOptions())
    assert str(caught.value).startswith(message)
    assert len(str(caught.value)) < 120
