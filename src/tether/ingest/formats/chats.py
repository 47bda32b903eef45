"""Chat logs (JSONL): overlapping windows of turns per channel, in file order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from tether.errors import EmptyDocument
from tether.ingest.drafts import ChunkDraft, ChunkOptions, ParsedDocument
from tether.ingest.formats.jsonl import iso, parse_time, pick, records, text_of

SPEAKER_KEYS = ("speaker", "author", "user", "from", "role", "name")
TEXT_KEYS = ("text", "content", "message", "body")
_TIME_KEYS = ("timestamp", "ts", "time", "created_at")
_CHANNEL_KEYS = ("channel", "conversation_id", "thread_id")

T = TypeVar("T")


@dataclass(frozen=True)
class _Turn:
    speaker: str
    text: str
    at: datetime | None

    def render(self) -> str:
        stamp = iso(self.at)
        return f"[{stamp}] {self.speaker}: {self.text}" if stamp else f"{self.speaker}: {self.text}"


def parse(data: bytes, *, name: str, options: ChunkOptions) -> ParsedDocument:
    channels: dict[str, list[_Turn]] = {}
    for _, record in records(data):
        text = text_of(pick(record, TEXT_KEYS))
        if not text:
            continue  # joins, reactions and other textless events say nothing searchable
        speaker = text_of(pick(record, SPEAKER_KEYS)) or "unknown"
        turn = _Turn(speaker, text, parse_time(pick(record, _TIME_KEYS)))
        channels.setdefault(text_of(pick(record, _CHANNEL_KEYS)), []).append(turn)
    drafts = [
        _draft(channel, window)
        for channel, turns in channels.items()
        for window in windows(turns, options.chat_window, options.chat_overlap)
    ]
    if not drafts:
        raise EmptyDocument("no chat messages with text")
    return ParsedDocument(title=None, drafts=drafts)


def windows(turns: Sequence[T], size: int, overlap: int) -> list[Sequence[T]]:
    """Consecutive windows of `size` turns, neighbours sharing `overlap` turns."""
    step = max(1, size - overlap)
    result: list[Sequence[T]] = []
    start = 0
    while True:
        result.append(turns[start : start + size])
        if start + size >= len(turns):
            return result
        start += step


def _draft(channel: str, window: Sequence[_Turn]) -> ChunkDraft:
    times = [turn.at for turn in window if turn.at is not None]
    first, last = (times[0], times[-1]) if times else (None, None)
    speakers = list(dict.fromkeys(turn.speaker for turn in window))
    start = iso(first)
    return ChunkDraft(
        text="\n".join(turn.render() for turn in window),
        section=" ".join(part for part in (channel, start) if part),
        kind="chat",
        created_at=first,
        updated_at=last,
        metadata={"speakers": speakers, "channel": channel, "start": start, "end": iso(last)},
    )
