from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from tether.errors import EmptyDocument, IngestError, UnreadableDocument
from tether.ingest.drafts import ChunkOptions, ParsedDocument
from tether.ingest.formats import pdf

FIXTURES = Path(__file__).parents[3] / "fixtures"
REPORT = (FIXTURES / "docs" / "report.pdf").read_bytes()


def _parse(data: bytes, **options: int) -> ParsedDocument:
    return pdf.parse(data, name="report.pdf", options=ChunkOptions(**options))


def test_title_from_metadata() -> None:
    assert _parse(REPORT).title == "Quarterly Operations Report"


def test_page_numbers_are_one_based_and_right() -> None:
    drafts = _parse(REPORT, max_chars=300).drafts
    assert {d.page for d in drafts} == {1, 2}
    for draft in drafts:
        assert draft.metadata["page"] == draft.page
    kestrel = [d.page for d in drafts if "Kestrel" in d.text]
    warehouse = [d.page for d in drafts if "Warehouse throughput" in d.text]
    assert kestrel and set(kestrel) == {2}
    assert warehouse == [1]


def test_chunks_fit_max_chars() -> None:
    drafts = _parse(REPORT, max_chars=300).drafts
    assert len(drafts) > 2
    assert all(len(d.text) <= 300 for d in drafts)


def test_hard_wrapped_lines_are_rejoined_into_paragraphs() -> None:
    text = "\n".join(d.text for d in _parse(REPORT).drafts)
    # These phrases straddle a line wrap in the PDF.
    assert "driven by the new cross-docking lanes in Rotterdam and a shorter" in text
    assert "delaying 1,240 parcels by one day" in text
    # A sentence-final short line ends the paragraph; a heading stands alone.
    assert "0.4 percent.\n\nStaffing remained" in text
    assert "\n\n2. Incidents\n\nTwo incidents" in text


def test_paragraph_rebuild_dehyphenates_and_breaks_on_bullets() -> None:
    page = (
        "The migration moved every customer account to the new regional data-\n"
        "base cluster without downtime and finished two days ahead of the plan,\n"
        "which the whole team celebrated.\n"
        "Nobody was paged.\n"
        "- first bullet item\n"
        "- second bullet item"
    )
    assert pdf._paragraphs(page) == [
        "The migration moved every customer account to the new regional database cluster"
        " without downtime and finished two days ahead of the plan, which the whole team"
        " celebrated.",
        "Nobody was paged.",
        "- first bullet item",
        "- second bullet item",
    ]


def test_corrupt_fixture_is_unreadable() -> None:
    with pytest.raises(UnreadableDocument, match="PDF"):
        _parse((FIXTURES / "bad" / "corrupt.pdf").read_bytes())


def test_non_pdf_bytes_are_unreadable() -> None:
    with pytest.raises(UnreadableDocument, match="not a PDF"):
        _parse(b"hello, I am plain text")


def test_truncated_report_is_unreadable() -> None:
    with pytest.raises(UnreadableDocument):
        _parse(REPORT[: len(REPORT) // 2])


@pytest.mark.parametrize("seed", range(25))
def test_garbage_with_pdf_header_never_crashes(seed: int) -> None:
    rng = random.Random(seed)
    body = bytes(rng.randrange(256) for _ in range(rng.randrange(10, 3000)))
    # Splice real PDF fragments in so pypdf gets far enough to hit odd paths.
    cut = rng.randrange(len(REPORT))
    data = b"%PDF-1.4\n" + body + REPORT[cut : cut + rng.randrange(500)]
    with pytest.raises(IngestError):
        _parse(data)


def test_encrypted_pdf_is_reported() -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(REPORT)))
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    with pytest.raises(UnreadableDocument, match="PDF is encrypted"):
        _parse(buffer.getvalue())


def test_encrypted_with_empty_user_password_is_read() -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(REPORT)))
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    assert any("Kestrel" in d.text for d in _parse(buffer.getvalue()).drafts)


def test_pdf_without_text_is_empty() -> None:
    document = FPDF()
    document.add_page()
    document.rect(20, 20, 100, 60)  # a drawing, like a scan, has no text layer
    data = bytes(document.output())
    with pytest.raises(EmptyDocument, match="no extractable text"):
        _parse(data)
