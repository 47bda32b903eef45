"""A response cache for any `ChatModel`: identical requests are answered from SQLite.

Key = sha256 of a canonical JSON of the inner model's name, the prompt id and version
(`prompt_key`, e.g. "qa.answer@1"), the output schema version, the tenant `scope` and
every field of the request — messages, max_tokens, temperature, stop, tools,
tool_choice, response_format — except `idempotency_key`, which is per attempt and would
make every call miss. A request field added later lands in the key automatically, so a
new knob can only cause misses, never a wrong hit.

Only successful responses are stored: an exception, a stream that yields an
`ErrorEvent`, ends without a `DoneEvent`, or is abandoned by its consumer stores
nothing. Entries older than `ttl_seconds` (by the injected clock) are misses and are
replaced by the fresh answer.

Requests with `temperature > 0` are cached too: wrapping a model in this cache is the
caller's choice to trade sampling variety for repeatable, free answers. Concurrent
identical misses are not coalesced; each reaches the inner model and the last one wins.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from opentelemetry import trace
from pydantic import ValidationError

from tether.models.chat import (
    ChatModel,
    ChatRequest,
    ChatResponse,
    DoneEvent,
    ErrorEvent,
    StreamEvent,
    TokenEvent,
    ToolCall,
    ToolCallEvent,
    UsageEvent,
)
from tether.quick_sqlite import QuickDb
from tether.types import Usage

#: Bumped when the key's canonical form changes, so old rows simply stop matching.
_KEY_VERSION = 1
_TABLE = "responses"
#: Replay chunks: words with their trailing whitespace; leading whitespace on its own.
_CHUNK = re.compile(r"\S+\s*|\s+")


_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {_TABLE} "
    "(key TEXT PRIMARY KEY, created REAL NOT NULL, response TEXT NOT NULL)"
)


def clear(path: str | Path) -> int:
    """Remove every cached response in the file at `path`; return how many were removed.

    A missing file is left missing (0 removed), so clearing never creates a database.
    """
    file = Path(path).expanduser()
    if not file.exists():
        return 0
    db = sqlite3.connect(file, isolation_level=None, timeout=30.0)
    try:
        exists = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_TABLE,)
        ).fetchone()
        if exists is None:
            return 0
        return db.execute(f"DELETE FROM {_TABLE}").rowcount
    finally:
        db.close()


def _replay(response: ChatResponse) -> list[StreamEvent]:
    events: list[StreamEvent] = [TokenEvent(text=piece) for piece in _CHUNK.findall(response.text)]
    events.extend(ToolCallEvent(call=call) for call in response.tool_calls)
    events.append(UsageEvent(usage=response.usage))
    events.append(DoneEvent(finish_reason=response.finish_reason, request_id=response.request_id))
    return events


class CachingChatModel:
    """Wraps a `ChatModel`; `hits` and `misses` count how calls were answered."""

    def __init__(
        self,
        inner: ChatModel,
        path: str | Path,
        *,
        ttl_seconds: float = 86400,
        scope: str = "",
        prompt_key: str = "",
        schema_version: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not ttl_seconds > 0:
            raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")
        self._inner = inner
        self._ttl = ttl_seconds
        self._scope = scope
        self._prompt_key = prompt_key
        self._schema_version = schema_version
        self._clock = clock
        self._sql = QuickDb(path, schema=_SCHEMA)
        self.path = self._sql.path
        self.hits = 0
        self.misses = 0

    @property
    def name(self) -> str:
        return self._inner.name

    def cache_key(self, request: ChatRequest) -> str:
        """The hex sha256 this request is stored under (idempotency_key excluded)."""
        payload = {
            "v": _KEY_VERSION,
            "model": self._inner.name,
            "prompt": self._prompt_key,
            "schema": self._schema_version,
            "scope": self._scope,
            "request": request.model_dump(mode="json", by_alias=True, exclude={"idempotency_key"}),
        }
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    # -- storage (inline when free, else a worker thread) --

    @staticmethod
    def _load(db: sqlite3.Connection, key: str) -> tuple[float, str] | None:
        row = db.execute(f"SELECT created, response FROM {_TABLE} WHERE key = ?", (key,)).fetchone()
        return None if row is None else (float(row[0]), str(row[1]))

    @staticmethod
    def _save(db: sqlite3.Connection, key: str, created: float, response: str) -> None:
        db.execute(
            f"INSERT OR REPLACE INTO {_TABLE} (key, created, response) VALUES (?, ?, ?)",
            (key, created, response),
        )

    async def _lookup(self, key: str) -> ChatResponse | None:
        found = await self._sql.run(lambda db: self._load(db, key))
        if found is None:
            return None
        created, stored = found
        if self._clock() - created >= self._ttl:
            return None
        try:
            return ChatResponse.model_validate_json(stored)
        except ValidationError:
            return None  # a row from an incompatible version: treat as a miss, overwrite

    async def _store(self, key: str, response: ChatResponse) -> None:
        created, body = self._clock(), response.model_dump_json()
        await self._sql.run(lambda db: self._save(db, key, created, body))

    # -- ChatModel --

    async def chat(self, request: ChatRequest) -> ChatResponse:
        key = self.cache_key(request)
        cached = await self._lookup(key)
        trace.get_current_span().set_attribute("tether.cache.hit", cached is not None)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        response = await self._inner.chat(request)  # an exception propagates, uncached
        await self._store(key, response)
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        key = self.cache_key(request)
        cached = await self._lookup(key)
        if cached is not None:
            self.hits += 1
            for event in _replay(cached):
                yield event
            return
        self.misses += 1
        events = self._inner.stream(request)
        text: list[str] = []
        calls: list[ToolCall] = []
        usage = Usage()
        failed = False
        try:
            async for event in events:
                if isinstance(event, TokenEvent):
                    text.append(event.text)
                elif isinstance(event, ToolCallEvent):
                    calls.append(event.call)
                elif isinstance(event, UsageEvent):
                    usage = event.usage
                elif isinstance(event, ErrorEvent):
                    failed = True
                elif isinstance(event, DoneEvent) and not failed:
                    # Stored before `done` is handed on: a consumer that stops at `done`
                    # has still received the whole response.
                    await self._store(key, self._assemble(text, calls, usage, event))
                yield event
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    def _assemble(
        self,
        text: list[str],
        calls: list[ToolCall],
        usage: Usage,
        done: DoneEvent,
    ) -> ChatResponse:
        return ChatResponse(
            text="".join(text),
            tool_calls=tuple(calls),
            usage=usage,
            model=self._inner.name,
            finish_reason=done.finish_reason,
            request_id=done.request_id,
        )

    # -- maintenance --

    def purge_expired(self) -> int:
        """Delete entries at or past their TTL; return how many were removed."""
        cutoff = self._clock() - self._ttl
        return self._sql.call(
            lambda db: db.execute(f"DELETE FROM {_TABLE} WHERE created <= ?", (cutoff,)).rowcount
        )

    def clear(self) -> int:
        """Delete every entry in this cache's file; return how many were removed."""
        return self._sql.call(lambda db: db.execute(f"DELETE FROM {_TABLE}").rowcount)

    def close(self) -> None:
        self._sql.close()
