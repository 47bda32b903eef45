"""Memory for assistants and agents: facts with provenance, conversations with rolling
summaries, and a `forget` that reaches every copy and can be checked byte by byte.

Facts. One current value per (tenant, user, subject). Restating the same value
corroborates it (confidence rises, source and time refresh); a different value
supersedes it: the old row stays as history with `superseded_at` set, so "what did we
believe, from whom, and when" is answerable later.

Conversations. The last `keep_recent` messages are held verbatim. Once `summarize_every`
more have piled up, the oldest are folded into the rolling summary by a `Summarizer` and
deleted: memory keeps only what it uses (the summary plus the recent window).

Forgetting. `forget` removes a fact, a subject's whole history, a conversation or a user:
first each `Forgettable` place (response cache, span store, answer log: see
`tether.memory_places`) drops its copies, then memory deletes its rows (in that order so
a failed place leaves the texts known and the call retryable). Places find copies by the
forgotten texts (raw, JSON-escaped and redacted the way they are stored) and, where they
carry them, by user and conversation tags. Every SQLite connection that deletes uses `secure_delete`, the
WAL is checkpointed and truncated, and a file that still holds a forgotten text in free
space is rebuilt with VACUUM. The receipt's `verified` is then a scan of the raw bytes of
every file involved, not a row count.

What byte checks cannot cover: texts shorter than `min_match_chars` and texts another
remaining row still holds (another user who also lives in "Berlin") are neither searched
for elsewhere nor verified; the receipt counts them as `unchecked_texts`. Messages folded
away earlier are no longer known, so their copies elsewhere are found only through the
user and conversation tags.

Tenancy: one file, and the tenant is in every statement's WHERE clause; no method takes
a row id without its tenant. (The store's one-partition-per-tenant rule is for ranking
indexes; memory has none, so the predicate is the wall.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tether.errors import AccessDenied, TenantRequired, TetherError
from tether.models.chat import ChatModel
from tether.observability.redacting import MAX_CHARS as SPAN_MAX_CHARS
from tether.observability.tracing import using_prompt
from tether.prompts.memory_summary_v1 import MemorySummaryV1, SummaryInputs, SummaryOutput, Turn
from tether.quick_sqlite import QuickDb, transaction
from tether.security.redaction import redact
from tether.structured import generate
from tether.types import Message

log = logging.getLogger("tether.memory")

T = TypeVar("T")

ForgetTarget: TypeAlias = Literal["fact", "subject", "conversation", "user"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS facts (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    subject       TEXT NOT NULL,
    value         TEXT NOT NULL,
    source        TEXT NOT NULL,
    confidence    REAL NOT NULL CHECK (confidence BETWEEN 0.0 AND 1.0),
    recorded_at   REAL NOT NULL,
    version       INTEGER NOT NULL,
    superseded_at REAL,
    UNIQUE (tenant, user_id, subject, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS facts_current
    ON facts (tenant, user_id, subject) WHERE superseded_at IS NULL;
CREATE TABLE IF NOT EXISTS conversations (
    tenant          TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    generation      TEXT NOT NULL,
    summary         TEXT NOT NULL DEFAULT '',
    folded          INTEGER NOT NULL DEFAULT 0,
    next_seq        INTEGER NOT NULL DEFAULT 0,
    updated_at      REAL NOT NULL,
    PRIMARY KEY (tenant, conversation_id)
);
CREATE INDEX IF NOT EXISTS conversations_user ON conversations (tenant, user_id);
CREATE TABLE IF NOT EXISTS messages (
    tenant          TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    role            TEXT NOT NULL,
    content         TEXT NOT NULL,
    name            TEXT,
    at              REAL NOT NULL,
    PRIMARY KEY (tenant, conversation_id, seq)
);
"""

_FACT_COLUMNS = (
    "id, tenant, user_id, subject, value, source, confidence, recorded_at, version, superseded_at"
)


# --- errors and boundary types ---------------------------------------------------------------


class MemoryStoreError(TetherError):
    """The memory store was asked something it cannot do."""


class InvalidMemoryInput(MemoryStoreError):
    """A fact, message or forget request is malformed (empty, out of range, ambiguous)."""


