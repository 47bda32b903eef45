from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import EmptyDocument, UnreadableDocument
from tether.ingest.drafts import ChunkOptions, ParsedDocument
from tether.ingest.formats import html

PAGE = (Path(__file__).parents[3] / "fixtures" / "docs" / "page.html").read_bytes()


def _parse(data: bytes, **options: int) -> ParsedDocument:
    return html.parse(data, name="page.html", options=ChunkOptions(**options))


def _all_text(doc: ParsedDocument) -> str:
    return "\n".join(d.text for d in doc.drafts)


@pytest.mark.parametrize(
    "boilerplate",
    [
        "Pricing plans",  # nav
        "Engineering blog",  # nav
        "beacon-7731",  # inline script
        "analytics",  # external script
        "font-family",  # style
        "all systems operational",  # page header
        "We use cookies",  # role=banner
        "All rights reserved",  # footer
        "newsletter",  # footer
        "Related articles",  # aside
        "Was this page helpful",  # form
        "Decorative divider",  # aria-hidden
        "Enable JavaScript",  # noscript
    ],
)
def test_boilerplate_is_dropped(boilerplate: str) -> None:
    assert boilerplate not in _all_text(_parse(PAGE))


def test_title_from_title_tag() -> None:
    assert _parse(PAGE).title == "Rotating API keys | Acme Cloud Docs"


def test_title_falls_back_to_h1() -> None:
    doc = _parse(b"<html><body><h1>Runbook</h1><p>Restart the worker.</p></body></html>")
    assert doc.title == "Runbook"


def test_headings_build_section_paths_without_orphans() -> None:
    drafts = _parse(PAGE).drafts
    assert [d.section for d in drafts] == [
        "Rotating API keys",
        "Rotating API keys > Before you start > Permissions",
        "Rotating API keys > Create the new key",
        "Rotating API keys > Key limits by plan",
        "Rotating API keys > Revoke the old key",
    ]
    for draft in drafts:
        heading, _, body = draft.text.partition("\n")
        assert heading == draft.section.split(" > ")[-1]
        assert body.strip()


def test_block_text_lists_tables_pre_and_loose_div_text() -> None:
    text = _all_text(_parse(PAGE))
    assert "Rotate them at least every 90 days, and immediately" in text  # inline <strong>
    assert "Editors can request it from an owner." in text
    assert "Business | 10 | 365 days" in text
    assert "--expires 90d\n# prints the key id" in text  # pre keeps its lines
    assert "Keys created from the CLI inherit" in text  # bare text inside a div
    assert "Settings → API keys" in text  # entity decoded


def test_main_is_preferred_over_body() -> None:
    data = b"<body><div>Sidebar promo text</div><main><p>Main content here.</p></main></body>"
    assert _all_text(_parse(data)) == "Main content here."


def test_body_used_when_no_main_or_article() -> None:
    data = b"<body><div class='content'><p>First.</p><p>Second.</p></div></body>"
    assert _all_text(_parse(data)) == "First.\n\nSecond."


def test_article_header_with_h1_survives() -> None:
    data = (
        b"<body><header>Site chrome</header><article><header><h1>Post</h1></header>"
        b"<p>Post body.</p></article></body>"
    )
    drafts = _parse(data).drafts
    assert [d.text for d in drafts] == ["Post\nPost body."]


def test_declared_charset_is_used() -> None:
    data = b'<html><head><meta charset="windows-1252"></head><body><p>Caf\xe9 \x80 5</p></body>'
    assert _all_text(_parse(data)) == "Caf\u00e9 \u20ac 5"


def test_http_equiv_latin1_is_read_as_cp1252() -> None:
    data = (
        b'<meta http-equiv="Content-Type" content="text/html; charset=ISO-8859-1">'
        b"<p>\x93quoted\x94</p>"
    )
    assert _all_text(_parse(data)) == "\u201cquoted\u201d"


def test_undeclared_non_utf8_is_rejected() -> None:
    with pytest.raises(UnreadableDocument, match=r"not valid UTF-8 \(invalid byte 0xe9"):
        _parse(b"<p>Caf\xe9</p>")


def test_page_without_text_is_empty() -> None:
    with pytest.raises(EmptyDocument):
        _parse(b"<html><body><nav>Home</nav><script>x()</script></body></html>")


def test_chunks_respect_max_chars() -> None:
    paragraphs = "".join(
        f"<p>Paragraph {i} explains one more detail of the setup.</p>" for i in range(40)
    )
    drafts = _parse(f"<h2>Setup</h2>{paragraphs}".encode(), max_chars=250).drafts
    assert len(drafts) > 1
    assert all(len(d.text) <= 250 and d.text.startswith("Setup\n") for d in drafts)


def test_deeply_nested_markup_does_not_overflow_the_stack() -> None:
    data = b"<body>" + b"<div>" * 5000 + b"<p>Deep text.</p>" + b"</div>" * 5000 + b"</body>"
    assert _all_text(_parse(data)) == "Deep text."
