from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tether.errors import EmptyDocument, UnreadableDocument
from tether.ingest.drafts import ChunkOptions, ParsedDocument
from tether.ingest.formats import markdown

FIXTURES = Path(__file__).parents[3] / "fixtures"
GUIDE = (FIXTURES / "docs" / "guide.md").read_bytes()


def _parse(data: bytes, **options: int) -> ParsedDocument:
    return markdown.parse(data, name="doc.md", options=ChunkOptions(**options))


def test_title_comes_from_front_matter() -> None:
    assert _parse(GUIDE).title == "Tether User Guide"


def test_title_falls_back_to_first_h1() -> None:
    doc = _parse(b"Intro line.\n\n## Minor\n\nText.\n\n# Real Title\n\nBody.\n")
    assert doc.title == "Real Title"


def test_front_matter_is_not_indexed() -> None:
    doc = _parse(GUIDE)
    assert not any("tags:" in d.text for d in doc.drafts)


def test_section_paths_follow_heading_levels() -> None:
    sections = [d.section for d in _parse(GUIDE).drafts]
    assert sections == [
        "Tether",
        "Tether > Install > From PyPI",
        "Tether > Install > From source",
        "Tether > Configuration",
        "Tether > Ingest limits",  # setext heading, level 2
        "Tether > Troubleshooting > Empty answers",
    ]


def test_no_chunk_is_only_a_heading() -> None:
    for draft in _parse(GUIDE, max_chars=300).drafts:
        heading, _, body = draft.text.partition("\n")
        assert body.strip(), f"heading-only chunk: {heading!r}"
    texts = " ".join(d.text for d in _parse(GUIDE).drafts)
    # Trailing headings with no body never become chunks of their own.
    assert "Glossary" not in texts and "Reference" not in texts


def test_chunk_text_starts_with_nearest_heading() -> None:
    for draft in _parse(GUIDE, max_chars=300).drafts:
        headings = draft.metadata["headings"]
        assert isinstance(headings, list)
        assert draft.text.startswith(headings[-1] + "\n")
        assert not draft.text.startswith("#")


def test_hash_lines_inside_fences_are_not_headings() -> None:
    doc = _parse(GUIDE)
    assert not any("activate" in d.section for d in doc.drafts)
    pypi = next(d for d in doc.drafts if d.section.endswith("From PyPI"))
    assert "```bash\npython -m venv .venv\n# activate the environment" in pypi.text
    assert pypi.text.rstrip().endswith("```")


def test_long_section_is_split_within_max_chars_with_overlap() -> None:
    drafts = [d for d in _parse(GUIDE, max_chars=300).drafts if d.section.endswith("limits")]
    assert len(drafts) >= 3
    assert all(len(d.text) <= 300 for d in drafts)
    for previous, current in itertools.pairwise(drafts):
        body = current.text.removeprefix("Ingest limits\n")
        first_sentence = body.split(". ")[0]
        assert first_sentence in previous.text, "continuation should overlap the previous chunk"


def test_oversize_fence_is_kept_whole() -> None:
    code = "\n".join(f"    step_{i} = run({i})" for i in range(30))
    data = f"# Script\n\nIntro paragraph.\n\n```python\n{code}\n```\n\nOutro.\n".encode()
    drafts = _parse(data, max_chars=200).drafts
    fenced = [d for d in drafts if "```python" in d.text]
    assert len(fenced) == 1
    assert "step_0" in fenced[0].text and "step_29" in fenced[0].text
    assert fenced[0].text.rstrip().endswith("```")
    assert any("Outro." in d.text for d in drafts)


def test_orphan_sibling_heading_joins_next_path() -> None:
    drafts = _parse(b"# Guide\n\n## Overview\n\n## Details\n\nThe details.\n").drafts
    assert [d.section for d in drafts] == ["Guide > Overview > Details"]
    assert drafts[0].text == "Details\nThe details."


def test_atx_closing_hashes_and_hashtags() -> None:
    drafts = _parse(b"## Setup ##\n\n#hashtag is text, not a heading.\n").drafts
    assert drafts[0].section == "Setup"
    assert "#hashtag is text" in drafts[0].text


def test_content_before_first_heading_has_empty_section() -> None:
    drafts = _parse(b"Preamble text.\n\n# Title\n\nBody.\n").drafts
    assert drafts[0].section == "" and drafts[0].text == "Preamble text."


def test_empty_and_heading_only_files_are_empty() -> None:
    with pytest.raises(EmptyDocument):
        _parse((FIXTURES / "bad" / "empty.md").read_bytes())
    with pytest.raises(EmptyDocument):
        _parse(b"# Notes\n\n## TODO\n\n")


def test_plain_text_is_paragraphs_without_sections() -> None:
    data = b"First paragraph\nwraps here.\n\n\n\nSecond   paragraph.\n"
    doc = markdown.parse_text(data, name="notes.txt", options=ChunkOptions())
    assert [d.text for d in doc.drafts] == ["First paragraph\nwraps here.\n\nSecond paragraph."]
    assert doc.drafts[0].section == ""


def test_plain_text_rejects_latin1() -> None:
    with pytest.raises(UnreadableDocument, match="not valid UTF-8"):
        markdown.parse_text(
            (FIXTURES / "bad" / "latin1.txt").read_bytes(), name="x.txt", options=ChunkOptions()
        )
