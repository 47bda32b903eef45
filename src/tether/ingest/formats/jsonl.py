"""JSON Lines records and the loose field conventions exported tickets and chats use."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from tether.errors import EmptyDocument, UnreadableDocument
from tether.ingest.formats.textsplit import decode_utf8

Record = Mapping[str, Any]

# Epoch values above this are milliseconds (this many seconds is the year 5138).
_MILLISECONDS_ABOVE = 1e11
_PERSON_KEYS = ("name", "display_name", "displayName", "login", "username", "email", "id")


def records(data: bytes) -> Iterator[tuple[int, Record]]:
    """(1-based line number, object) for every non-blank line; malformed lines fail the file."""
    found = False
    for number, line in enumerate(decode_utf8(data).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UnreadableDocument(f"line {number}: invalid JSON ({exc.msg})") from None
        if not isinstance(value, dict):
            raise UnreadableDocument(f"line {number}: expected a JSON object")
        found = True
        yield number, value
    if not found:
        raise EmptyDocument("no text found")


def pick(record: Record, keys: Sequence[str]) -> Any:
    """The first present, non-empty value among keys, in priority order."""
    for key in keys:
        value = record.get(key)
        if value is not None and value != "":
            return value
    return None


def text_of(value: Any) -> str:
    """Render a scalar or person-like object ({"name": ...}) as a display string."""
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return text_of(pick(value, _PERSON_KEYS))
    if isinstance(value, list):
        return ", ".join(t for t in (text_of(v) for v in value) if t)
    return str(value).strip()


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 (a trailing Z included) or epoch seconds/milliseconds, as aware UTC."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        try:
            value = float(value)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                return None
            # Naive stamps in exports are UTC far more often than server-local time.
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
    if isinstance(value, int | float):
        seconds = value / 1000 if value > _MILLISECONDS_ABOVE else value
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None
