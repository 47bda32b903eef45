"""API keys: hashed at rest, resolved to tenant and role, revocable; token buckets."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import TetherError
from tether.server.keys import InvalidKey, KeyStore
from tether.server.ratelimit import RateLimiter, retry_after_header


def test_a_key_resolves_to_its_tenant_and_role_and_is_stored_hashed(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.db")
    key, secret = store.create("acme", "writer", name="ci", principals=("team-a",))
    assert secret.startswith(f"tk_{key.id}_")
    resolved = store.resolve(secret)
    assert (resolved.tenant, resolved.role) == ("acme", "writer")
    assert set(resolved.principals) == {"*", "team-a"}
    store.close()
    assert secret.split("_", 2)[2].encode() not in (tmp_path / "keys.db").read_bytes()


def test_wrong_malformed_and_revoked_keys_are_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.db", cache_seconds=0)
    key, secret = store.create("acme", "reader")
    with pytest.raises(InvalidKey, match="malformed"):
        store.resolve("not-a-key")
    with pytest.raises(InvalidKey, match="unknown"):
        store.resolve(secret[:-2] + ("xx" if not secret.endswith("xx") else "yy"))
    with pytest.raises(InvalidKey, match="unknown"):
        store.resolve(f"tk_ffffffffffff_{secret.split('_', 2)[2]}")
    assert store.revoke(key.id) and not store.revoke(key.id)
    with pytest.raises(InvalidKey, match="revoked"):
        store.resolve(secret)


def test_revoking_drops_the_cached_key_at_once(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.db", cache_seconds=60)
    key, secret = store.create("acme", "reader")
    store.resolve(secret)
    store.revoke(key.id)
    with pytest.raises(InvalidKey):
        store.resolve(secret)


def test_roles_rank_reader_writer_admin(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.db")
    reader = store.create("t", "reader")[0]
    admin = store.create("t", "admin")[0]
    assert reader.allows("reader") and not reader.allows("writer")
    assert admin.allows("writer") and admin.allows("admin")
    with pytest.raises(TetherError):
        store.create("t", "root")  # type: ignore[arg-type]
    with pytest.raises(TetherError):
        store.create(" ", "reader")


def test_token_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.check("k", 2.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.check("k", 2.0, 3)
    assert wait == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.check("k", 2.0, 3) == 0.0
    assert limiter.check("other", 2.0, 3) == 0.0  # buckets are per key
    assert limiter.check("k", 0.0, 1) == 0.0  # rps 0: unlimited
    assert retry_after_header(0.01) == "1" and retry_after_header(2.2) == "3"
