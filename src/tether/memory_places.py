"""Places outside memory that hold copies of what users said, as `Forgettable`s.

Each adapter opens its own connection to the owner's SQLite file with `secure_delete`
on, deletes the rows holding a forgotten text (or tagged with the forgotten user or
conversation), and settles the file (WAL truncated, VACUUM if bytes survive in free
space). They read the owners' schemas as stored on disk: `responses` in
`tether.models.cache`, `spans` in `tether.observability.spanstore`, `answers` in
`tether.server.answer_log`. A missing file or table means nothing to forget; a file is
never created by forgetting.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from tether.memory import ForgetScope, install_matcher, open_for_forgetting, settle


def _has_table(db: sqlite3.Connection, table: str) -> bool:
    found = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return found is not None


class _SqlitePlace:
    """One owner's SQLite file: open it for forgetting, delete, settle, close."""

    name = ""
    table = ""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path).expanduser()

    @property
    def path(self) -> Path:
        return self._path

    async def forget(self, scope: ForgetScope) -> int:
        return await asyncio.to_thread(self._forget, scope)

    def _wants(self, scope: ForgetScope) -> bool:
        return bool(scope.texts)

    def _forget(self, scope: ForgetScope) -> int:
        if not self._wants(scope) or not self._path.exists():
            return 0
        db = open_for_forgetting(self._path)
        try:
            if not _has_table(db, self.table):
                return 0
            if scope.texts:
                install_matcher(db, scope.texts)
            removed = self._delete(db, scope)
            settle(db, self._path, scope.texts)
            return removed
        finally:
            db.close()

    def _delete(self, db: sqlite3.Connection, scope: ForgetScope) -> int:
        raise NotImplementedError


class ResponseCachePlace(_SqlitePlace):
    """The model response cache. Its rows carry no tenant (the tenant scope is hashed
    into the key) and no request text, so a row goes when its stored response holds a
    forgotten text, whichever tenant it served: for a cache that costs one miss."""

    name = "response_cache"
    table = "responses"

    def _delete(self, db: sqlite3.Connection, scope: ForgetScope) -> int:
        return db.execute("DELETE FROM responses WHERE holds_forgotten(response)").rowcount


class SpanStorePlace(_SqlitePlace):
    """The embedded span store. Whole traces go (a trace missing its model-call span is
    misleading, not safer) when one of their spans holds a forgotten text in its
    attributes or events or is tagged with the user or conversation, and only traces
    whose spans name the scope's tenant (`tether.tenant`): a trace without a tenant is
    left alone, and the byte check reports any text it still holds."""

    name = "spans"
    table = "spans"

    def __init__(
        self,
        path: str | Path,
        *,
        user_attribute: str = "enduser.id",
        conversation_attribute: str = "gen_ai.conversation.id",
    ) -> None:
        super().__init__(path)
        self._user_path = f'$."{user_attribute}"'
        self._conversation_path = f'$."{conversation_attribute}"'

    def _wants(self, scope: ForgetScope) -> bool:
        return not scope.empty

    def _delete(self, db: sqlite3.Connection, scope: ForgetScope) -> int:
        clauses: list[str] = []
        args: list[str] = []
        if scope.texts:
            clauses.append("holds_forgotten(attributes) OR holds_forgotten(events)")
        if scope.user is not None:
            clauses.append("json_extract(attributes, ?) = ?")
            args += [self._user_path, scope.user]
        if scope.conversation_ids:
            clauses.append("json_extract(attributes, ?) IN (SELECT value FROM json_each(?))")
            args += [self._conversation_path, json.dumps(list(scope.conversation_ids))]
        sql = (
            "DELETE FROM spans WHERE trace_id IN ("
            f"SELECT trace_id FROM spans WHERE {' OR '.join(f'({c})' for c in clauses)} "
            "INTERSECT SELECT trace_id FROM spans "
            """WHERE json_extract(attributes, '$."tether.tenant"') = ?)"""
        )
        return db.execute(sql, [*args, scope.tenant]).rowcount


class AnswerLogPlace(_SqlitePlace):
    """The server's answer log (question redacted, partial and final answer), by tenant."""

    name = "answers"
    table = "answers"

    def _delete(self, db: sqlite3.Connection, scope: ForgetScope) -> int:
        return db.execute(
            "DELETE FROM answers WHERE tenant = ? AND (holds_forgotten(question) "
            "OR holds_forgotten(partial) OR holds_forgotten(answer))",
            (scope.tenant,),
        ).rowcount
