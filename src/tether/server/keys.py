"""API keys: created by an operator, stored hashed, resolved to a tenant and a role.

A key is `tk_<id>_<secret>`: the id names the row (and shows up in logs and the audit
trail), the secret is 32 random bytes. Only sha256(secret) is stored. A fast hash is the
right one here — unlike a password, the secret has 256 bits of entropy, so there is
nothing for a slow hash to protect, and a lookup must cost microseconds per request.
Comparison is constant-time. Resolved keys are cached for a few seconds, so a revoke
takes effect within `cache_seconds` across all workers that share the file.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeAlias

from tether.errors import TetherError
from tether.quick_sqlite import connect

Role: TypeAlias = Literal["reader", "writer", "admin"]
ROLES: tuple[Role, ...] = ("reader", "writer", "admin")
_RANK = {role: i for i, role in enumerate(ROLES)}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id          TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('reader', 'writer', 'admin')),
    name        TEXT NOT NULL DEFAULT '',
    principals  TEXT NOT NULL DEFAULT '*',
    rps         REAL NOT NULL,
    burst       INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
"""


class InvalidKey(TetherError):
    """The presented API key is malformed, unknown or revoked."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant: str
    role: Role
    name: str
    principals: tuple[str, ...]
    #: Sustained requests per second (0 = unlimited) and the burst allowed above it.
    rps: float
    burst: int
    created_at: str
    revoked_at: str | None = None

    def allows(self, needed: Role) -> bool:
        return _RANK[self.role] >= _RANK[needed]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    def __init__(self, path: str | Path, *, cache_seconds: float = 5.0) -> None:
        self.path = Path(path).expanduser()
        self._db = connect(self.path, schema=_SCHEMA, synchronous="FULL")
        self._lock = threading.Lock()
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, ApiKey]] = {}

    def create(
        self,
        tenant: str,
        role: Role,
        *,
        name: str = "",
        principals: tuple[str, ...] = ("*",),
        rps: float = 10.0,
        burst: int = 20,
    ) -> tuple[ApiKey, str]:
        """A new key and its one-time plaintext (shown once, never stored)."""
        if not tenant.strip():
            raise TetherError("a key needs a tenant")
        if role not in ROLES:
            raise TetherError(f"role must be one of {', '.join(ROLES)}")
        if rps < 0 or burst < 1:
            raise TetherError("rps must be >= 0 and burst >= 1")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(
            id=key_id,
            tenant=tenant,
            role=role,
            name=name,
            principals=tuple(sorted(set(principals) | {"*"})),
            rps=rps,
            burst=burst,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys (id, secret_hash, tenant, role, name, principals, rps, "
                "burst, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.id,
                    _hash(secret),
                    key.tenant,
                    key.role,
                    key.name,
                    ",".join(key.principals),
                    key.rps,
                    key.burst,
                    key.created_at,
                ),
            )
        return key, f"tk_{key_id}_{secret}"

    def list(self, tenant: str | None = None) -> list[ApiKey]:
        sql = "SELECT * FROM api_keys"
        args: tuple[str, ...] = ()
        if tenant is not None:
            sql, args = sql + " WHERE tenant = ?", (tenant,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created_at, id", args).fetchall()
        return [self._row(row)[0] for row in rows]

    def revoke(self, key_id: str) -> bool:
        with self._lock:
            changed = self._db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (datetime.now(UTC).isoformat(timespec="seconds"), key_id),
            ).rowcount
            self._cache = {k: v for k, v in self._cache.items() if v[1].id != key_id}
        return changed > 0

    def resolve(self, presented: str) -> ApiKey:
        """The live key for a presented `tk_<id>_<secret>`; InvalidKey otherwise."""
        now = time.monotonic()
        cached = self._cache.get(presented)
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        prefix, _, rest = presented.partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != "tk" or not key_id or not secret:
            raise InvalidKey("malformed API key")
        with self._lock:
            row = self._db.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            raise InvalidKey("unknown API key")
        key, stored_hash = self._row(row)
        if not hmac.compare_digest(stored_hash, _hash(secret)):
            raise InvalidKey("unknown API key")
        if key.revoked_at is not None:
            raise InvalidKey("this API key was revoked")
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[presented] = (now, key)
        return key

    @staticmethod
    def _row(row: tuple[object, ...]) -> tuple[ApiKey, str]:
        (key_id, secret_hash, tenant, role, name, principals, rps, burst, created, revoked) = row
        key = ApiKey(
            id=str(key_id),
            tenant=str(tenant),
            role=role,  # type: ignore[arg-type]  # the CHECK constraint guarantees it
            name=str(name),
            principals=tuple(str(principals).split(",")),
            rps=float(rps),  # type: ignore[arg-type]
            burst=int(burst),  # type: ignore[call-overload]
            created_at=str(created),
            revoked_at=None if revoked is None else str(revoked),
        )
        return key, str(secret_hash)

    def close(self) -> None:
        self._db.close()
