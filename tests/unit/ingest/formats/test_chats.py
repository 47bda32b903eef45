from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

from tether.ingest.drafts import ChunkDraft, ChunkOptions, ParsedDocument
from tether.ingest.formats import chats

CHATS = (Path(__file__).parents[3] / "fixtures" / "docs" / "chats.jsonl").read_bytes()


def _parse(data: bytes = CHATS, **options: int) -> ParsedDocument:
    return chats.parse(data, name="chats.jsonl", options=ChunkOptions(**options))


def _channel(doc: ParsedDocument, channel: str) -> list[ChunkDraft]:
    return [d for d in doc.drafts if d.metadata["channel"] == channel]


def test_windows_per_channel_with_shared_turns() -> None:
    incidents = _channel(_parse(), "incidents")
    lines = [d.text.split("\n") for d in incidents]
    assert [len(window) for window in lines] == [8, 8, 8]  # 20 turns, step 6
    for previous, current in itertools.pairwise(lines):
        assert previous[-2:] == current[:2]
        assert previous[-3] not in current


def test_channels_are_grouped_and_keep_file_order() -> None:
    doc = _parse()
    assert [d.metadata["channel"] for d in doc.drafts] == ["incidents"] * 3 + ["general"]
    general = _channel(doc, "general")[0].text.split("\n")
    assert (
        general[0]
        == "[2024-03-13T09:00:00Z] sam: Reminder: office closed on Friday for the offsite."
    )
    assert general[-1].startswith("[2024-03-13T09:20:00Z] priya: Lunch order")
    incidents = "\n".join(d.text for d in _channel(doc, "incidents"))
    assert "Reminder: office closed" not in incidents


def test_turn_lines_use_iso_time_and_speaker() -> None:
    first = _channel(_parse(), "incidents")[0].text.split("\n")[0]
    # Slack-style epoch `ts` strings become ISO timestamps.
    assert first == (
        "[2024-03-12T14:00:00Z] maya: Checkout error rate is at 12% and climbing, paging on-call."
    )


def test_textless_events_are_skipped() -> None:
    doc = _parse()
    assert not any("slackbot" in d.text for d in doc.drafts)
    for draft in doc.drafts:
        speakers = draft.metadata["speakers"]
        assert isinstance(speakers, list) and "slackbot" not in speakers


def test_metadata_times_and_section() -> None:
    window = _channel(_parse(), "incidents")[1]
    assert window.metadata["speakers"] == ["maya", "ines", "tom"]
    assert window.metadata["start"] == "2024-03-12T14:12:00Z"
    assert window.metadata["end"] == "2024-03-12T14:26:00Z"
    assert window.created_at == datetime(2024, 3, 12, 14, 12, tzinfo=UTC)
    assert window.updated_at == datetime(2024, 3, 12, 14, 26, tzinfo=UTC)
    assert window.section == "incidents 2024-03-12T14:12:00Z"
    assert window.kind == "chat"


def test_window_options_are_honoured() -> None:
    incidents = _channel(_parse(chat_window=5, chat_overlap=0), "incidents")
    assert len(incidents) == 4
    seen = [line for d in incidents for line in d.text.split("\n")]
    assert len(seen) == len(set(seen)) == 20


def test_alternative_keys_and_missing_channel() -> None:
    data = (
        b'{"role": "user", "content": "How do I reset my password?", "created_at": 1710000000}\n'
        b'{"role": "assistant", "content": "Use the link on the login page.",'
        b' "created_at": 1710000060}\n'
        b'{"author": {"name": "Ana"}, "message": "Thanks!"}\n'
    )
    drafts = _parse(data).drafts
    assert len(drafts) == 1
    assert drafts[0].text.split("\n") == [
        "[2024-03-09T16:00:00Z] user: How do I reset my password?",
        "[2024-03-09T16:01:00Z] assistant: Use the link on the login page.",
        "Ana: Thanks!",
    ]
    assert drafts[0].metadata["channel"] == ""
    assert drafts[0].section == "2024-03-09T16:00:00Z"


def test_windows_cover_every_turn() -> None:
    for size in range(1, 6):
        for overlap in range(0, 6):
            turns = list(range(13))
            windows = chats.windows(turns, size, overlap)
            assert sorted({t for w in windows for t in w}) == turns
            assert all(len(w) <= size for w in windows)
