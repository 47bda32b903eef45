"""Issue tracker exports (JSONL): one chunk per ticket thread, body and comments together.

Two shapes are accepted and may be mixed: a whole ticket per line (comments nested), or
one event/comment per line pointing at its ticket through ticket_id/issue_id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tether.errors import UnreadableDocument
from tether.ingest.drafts import ChunkDraft, ChunkOptions, ParsedDocument
from tether.ingest.formats.jsonl import Record, iso, parse_time, pick, records, text_of
from tether.ingest.formats.textsplit import pack_paragraphs
from tether.types import MetaValue

THREAD_KEYS = ("ticket_id", "issue_id", "ticket_key", "issue_key")
ID_KEYS = ("id", "key", "number")
TITLE_KEYS = ("title", "summary", "subject")
_BODY_KEYS = ("body", "description")
_STATUS_KEYS = ("status", "state")
_OWNER_KEYS = ("owner", "assignee")
_CREATED_KEYS = ("created_at", "created")
_UPDATED_KEYS = ("updated_at", "updated")
_AUTHOR_KEYS = ("author", "user", "actor", "from", "by", "creator")
_COMMENT_KEYS = ("body", "text", "comment", "message", "content")
_TIME_KEYS = ("created_at", "created", "timestamp", "time", "date", "ts")
# A thread is kept whole up to this many max_chars: splitting a conversation loses context.
_THREAD_CHUNK_FACTOR = 4
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class _Comment:
    author: str
    text: str
    at: datetime | None


@dataclass
class _Thread:
    id: str
    title: str = ""
    body: str = ""
    status: str = ""
    owner: str = ""
    created: datetime | None = None
    updated: datetime | None = None
    comments: list[_Comment] = field(default_factory=list)


def parse(data: bytes, *, name: str, options: ChunkOptions) -> ParsedDocument:
    threads: dict[str, _Thread] = {}
    events: list[tuple[str, datetime | None, Record]] = []
    for number, record in records(data):
        thread_key = pick(record, THREAD_KEYS)
        if isinstance(thread_key, str | int) and not isinstance(thread_key, bool):
            thread = threads.setdefault(str(thread_key), _Thread(id=str(thread_key)))
            events.append((thread.id, parse_time(pick(record, _TIME_KEYS)), record))
            continue
        ticket_id = pick(record, ID_KEYS)
        if ticket_id is None or isinstance(ticket_id, dict | list):
            raise UnreadableDocument(f"line {number}: ticket has no id (id, key or number)")
        _apply_ticket(threads.setdefault(str(ticket_id), _Thread(id=str(ticket_id))), record)
    # Events are applied oldest first so the latest status, owner or title wins.
    for thread_id, at, record in sorted(events, key=lambda e: (e[1] is None, e[1] or _EPOCH)):
        _apply_event(threads[thread_id], at, record)
    drafts: list[ChunkDraft] = []
    for thread in threads.values():
        drafts.extend(_drafts(thread, options))
    return ParsedDocument(title=None, drafts=drafts)


def _apply_ticket(thread: _Thread, record: Record) -> None:
    thread.title = text_of(pick(record, TITLE_KEYS)) or thread.title
    thread.body = text_of(pick(record, _BODY_KEYS)) or thread.body
    thread.status = text_of(pick(record, _STATUS_KEYS)) or thread.status
    thread.owner = text_of(pick(record, _OWNER_KEYS)) or thread.owner
    thread.created = parse_time(pick(record, _CREATED_KEYS)) or thread.created
    thread.updated = parse_time(pick(record, _UPDATED_KEYS)) or thread.updated
    comments = record.get("comments")
    for item in comments if isinstance(comments, list) else []:
        comment = _comment(item)
        if comment is not None:
            thread.comments.append(comment)


def _apply_event(thread: _Thread, at: datetime | None, record: Record) -> None:
    title = text_of(pick(record, TITLE_KEYS))
    description = text_of(record.get("description"))
    text = text_of(pick(record, _COMMENT_KEYS))
    if title:
        thread.title = title
        # The event that names the ticket is its opening post: its text is the body.
        if text and not thread.body and not description:
            description, text = text, ""
    thread.body = description or thread.body
    thread.status = text_of(pick(record, _STATUS_KEYS)) or thread.status
    thread.owner = text_of(pick(record, _OWNER_KEYS)) or thread.owner
    if text:
        thread.comments.append(_Comment(text_of(pick(record, _AUTHOR_KEYS)), text, at))
    if at is not None:
        thread.created = min(thread.created or at, at)
        thread.updated = max(thread.updated or at, at)


def _comment(item: Any) -> _Comment | None:
    if isinstance(item, str):
        return _Comment("", item.strip(), None) if item.strip() else None
    if not isinstance(item, dict):
        return None
    text = text_of(pick(item, _COMMENT_KEYS))
    if not text:
        return None
    return _Comment(text_of(pick(item, _AUTHOR_KEYS)), text, parse_time(pick(item, _TIME_KEYS)))


def _drafts(thread: _Thread, options: ChunkOptions) -> list[ChunkDraft]:
    comments = thread.comments
    if all(c.at is not None for c in comments):
        comments = sorted(comments, key=lambda c: c.at or _EPOCH)
    times = [c.at for c in comments if c.at is not None]
    created = thread.created or (min(times) if times else None)
    updated = thread.updated or (max(times) if times else created)

    header = f"Ticket {thread.id}: {thread.title}" if thread.title else f"Ticket {thread.id}"
    status = "  ".join(
        part
        for part in (
            f"Status: {thread.status}" if thread.status else "",
            f"Owner: {thread.owner}" if thread.owner else "",
        )
        if part
    )
    head = f"{header}\n{status}" if status else header
    parts = [thread.body] if thread.body else []
    parts += [_render_comment(c) for c in comments]

    limit = options.max_chars * _THREAD_CHUNK_FACTOR
    whole = "\n\n".join([head, *parts])
    if len(whole) <= limit:
        bodies = ["\n\n".join(parts)]
    else:
        bodies = pack_paragraphs(parts, limit - len(head) - 2, options.overlap_chars)
    metadata: dict[str, MetaValue] = {
        "ticket_id": thread.id,
        "title": thread.title,
        "status": thread.status or None,
        "owner": thread.owner or None,
        "created_at": iso(created),
        "updated_at": iso(updated),
    }
    return [
        ChunkDraft(
            text=f"{head}\n\n{body}" if body else head,
            section=f"ticket {thread.id}",
            kind="ticket",
            created_at=created,
            updated_at=updated,
            metadata=dict(metadata),
        )
        for body in bodies
    ]


def _render_comment(comment: _Comment) -> str:
    who = comment.author or "unknown"
    when = iso(comment.at)
    return f"{who} ({when}): {comment.text}" if when else f"{who}: {comment.text}"
