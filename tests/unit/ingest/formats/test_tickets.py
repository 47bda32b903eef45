from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tether.errors import EmptyDocument, UnreadableDocument
from tether.ingest.drafts import ChunkDraft, ChunkOptions, ParsedDocument
from tether.ingest.formats import tickets
from tether.ingest.formats.jsonl import parse_time

FIXTURES = Path(__file__).parents[3] / "fixtures"
TICKETS = (FIXTURES / "docs" / "tickets.jsonl").read_bytes()
EVENTS = (FIXTURES / "docs" / "ticket_events.jsonl").read_bytes()


def _parse(data: bytes, **options: int) -> ParsedDocument:
    return tickets.parse(data, name="tickets.jsonl", options=ChunkOptions(**options))


def _ticket(doc: ParsedDocument, ticket_id: str) -> ChunkDraft:
    return next(d for d in doc.drafts if d.metadata["ticket_id"] == ticket_id)


def test_one_chunk_per_ticket_in_file_order() -> None:
    drafts = _parse(TICKETS).drafts
    assert [d.section for d in drafts] == [
        "ticket OPS-101",
        "ticket OPS-102",
        "ticket 103",
        "ticket OPS-104",
    ]
    assert all(d.kind == "ticket" for d in drafts)


def test_ticket_text_layout() -> None:
    text = _ticket(_parse(TICKETS), "OPS-101").text
    assert text.startswith(
        "Ticket OPS-101: Nightly backup job fails on replica\n"
        "Status: open  Owner: dana\n\n"
        "The nightly pg_dump on db-replica-2 exits with code 137"
    )
    assert "\n\nli (2024-05-02T09:01:00Z): Exit 137 is the OOM killer." in text
    # `text` is accepted as well as `body` for a comment.
    assert text.endswith(
        "li (2024-05-04T16:40:00Z): Last two runs succeeded; leaving it open until Friday."
    )


def test_metadata_and_datetimes() -> None:
    draft = _ticket(_parse(TICKETS), "OPS-101")
    assert draft.metadata["status"] == "open"
    assert draft.metadata["owner"] == "dana"
    assert draft.metadata["created_at"] == "2024-05-02T08:14:00Z"
    assert draft.metadata["updated_at"] == "2024-05-04T16:40:00Z"
    assert draft.created_at == datetime(2024, 5, 2, 8, 14, tzinfo=UTC)
    assert draft.updated_at == datetime(2024, 5, 4, 16, 40, tzinfo=UTC)


def test_alternative_field_names_epochs_and_person_objects() -> None:
    doc = _parse(TICKETS)
    jira = _ticket(doc, "OPS-102")  # key/summary/state/assignee{}/created epoch
    assert jira.text.startswith("Ticket OPS-102: Rotate TLS certificate for status page\n")
    assert jira.metadata["status"] == "closed"
    assert jira.metadata["owner"] == "Marco Rossi"
    assert jira.created_at == datetime(2024, 5, 6, 8, 0, tzinfo=UTC)
    assert "mrossi (2024-05-07T08:00:00Z): Renewed via ACME" in jira.text
    numbered = _ticket(doc, "103")  # number/subject, +02:00 offset normalised to UTC
    assert numbered.metadata["created_at"] == "2024-05-06T08:00:00Z"
    assert numbered.metadata["updated_at"] == "2024-05-07T07:15:00Z"  # last comment


def test_event_lines_are_grouped_and_ordered_by_time() -> None:
    drafts = _parse(EVENTS).drafts
    assert [d.section for d in drafts] == ["ticket WEB-9", "ticket WEB-12"]
    web9 = drafts[0]
    assert web9.text.startswith(
        "Ticket WEB-9: Dark mode toggle resets on reload\nStatus: closed  Owner: ana\n\n"
        "Choosing dark mode in settings is lost after a page reload.\n\n"
    )
    confirmed = web9.text.index("Confirmed on Firefox")
    storage = web9.text.index("sessionStorage")
    fixed = web9.text.index("Fixed in release 4.2.0")
    assert confirmed < storage < fixed
    assert web9.created_at == datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
    assert web9.metadata["updated_at"] == "2024-06-05T08:00:00Z"
    web12 = drafts[1]
    assert web12.metadata["status"] is None
    assert web12.text == (
        "Ticket WEB-12: Footer links 404 on mobile\n\n"
        "The privacy and terms links in the mobile footer point to /m/ paths that no longer exist."
    )


def test_long_thread_is_split_and_every_part_repeats_the_header() -> None:
    drafts = [d for d in _parse(TICKETS, max_chars=200).drafts if d.section == "ticket OPS-104"]
    assert len(drafts) > 1
    for draft in drafts:
        assert draft.text.startswith("Ticket OPS-104: Flaky checkout integration test\n")
        assert len(draft.text) <= 800
    joined = "\n".join(d.text for d in drafts)
    assert "Pinned to 2.3.1" in joined and "readiness probe" in joined


def test_short_thread_is_never_split() -> None:
    drafts = _parse(TICKETS, max_chars=200).drafts
    assert len([d for d in drafts if d.section == "ticket OPS-101"]) == 1


def test_malformed_line_names_its_number() -> None:
    with pytest.raises(UnreadableDocument, match=r"^line 3: invalid JSON"):
        _parse((FIXTURES / "bad" / "broken.jsonl").read_bytes())


def test_ticket_without_id_is_rejected() -> None:
    with pytest.raises(UnreadableDocument, match="line 2: ticket has no id"):
        _parse(b'{"id": 1, "title": "a"}\n{"title": "no id"}\n')


def test_non_object_line_is_rejected() -> None:
    with pytest.raises(UnreadableDocument, match="line 1: expected a JSON object"):
        _parse(b"[1, 2]\n")


def test_blank_file_is_empty() -> None:
    with pytest.raises(EmptyDocument):
        _parse(b"\n\n")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-05-02T08:14:00Z", datetime(2024, 5, 2, 8, 14, tzinfo=UTC)),
        ("2024-05-02T10:14:00+02:00", datetime(2024, 5, 2, 8, 14, tzinfo=UTC)),
        ("2024-05-02 08:14:00", datetime(2024, 5, 2, 8, 14, tzinfo=UTC)),
        (1714637640, datetime(2024, 5, 2, 8, 14, tzinfo=UTC)),
        ("1714637640.5", datetime(2024, 5, 2, 8, 14, 0, 500000, tzinfo=UTC)),
        (1714637640000, datetime(2024, 5, 2, 8, 14, tzinfo=UTC)),
        ("yesterday", None),
        (None, None),
        (True, None),
    ],
)
def test_parse_time(raw: object, expected: datetime | None) -> None:
    assert parse_time(raw) == expected
