"""`tether memory facts | history | forget`, run as a real process against real files."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.support.cli import Env, Run, make_env, tether
from tether.memory import Memory
from tether.models.cache import CachingChatModel
from tether.models.chat import ChatRequest
from tether.models.fake import FakeChatModel
from tether.observability.spanstore import SpanRecord, SpanStore
from tether.types import Message

SECRET = "locker code amber-falcon-2204"


def tether_memory(env: Env, *args: str) -> Run:
    return tether(env, "memory", *args, timeout=120)


def raw(path: Path) -> bytes:
    parts = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
    return b"".join(p.read_bytes() for p in parts if p.exists())


async def _populate(root: Path) -> None:
    memory = Memory(root / "memory.db")
    await memory.remember(
        "t1", "alice", "city", "Berlin", source="chat:c1", confidence=0.6, at=1000.0
    )
    await memory.remember("t1", "alice", "city", "Paris", source="crm", confidence=0.9, at=2000.0)
    await memory.remember("t1", "alice", "locker", SECRET, source="chat:c1", confidence=1.0)
    await memory.remember("t1", "bob", "city", "Rome", source="crm", confidence=0.8)
    await memory.add_message("t1", "alice", "c1", Message(role="user", content=f"My {SECRET}."))
    memory.close()

    cache = CachingChatModel(FakeChatModel([f"Noted: {SECRET}."]), root / "responses.db")
    await cache.chat(ChatRequest(messages=(Message(role="user", content="remember it"),)))
    cache.close()


@pytest.fixture
def env(tmp_path: Path) -> Env:
    asyncio.run(_populate(tmp_path))
    return make_env(tmp_path)


@pytest.fixture
def old_fact(env: Env) -> str:
    """The id of alice's superseded city, as `history` reports it."""
    run = tether_memory(
        env, "history", "--tenant", "t1", "--user", "alice", "--subject", "city", "--json"
    )
    assert run.code == 0, run.err
    first = json.loads(run.out)[0]
    assert first["value"] == "Berlin"
    return str(first["id"])


def test_facts_lists_current_facts_with_provenance(env: Env) -> None:
    run = tether_memory(env, "facts", "--tenant", "t1", "--user", "alice", "--json")
    assert run.code == 0, run.err
    facts = {f["subject"]: f for f in json.loads(run.out)}
    assert set(facts) == {"city", "locker"}
    assert facts["city"]["value"] == "Paris"
    assert (facts["city"]["source"], facts["city"]["confidence"]) == ("crm", 0.9)
    assert facts["city"]["recorded_at"] == 2000.0 and facts["city"]["version"] == 2

    table = tether_memory(env, "facts", "--tenant", "t1", "--user", "alice")
    assert table.code == 0 and "Paris" in table.out and "Berlin" not in table.out
    other = tether_memory(env, "facts", "--tenant", "t2", "--user", "alice", "--json")
    assert other.code == 0 and json.loads(other.out) == []


def test_history_shows_superseded_values(env: Env) -> None:
    run = tether_memory(
        env, "history", "--tenant", "t1", "--user", "alice", "--subject", "City", "--json"
    )
    assert run.code == 0, run.err
    history = json.loads(run.out)
    assert [(f["value"], f["superseded_at"]) for f in history] == [
        ("Berlin", 2000.0),
        ("Paris", None),
    ]


def test_forget_user_everywhere_and_verified(env: Env) -> None:
    root = env.root
    assert SECRET.encode() in raw(root / "memory.db")
    assert SECRET.encode() in raw(root / "responses.db")
    spans = SpanStore(root / "traces.db")
    spans.write(
        [
            SpanRecord(
                trace_id="a" * 32,
                span_id="b" * 16,
                parent_id=None,
                name="tether.answer",
                kind="internal",
                start_ns=1,
                end_ns=2,
                status="ok",
                attributes={"tether.tenant": "t1", "enduser.id": "alice"},
                events=[],
            )
        ]
    )
    spans.close()

    # The places come from settings (TETHER_RESPONSE_CACHE, TETHER_TRACES_DB, ...).
    run = tether_memory(env, "forget", "--tenant", "t1", "--user", "alice", "--json")
    assert run.code == 0, run.err
    receipt = json.loads(run.out)
    assert receipt["verified"] is True
    assert receipt["removed"] == {
        "facts": 2,
        "fact_history": 1,
        "conversations": 1,
        "messages": 1,
        "response_cache": 1,
        "spans": 1,
        "answers": 0,
    }
    for name in ("memory.db", "responses.db", "traces.db"):
        assert SECRET.encode() not in raw(root / name), name
    bob = tether_memory(env, "facts", "--tenant", "t1", "--user", "bob", "--json")
    assert [f["value"] for f in json.loads(bob.out)] == ["Rome"]
    gone = tether_memory(env, "facts", "--tenant", "t1", "--user", "alice", "--json")
    assert json.loads(gone.out) == []


def test_forget_one_fact_with_places_off(env: Env, old_fact: str) -> None:
    run = tether_memory(
        env,
        "forget",
        "--tenant",
        "t1",
        "--fact",
        old_fact,
        "--response-cache",
        "off",
        "--traces-db",
        "off",
        "--answers-db",
        "off",
    )
    assert run.code == 0, run.err
    assert "forgot fact in tenant t1" in run.out and "verified" in run.out
    history = tether_memory(
        env, "history", "--tenant", "t1", "--user", "alice", "--subject", "city", "--json"
    )
    assert [f["value"] for f in json.loads(history.out)] == ["Paris"]


def test_forget_that_cannot_be_verified_exits_1(env: Env) -> None:
    spans = SpanStore(env.root / "traces.db")
    spans.write(
        [
            SpanRecord(
                trace_id="c" * 32,
                span_id="d" * 16,
                parent_id=None,
                name="untenanted",
                kind="internal",
                start_ns=1,
                end_ns=2,
                status="ok",
                attributes={"note": SECRET},
                events=[],
            )
        ]
    )
    spans.close()
    run = tether_memory(env, "forget", "--tenant", "t1", "--user", "alice")
    assert run.code == 1
    assert "NOT verified" in run.out and "traces.db" in run.out


def test_bad_requests_are_typed_errors(env: Env, tmp_path: Path) -> None:
    both = tether_memory(env, "forget", "--tenant", "t1", "--user", "alice", "--fact", "f_1")
    assert both.code == 2 and "InvalidMemoryInput" in both.err
    missing = tether_memory(
        env, "facts", "--db", str(tmp_path / "nope.db"), "--tenant", "t1", "--user", "alice"
    )
    assert missing.code == 2 and "ConfigError" in missing.err
    assert not (tmp_path / "nope.db").exists()