class Fact(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    tenant: str
    user: str
    #: Normalised key: whitespace collapsed, case folded ("Home City" -> "home city").
    subject: str
    value: str
    #: Where the fact came from, e.g. "conversation:c42", "crm", "user-settings".
    source: str
    confidence: float = Field(ge=0.0, le=1.0)
    #: Epoch seconds of the latest observation of this value.
    recorded_at: float
    #: 1 for a subject's first value, +1 for each value that superseded another.
    version: int = Field(ge=1)
    #: When a different value replaced this one; None while it is current.
    superseded_at: float | None = None


class _FactInput(BaseModel):
    tenant: str = Field(min_length=1, max_length=200)
    user: str = Field(min_length=1, max_length=200)
    subject: str = Field(min_length=1, max_length=200)
    value: str = Field(min_length=1, max_length=10_000)
    source: str = Field(min_length=1, max_length=500)
    confidence: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    at: float = Field(ge=0.0, allow_inf_nan=False)


class ConversationView(BaseModel):
    conversation_id: str
    #: The owner; None for a conversation memory does not hold.
    user: str | None
    #: Everything before `recent`, folded ("" until the first fold).
    summary: str
    #: The newest messages, verbatim, oldest first.
    recent: list[Message]


class ForgetScope(BaseModel):
    """What a place is asked to drop: copies of `texts`, and anything tagged with `user`
    or one of `conversation_ids` — always within `tenant` where the place knows tenants."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    texts: tuple[str, ...] = ()
    user: str | None = None
    conversation_ids: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.texts and self.user is None and not self.conversation_ids


class ForgetReceipt(BaseModel):
    tenant: str
    target: ForgetTarget
    #: Rows removed per place: facts (current), fact_history (superseded versions),
    #: conversations, messages, then one entry per `Forgettable` by its name.
    removed: dict[str, int]
    #: True when the target's rows are gone and no file involved (database, -wal, -shm)
    #: still contains any checked text in any stored form.
    verified: bool
    #: Files that still contain a forgotten text (empty when verified).
    residue: list[str] = Field(default_factory=list)
    #: Forgotten texts too short to search for, or still held by other remaining rows.
    unchecked_texts: int = 0


# --- protocols -------------------------------------------------------------------------------


class Summarizer(Protocol):
    async def summarize(self, previous: str, messages: Sequence[Message]) -> str: ...


class Forgettable(Protocol):
    """A place holding copies of remembered text. `path` is its SQLite file (None when it
    is not a local file: then its removals count but cannot be byte-verified)."""

    @property
    def name(self) -> str: ...

    @property
    def path(self) -> Path | None: ...

    async def forget(self, scope: ForgetScope) -> int: ...


# --- summarizers -----------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


class ExtractiveSummarizer:
    """The offline default: one line per folded turn (its first sentence, cut to
    `line_chars`) appended to the previous summary; when over `max_chars` the oldest
    lines go first. Deterministic, and never longer than `max_chars`."""

    def __init__(self, *, max_chars: int = 1200, line_chars: int = 160) -> None:
        if not 20 <= line_chars <= max_chars:
            raise InvalidMemoryInput(f"need 20 <= line_chars <= max_chars, got {line_chars}")
        self.max_chars = max_chars
        self.line_chars = line_chars

    async def summarize(self, previous: str, messages: Sequence[Message]) -> str:
        lines = [line for line in previous.splitlines() if line.strip()]
        for message in messages:
            # System and tool turns are instructions and payloads, not what was said.
            if message.role not in ("user", "assistant"):
                continue
            text = " ".join(message.content.split())
            if not text:
                continue
            first = _SENTENCE_END.split(text, maxsplit=1)[0]
            if len(first) > self.line_chars:
                first = first[: self.line_chars - 1].rstrip() + "…"
            lines.append(f"{message.role}: {first}")
        while lines and len("\n".join(lines)) > self.max_chars:
            lines.pop(0)
        return "\n".join(lines)


class ModelSummarizer:
    """Summaries written by a `ChatModel` with the versioned `memory.summary` prompt.

    A reply over `max_chars` is sent back once for a shorter one and then cut, so the
    bound holds whatever the model does."""

    def __init__(
        self,
        model: ChatModel,
        *,
        max_chars: int = 1200,
        max_tokens: int = 600,
        prompt: MemorySummaryV1 | None = None,
    ) -> None:
        if max_chars < 50:
            raise InvalidMemoryInput(f"max_chars must be at least 50, got {max_chars}")
        self._model = model
        self._prompt = prompt or MemorySummaryV1()
        self.max_chars = max_chars
        self.max_tokens = max_tokens

    async def summarize(self, previous: str, messages: Sequence[Message]) -> str:
        values = SummaryInputs(
            previous=previous,
            turns=[Turn(role=m.role, content=m.content) for m in messages],
            max_chars=self.max_chars,
        )

        def within_bound(out: SummaryOutput) -> list[str]:
            size = len(out.summary)
            if size > self.max_chars:
                return [f"summary: {size} characters, at most {self.max_chars} allowed"]
            return []

        with using_prompt(self._prompt.key):
            generation = await generate(
                self._model,
                self._prompt.render(values),
                SummaryOutput,
                check=within_bound,
                max_attempts=2,
                max_tokens=self.max_tokens,
                accept_with_problems=True,
            )
        return generation.value.summary.strip()[: self.max_chars]


# --- finding and verifying forgotten text ----------------------------------------------------

#: Redaction placeholders, e.g. "[EMAIL_ADDRESS]".
_PLACEHOLDER = re.compile(r"\[[A-Z_]+\]")
#: A redacted text is searched for only if this much of it is not placeholders: "my email
#: is [EMAIL_ADDRESS]" would otherwise match every user who said the same.
_MIN_REDACTED_CONTEXT = 24


def needle_forms(text: str) -> set[str]:
    """Every form `text` takes where tether stores it: as is, JSON-escaped (ASCII or not)
    once or twice (span attributes hold JSON message lists inside a JSON object), and as
    the span exporter and answer log store it: cut to the span limit and redacted."""
    bases = {text}
    if len(text) > SPAN_MAX_CHARS:
        bases.add(text[:SPAN_MAX_CHARS])
    for base in list(bases):
        redacted = redact(base)
        context = len(_PLACEHOLDER.sub("", redacted).strip())
        if redacted != base and context >= _MIN_REDACTED_CONTEXT:
            bases.add(redacted)
    forms: set[str] = set()
    level = bases
    for _ in range(3):
        forms |= level
        level = {json.dumps(s, ensure_ascii=a)[1:-1] for s in level for a in (True, False)}
    return forms


def _needles(texts: Iterable[str]) -> list[str]:
    needles = {form for text in texts for form in needle_forms(text) if form}
    # Longest first, so the regex engine prefers the fullest match at a position.
    return sorted(needles, key=lambda n: (-len(n), n))


def text_pattern(texts: Iterable[str]) -> re.Pattern[str] | None:
    """One regex matching any stored form of any of `texts` (None for no texts)."""
    needles = _needles(texts)
    return re.compile("|".join(map(re.escape, needles))) if needles else None


def install_matcher(db: sqlite3.Connection, texts: Iterable[str]) -> None:
    """Register `holds_forgotten(column)` on `db`: 1 when the value contains a stored
    form of one of `texts`. One scan per table instead of one per needle and column."""
    pattern = text_pattern(texts)

    def holds(value: object) -> int:
        return int(pattern is not None and isinstance(value, str) and bool(pattern.search(value)))

    db.create_function("holds_forgotten", 1, holds, deterministic=True)


def db_files(path: Path) -> list[Path]:
    """A SQLite database and its WAL and shared-memory files, those that exist."""
    candidates = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    return [p for p in candidates if p.exists()]


def files_holding(paths: Iterable[Path], texts: Iterable[str]) -> list[Path]:
    """The files among `paths` whose raw bytes contain a stored form of one of `texts`."""
    needles = [n.encode() for n in _needles(texts)]
    if not needles:
        return []
    pattern = re.compile(b"|".join(map(re.escape, needles)))
    overlap = max(len(n) for n in needles) - 1
    holding: list[Path] = []
    for path in paths:
        if not path.exists():
            continue
        with path.open("rb") as handle:
            tail = b""
            while chunk := handle.read(1 << 20):
                window = tail + chunk
                if pattern.search(window):
                    holding.append(path)
                    break
                # Carry the end over, so a needle split across two reads is still seen.
                tail = window[len(window) - overlap :] if overlap else b""
    return holding


def verify_forgotten(paths: Iterable[Path], texts: Iterable[str]) -> bool:
    """True when no file in `paths` contains any stored form of any of `texts`."""
    return not files_holding(paths, texts)


def open_for_forgetting(path: Path) -> sqlite3.Connection:
    """A connection whose deletes overwrite the deleted bytes (`secure_delete` is per
    connection: the owner's own connection may not have it on)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    db.execute("PRAGMA secure_delete=ON")
    return db


def settle(db: sqlite3.Connection, path: Path, texts: Sequence[str]) -> None:
    """Move deletions out of the WAL into the database and truncate the WAL; if a text
    survives in free space (deleted earlier by a connection without secure_delete),
    rebuild the file. A reader holding an old snapshot can keep the WAL alive; the
    receipt's byte check then reports it rather than this hiding it."""
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if texts and files_holding(db_files(path), texts):
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


# --- the store -------------------------------------------------------------------------------


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def _tenant(tenant: str) -> str:
    if not tenant or not tenant.strip():
        raise TenantRequired("memory needs a tenant for every read and write")
    return tenant


def _need(value: str, what: str) -> str:
    if not value or not value.strip():
        raise InvalidMemoryInput(f"{what} must not be empty")
    return value


def _corroborate(old: float, old_source: str, new: float, new_source: str) -> float:
    # A second source is independent evidence (noisy-OR); the same source saying it again
    # is not, so it can only lift confidence to its own latest estimate.
    if old_source == new_source:
        return max(old, new)
    return 1.0 - (1.0 - old) * (1.0 - new)


def _fact(row: Sequence[Any]) -> Fact:
    fid, tenant, user, subject, value, source, confidence, at, version, superseded = row
    return Fact(
        id=fid,
        tenant=tenant,
        user=user,
        subject=subject,
        value=value,
        source=source,
        confidence=confidence,
        recorded_at=at,
        version=version,
        superseded_at=superseded,
    )


class _Fold(BaseModel):
    generation: str
    folded: int
    previous: str
    seqs: list[int]
    messages: list[Message]


class _Target(BaseModel):
    """One validated forget request, and the WHERE clauses selecting its rows."""

    model_config = ConfigDict(frozen=True)

    kind: ForgetTarget
    tenant: str
    fact_id: str | None = None
    conversation_id: str | None = None
    user: str | None = None
    subject: str | None = None

    @classmethod
    def of(
        cls,
        tenant: str,
        fact_id: str | None,
        conversation_id: str | None,
        user: str | None,
        subject: str | None,
    ) -> _Target:
        given = [x for x in (fact_id, conversation_id, user, subject) if x is not None]
        if any(not x.strip() for x in given):
            raise InvalidMemoryInput("forget: an id, user or subject must not be empty")
        kind: ForgetTarget | None = None
        if len(given) == 1:
            if fact_id is not None:
                kind = "fact"
            elif conversation_id is not None:
                kind = "conversation"
            elif user is not None:
                kind = "user"
        elif len(given) == 2 and user is not None and subject is not None:
            kind = "subject"
        if kind is None:
            raise InvalidMemoryInput(
                "forget takes exactly one of fact_id, conversation_id or user (a user "
                "optionally with a subject)"
            )
        return cls(
            kind=kind,
            tenant=tenant,
            fact_id=fact_id,
            conversation_id=conversation_id,
            user=user,
            subject=None if subject is None else _key(subject),
        )

    def facts_where(self) -> tuple[str, tuple[str, ...]]:
        if self.kind == "fact" and self.fact_id is not None:
            return "tenant = ? AND id = ?", (self.tenant, self.fact_id)
        if self.kind == "subject" and self.user is not None and self.subject is not None:
            return "tenant = ? AND user_id = ? AND subject = ?", (
                self.tenant,
                self.user,
                self.subject,
            )
        if self.kind == "user" and self.user is not None:
            return "tenant = ? AND user_id = ?", (self.tenant, self.user)
        return "0", ()

    def conversations_where(self) -> tuple[str, tuple[str, ...]]:
        if self.kind == "conversation" and self.conversation_id is not None:
            return "tenant = ? AND conversation_id = ?", (self.tenant, self.conversation_id)
        if self.kind == "user" and self.user is not None:
            return "tenant = ? AND user_id = ?", (self.tenant, self.user)
        return "0", ()


class Memory:
    """Facts and conversations in one SQLite file (WAL). Async methods run their short
    statements inline when the file is free, else on a worker thread."""

    def __init__(
        self,
        path: str | Path,
        *,
        summarizer: Summarizer | None = None,
        keep_recent: int = 8,
        summarize_every: int = 4,
        min_match_chars: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if keep_recent < 0 or summarize_every < 1 or min_match_chars < 1:
            raise InvalidMemoryInput(
                "need keep_recent >= 0, summarize_every >= 1 and min_match_chars >= 1"
            )
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._summarizer: Summarizer = summarizer or ExtractiveSummarizer()
        self._keep_recent = keep_recent
        self._summarize_every = summarize_every
        self._min_match = min_match_chars
        self._clock = clock
        # secure_delete on from the start: superseded rows rewritten and folded messages
        # deleted must not leave their bytes in free pages for a later forget to chase.
        self._sql = QuickDb(self.path, schema=_SCHEMA, pragmas=("secure_delete=ON",))
        #: Folds skipped because the summarizer failed (the messages stay verbatim and
        #: the next message retries the fold).
        self.summary_failures = 0

    # -- plumbing --

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._sql.run(fn)

    @staticmethod
    def _tx(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
        return lambda db: transaction(db, fn)

    # -- facts --

    async def remember(
        self,
        tenant: str,
        user: str,
        subject: str,
        value: str,
        *,
        source: str,
        confidence: float,
        at: float | None = None,
    ) -> Fact:
        """Record that `user`'s `subject` is `value`. Returns the fact as now stored: the
        refreshed current fact when the value is unchanged, else a new version."""
        _tenant(tenant)
        try:
            item = _FactInput(
                tenant=tenant,
                user=user.strip(),
                subject=_key(subject),
                value=value.strip(),
                source=source.strip(),
                confidence=confidence,
                at=self._clock() if at is None else at,
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidMemoryInput(f"not a valid fact: {where}: {first['msg']}") from exc
        return await self._run(self._tx(lambda db: self._remember(db, item)))

    def _remember(self, db: sqlite3.Connection, item: _FactInput) -> Fact:
        where = (item.tenant, item.user, item.subject)
        row = db.execute(
            f"SELECT {_FACT_COLUMNS} FROM facts WHERE tenant = ? AND user_id = ? "
            "AND subject = ? AND superseded_at IS NULL",
            where,
        ).fetchone()
        current = None if row is None else _fact(row)
        if current is not None and _key(current.value) == _key(item.value):
            newer = item.at >= current.recorded_at
            refreshed = current.model_copy(
                update={
                    "confidence": _corroborate(
                        current.confidence, current.source, item.confidence, item.source
                    ),
                    "source": item.source if newer else current.source,
                    "recorded_at": item.at if newer else current.recorded_at,
                }
            )
            db.execute(
                "UPDATE facts SET confidence = ?, source = ?, recorded_at = ? "
                "WHERE tenant = ? AND id = ?",
                (
                    refreshed.confidence,
                    refreshed.source,
                    refreshed.recorded_at,
                    item.tenant,
                    current.id,
                ),
            )
            return refreshed
        (latest,) = db.execute(
            "SELECT COALESCE(MAX(version), 0) FROM facts "
            "WHERE tenant = ? AND user_id = ? AND subject = ?",
            where,
        ).fetchone()
        superseded_at: float | None = None
        if current is not None:
            if item.at >= current.recorded_at:
                db.execute(
                    "UPDATE facts SET superseded_at = ? WHERE tenant = ? AND id = ?",
                    (item.at, item.tenant, current.id),
                )
            else:
                # An observation older than the current value arrived late (an import, a
                # replayed queue): it is history, not news.
                superseded_at = current.recorded_at
        fact = Fact(
            id="f_" + uuid.uuid4().hex,
            tenant=item.tenant,
            user=item.user,
            subject=item.subject,
            value=item.value,
            source=item.source,
            confidence=item.confidence,
            recorded_at=item.at,
            version=int(latest) + 1,
            superseded_at=superseded_at,
        )
        db.execute(
            f"INSERT INTO facts ({_FACT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                fact.id,
                fact.tenant,
                fact.user,
                fact.subject,
                fact.value,
                fact.source,
                fact.confidence,
                fact.recorded_at,
                fact.version,
                fact.superseded_at,
            ),
        )
        return fact

    async def facts(self, tenant: str, user: str, subject: str | None = None) -> list[Fact]:
        """`user`'s current facts (one per subject), by subject."""
        _tenant(tenant)
        sql = (
            f"SELECT {_FACT_COLUMNS} FROM facts WHERE tenant = ? AND user_id = ? "
            "AND superseded_at IS NULL AND (? IS NULL OR subject = ?) ORDER BY subject"
        )
        key = None if subject is None else _key(subject)

        def read(db: sqlite3.Connection) -> list[Fact]:
            rows = db.execute(sql, (tenant, user, key, key)).fetchall()
            return [_fact(r) for r in rows]

        return await self._run(read)

    async def history(self, tenant: str, user: str, subject: str) -> list[Fact]:
        """Every value `subject` has had for `user`, oldest observation first; the one
        with `superseded_at` None (normally the last) is current."""
        _tenant(tenant)
        sql = (
            f"SELECT {_FACT_COLUMNS} FROM facts WHERE tenant = ? AND user_id = ? "
            "AND subject = ? ORDER BY recorded_at, version"
        )

        def read(db: sqlite3.Connection) -> list[Fact]:
            rows = db.execute(sql, (tenant, user, _key(subject))).fetchall()
            return [_fact(r) for r in rows]

        return await self._run(read)

    # -- conversations --

    async def add_message(
        self, tenant: str, user: str, conversation_id: str, message: Message
    ) -> None:
        """Append `message`; fold the oldest messages into the summary once enough have
        piled up beyond the verbatim window. A conversation belongs to the user who
        started it: another user of the tenant appending to it gets `AccessDenied`."""
        _tenant(tenant)
        _need(user, "user")
        _need(conversation_id, "conversation_id")
        now = self._clock()

        def append(db: sqlite3.Connection) -> None:
            row = db.execute(
                "SELECT user_id, next_seq FROM conversations "
                "WHERE tenant = ? AND conversation_id = ?",
                (tenant, conversation_id),
            ).fetchone()
            if row is None:
                seq = 0
                db.execute(
                    "INSERT INTO conversations (tenant, conversation_id, user_id, generation, "
                    "next_seq, updated_at) VALUES (?, ?, ?, ?, 1, ?)",
                    (tenant, conversation_id, user, uuid.uuid4().hex, now),
                )
            elif row[0] != user:
                raise AccessDenied(f"conversation {conversation_id!r} is not this user's")
            else:
                seq = int(row[1])
                db.execute(
                    "UPDATE conversations SET next_seq = ?, updated_at = ? "
                    "WHERE tenant = ? AND conversation_id = ?",
                    (seq + 1, now, tenant, conversation_id),
                )
            db.execute(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)",
                (tenant, conversation_id, seq, message.role, message.content, message.name, now),
            )

        await self._run(self._tx(append))
        await self._fold(tenant, conversation_id)

    def _fold_candidates(
        self, db: sqlite3.Connection, tenant: str, conversation_id: str
    ) -> _Fold | None:
        state = db.execute(
            "SELECT generation, folded, summary FROM conversations "
            "WHERE tenant = ? AND conversation_id = ?",
            (tenant, conversation_id),
        ).fetchone()
        rows = db.execute(
            "SELECT seq, role, content, name FROM messages "
            "WHERE tenant = ? AND conversation_id = ? ORDER BY seq",
            (tenant, conversation_id),
        ).fetchall()
        overflow = len(rows) - self._keep_recent
        if state is None or overflow < self._summarize_every:
            return None
        oldest = rows[:overflow]
        return _Fold(
            generation=state[0],
            folded=state[1],
            previous=state[2],
            seqs=[r[0] for r in oldest],
            messages=[Message(role=r[1], content=r[2], name=r[3]) for r in oldest],
        )

    async def _fold(self, tenant: str, conversation_id: str) -> None:
        fold = await self._run(lambda db: self._fold_candidates(db, tenant, conversation_id))
        if fold is None:
            return
        try:
            summary = await self._summarizer.summarize(fold.previous, fold.messages)
        except TetherError as exc:
            # The messages are still stored verbatim, so nothing is lost: the view is just
            # longer until a later message retries the fold.
            self.summary_failures += 1
            log.warning("memory: summarising a conversation failed: %s", exc)
            return
        upto = fold.seqs[-1] + 1

        def commit(db: sqlite3.Connection) -> None:
            # Only if nothing moved while the summarizer ran: another fold, or a forget
            # (and perhaps a new conversation under the same id, hence the generation).
            moved = db.execute(
                "UPDATE conversations SET summary = ?, folded = ? WHERE tenant = ? "
                "AND conversation_id = ? AND generation = ? AND folded = ?",
                (summary, upto, tenant, conversation_id, fold.generation, fold.folded),
            ).rowcount
            if moved == 1:
                db.execute(
                    "DELETE FROM messages WHERE tenant = ? AND conversation_id = ? AND seq < ?",
                    (tenant, conversation_id, upto),
                )

        await self._run(self._tx(commit))

    async def conversation(self, tenant: str, conversation_id: str) -> ConversationView:
        """The summary and the verbatim recent messages (empty for an unknown id)."""
        _tenant(tenant)

        def read(db: sqlite3.Connection) -> ConversationView:
            head = db.execute(
                "SELECT user_id, summary FROM conversations "
                "WHERE tenant = ? AND conversation_id = ?",
                (tenant, conversation_id),
            ).fetchone()
            rows = db.execute(
                "SELECT role, content, name FROM messages "
                "WHERE tenant = ? AND conversation_id = ? ORDER BY seq",
                (tenant, conversation_id),
            ).fetchall()
            return ConversationView(
                conversation_id=conversation_id,
                user=None if head is None else head[0],
                summary="" if head is None else head[1],
                recent=[Message(role=r[0], content=r[1], name=r[2]) for r in rows],
            )

        return await self._run(read)

    async def conversations(self, tenant: str, user: str) -> list[str]:
        """Ids of `user`'s conversations, most recently active first."""
        _tenant(tenant)

        def read(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "SELECT conversation_id FROM conversations WHERE tenant = ? AND user_id = ? "
                "ORDER BY updated_at DESC, conversation_id",
                (tenant, user),
            ).fetchall()
            return [str(r[0]) for r in rows]

        return await self._run(read)

    # -- forgetting --

    async def forget(
        self,
        tenant: str,
        *,
        fact_id: str | None = None,
        conversation_id: str | None = None,
        user: str | None = None,
        subject: str | None = None,
        places: Sequence[Forgettable] = (),
    ) -> ForgetReceipt:
        """Forget exactly one thing, here and in `places`:

        - `fact_id`: that one version of a fact (a current one is not replaced by the
          version before it: the subject simply has no current value);
        - `user` and `subject`: every version of that subject for that user;
        - `conversation_id`: the conversation, its messages and its summary;
        - `user` alone: all of the user's facts and conversations, and everything the
          places have tagged with the user.

        Places are cleared first, so a place that fails (`MemoryStoreError`) leaves
        memory as it was and the same call can be retried. Idempotent: forgetting what
        is not there (or is another tenant's) removes nothing and is verified.
        """
        target = _Target.of(_tenant(tenant), fact_id, conversation_id, user, subject)
        checked, conversation_ids, distinct = await asyncio.to_thread(
            self._sql.call, lambda db: self._preview(db, target)
        )
        scope = ForgetScope(
            tenant=tenant,
            texts=tuple(checked),
            user=user if target.kind == "user" else None,
            conversation_ids=tuple(conversation_ids),
        )
        elsewhere: dict[str, int] = {}
        paths = [self.path]
        for place in places:
            try:
                elsewhere[place.name] = 0 if scope.empty else await place.forget(scope)
            except (sqlite3.Error, OSError) as exc:
                raise MemoryStoreError(
                    f"forgetting in {place.name} failed ({exc}); memory is unchanged, so "
                    "the same forget can be retried"
                ) from exc
            if place.path is not None:
                paths.append(place.path)

        removed, texts, _ = await self._run(self._tx(lambda db: self._delete(db, target)))
        # Rows added since the preview (a message arriving mid-forget) are deleted too;
        # their texts were not searched for elsewhere, but they are still verified.
        late = sorted(set(texts) - set(distinct))
        late_checked = await asyncio.to_thread(self._sql.call, lambda db: self._checkable(db, late))
        verify = [*checked, *late_checked]
        await asyncio.to_thread(self._sql.call, lambda db: settle(db, self.path, verify))

        left = await self._run(lambda db: self._remaining(db, target))
        residue = await asyncio.to_thread(
            files_holding, [f for p in paths for f in db_files(p)], verify
        )
        return ForgetReceipt(
            tenant=tenant,
            target=target.kind,
            removed=removed | elsewhere,
            verified=left == 0 and not residue,
            residue=[str(p) for p in residue],
            unchecked_texts=len(distinct) + len(late) - len(verify),
        )

    def _preview(
        self, db: sqlite3.Connection, target: _Target
    ) -> tuple[list[str], list[str], list[str]]:
        """What forgetting `target` would remove: the texts to search for elsewhere, the
        conversation ids, and all distinct texts. Found by deleting inside a transaction
        that is rolled back, so "still held by another row" is judged against exactly the
        rows that will remain."""
        db.execute("BEGIN IMMEDIATE")
        try:
            _, texts, conversation_ids = self._delete(db, target)
            distinct = sorted(set(texts))
            checked = self._checkable(db, distinct)
        finally:
            db.execute("ROLLBACK")
        return checked, conversation_ids, distinct

    def _delete(
        self, db: sqlite3.Connection, target: _Target
    ) -> tuple[dict[str, int], list[str], list[str]]:
        fact_where, fact_args = target.facts_where()
        conv_where, conv_args = target.conversations_where()
        facts = db.execute(
            f"SELECT value, superseded_at IS NULL FROM facts WHERE {fact_where}", fact_args
        ).fetchall()
        conversations = db.execute(
            f"SELECT conversation_id, summary FROM conversations WHERE {conv_where}", conv_args
        ).fetchall()
        ids = [str(c[0]) for c in conversations]
        contents: list[str] = []
        messages = 0
        for cid in ids:
            where = (target.tenant, cid)
            rows = db.execute(
                "SELECT content FROM messages WHERE tenant = ? AND conversation_id = ?", where
            ).fetchall()
            contents += [str(r[0]) for r in rows]
            messages += db.execute(
                "DELETE FROM messages WHERE tenant = ? AND conversation_id = ?", where
            ).rowcount
        db.execute(f"DELETE FROM conversations WHERE {conv_where}", conv_args)
        db.execute(f"DELETE FROM facts WHERE {fact_where}", fact_args)
        removed = {
            "facts": sum(1 for f in facts if f[1]),
            "fact_history": sum(1 for f in facts if not f[1]),
            "conversations": len(ids),
            "messages": messages,
        }
        texts = [str(f[0]) for f in facts] + [str(c[1]) for c in conversations] + contents
        return removed, [t for t in texts if t.strip()], ids

    def _checkable(self, db: sqlite3.Connection, texts: Sequence[str]) -> list[str]:
        """The texts that can be searched for and verified: long enough not to match
        unrelated bytes, and held by no remaining row (another user's identical fact would
        otherwise make verification impossible and widen deletions elsewhere)."""
        out: list[str] = []
        for text in texts:
            if len(text) < self._min_match:
                continue
            still = db.execute(
                "SELECT 1 FROM facts WHERE instr(value, ?1) > 0 "
                "UNION ALL SELECT 1 FROM messages WHERE instr(content, ?1) > 0 "
                "UNION ALL SELECT 1 FROM conversations WHERE instr(summary, ?1) > 0 LIMIT 1",
                (text,),
            ).fetchone()
            if still is None:
                out.append(text)
        return out

    @staticmethod
    def _remaining(db: sqlite3.Connection, target: _Target) -> int:
        fact_where, fact_args = target.facts_where()
        conv_where, conv_args = target.conversations_where()
        (facts,) = db.execute(
            f"SELECT COUNT(*) FROM facts WHERE {fact_where}", fact_args
        ).fetchone()
        conversations = db.execute(
            f"SELECT COUNT(*) FROM conversations WHERE {conv_where}", conv_args
        ).fetchone()[0]
        messages = 0
        if target.conversation_id is not None:
            messages = db.execute(
                "SELECT COUNT(*) FROM messages WHERE tenant = ? AND conversation_id = ?",
                (target.tenant, target.conversation_id),
            ).fetchone()[0]
        return int(facts) + int(conversations) + int(messages)

    def close(self) -> None:
        self._sql.close()
