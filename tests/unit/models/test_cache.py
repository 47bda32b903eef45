"""CachingChatModel: identical requests are answered once; anything that differs misses."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tether.errors import ProviderUnavailable
from tether.models.cache import CachingChatModel, clear
from tether.models.chat import (
    ChatRequest,
    ChatResponse,
    DoneEvent,
    ErrorEvent,
    JsonSchemaFormat,
    StreamEvent,
    TokenEvent,
    ToolCall,
    ToolCallEvent,
    ToolSpec,
    UsageEvent,
)
from tether.models.fake import FakeChatModel
from tether.types import Message, Usage

SEARCH = ToolSpec(
    name="search",
    description="Search the docs.",
    parameters={"type": "object", "properties": {"q": {"type": "string"}}},
)
ANSWER = JsonSchemaFormat.model_validate(
    {"name": "answer", "schema": {"type": "object", "properties": {"summary": {"type": "string"}}}}
)
REQUEST = ChatRequest(
    messages=(
        Message(role="system", content="Answer from the context."),
        Message(role="user", content="What is tether?", name="alice"),
    ),
    max_tokens=100,
    temperature=0.0,
    tools=(SEARCH,),
    tool_choice="auto",
    response_format=ANSWER,
    stop=("END",),
)
RICH = ChatResponse(
    text="  Tether answers\nfrom  your documents. ",
    tool_calls=(
        ToolCall(id="c1", name="search", arguments='{"q": "tether"}'),
        ToolCall(id="c2", name="search", arguments='{"q": "docs"}'),
    ),
    usage=Usage(input_tokens=12, output_tokens=7, cached_input_tokens=3),
    model="fake",
    finish_reason="tool_calls",
    request_id="req-1",
)


@dataclass(frozen=True)
class Setup:
    model: str = "fake"
    prompt_key: str = "qa.answer@1"
    schema_version: str = "1"
    scope: str = "tenant-a"
    request: ChatRequest = REQUEST


def _messages(*messages: Message) -> Callable[[Setup], Setup]:
    return lambda s: replace(s, request=s.request.model_copy(update={"messages": messages}))


def _field(**update: object) -> Callable[[Setup], Setup]:
    return lambda s: replace(s, request=s.request.model_copy(update=update))


SYSTEM, USER = REQUEST.messages
VARIANTS: dict[str, Callable[[Setup], Setup]] = {
    "model name": lambda s: replace(s, model="other-model"),
    "prompt_key": lambda s: replace(s, prompt_key="qa.answer@2"),
    "schema_version": lambda s: replace(s, schema_version="2"),
    "message content": _messages(SYSTEM, USER.model_copy(update={"content": "What is Tether?"})),
    "message role": _messages(SYSTEM.model_copy(update={"role": "user"}), USER),
    "message name": _messages(SYSTEM, USER.model_copy(update={"name": "bob"})),
    "extra message": _messages(SYSTEM, USER, Message(role="assistant", content="")),
    "max_tokens": _field(max_tokens=101),
    "temperature": _field(temperature=0.7),
    "temperature unset": _field(temperature=None),
    "stop": _field(stop=("STOP",)),
    "tools": _field(tools=(SEARCH.model_copy(update={"description": "Search the web."}),)),
    "no tools": _field(tools=()),
    "tool_choice": _field(tool_choice="required"),
    "response_format": _field(
        response_format=ANSWER.model_copy(update={"json_schema": {"type": "string"}})
    ),
    "no response_format": _field(response_format=None),
    "scope (tenant)": lambda s: replace(s, scope="tenant-b"),
}


def cache_for(
    setup: Setup,
    path: Path,
    script: Sequence[ChatResponse | str | Exception],
    **kwargs: object,
) -> tuple[CachingChatModel, FakeChatModel]:
    fake = FakeChatModel(script, name=setup.model)
    cache = CachingChatModel(
        fake,
        path,
        scope=setup.scope,
        prompt_key=setup.prompt_key,
        schema_version=setup.schema_version,
        **kwargs,  # type: ignore[arg-type]
    )
    return cache, fake


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "responses.db"


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in events]


def assemble(events: list[StreamEvent]) -> tuple[str, list[ToolCall], list[Usage], list[DoneEvent]]:
    text = "".join(e.text for e in events if isinstance(e, TokenEvent))
    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    usages = [e.usage for e in events if isinstance(e, UsageEvent)]
    dones = [e for e in events if isinstance(e, DoneEvent)]
    return text, calls, usages, dones


class ScriptedStream:
    """A ChatModel whose streams are given event by event (an Exception is raised there);
    records whether each upstream stream was closed."""

    def __init__(self, *streams: list[StreamEvent | Exception], name: str = "fake") -> None:
        self._streams = list(streams)
        self._name = name
        self.opened = 0
        self.closed = 0

    @property
    def name(self) -> str:
        return self._name

    async def chat(self, request: ChatRequest) -> ChatResponse:
        raise AssertionError("ScriptedStream only streams")

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        self.opened += 1
        script = self._streams.pop(0)
        try:
            for item in script:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.closed += 1


# -- the key --


async def test_identical_requests_hit_and_inner_is_called_once(db: Path) -> None:
    cache, fake = cache_for(Setup(), db, [RICH])
    first = await cache.chat(REQUEST)
    second = await cache.chat(REQUEST)
    assert first == RICH
    assert second == RICH
    assert len(fake.requests) == 1
    assert (cache.hits, cache.misses) == (1, 1)


@pytest.mark.parametrize("change", list(VARIANTS.values()), ids=list(VARIANTS))
async def test_changing_any_one_key_component_misses(
    db: Path, change: Callable[[Setup], Setup]
) -> None:
    base = Setup()
    variant = change(base)
    assert variant != base
    first, first_fake = cache_for(base, db, ["base answer"])
    second, second_fake = cache_for(variant, db, ["variant answer"])

    assert first.cache_key(base.request) != second.cache_key(variant.request)
    assert (await first.chat(base.request)).text == "base answer"
    assert (await second.chat(variant.request)).text == "variant answer"
    assert len(second_fake.requests) == 1
    assert second.misses == 1
    # Both entries live side by side: each setup still hits its own.
    assert (await first.chat(base.request)).text == "base answer"
    assert (await second.chat(variant.request)).text == "variant answer"
    assert len(first_fake.requests) == 1
    assert len(second_fake.requests) == 1


async def test_idempotency_key_is_not_part_of_the_key(db: Path) -> None:
    cache, fake = cache_for(Setup(), db, ["once"])
    one = REQUEST.model_copy(update={"idempotency_key": "attempt-1"})
    two = REQUEST.model_copy(update={"idempotency_key": "attempt-2"})
    assert cache.cache_key(one) == cache.cache_key(two) == cache.cache_key(REQUEST)
    assert (await cache.chat(one)).text == "once"
    assert (await cache.chat(two)).text == "once"
    assert len(fake.requests) == 1


def test_key_is_a_sha256_hex_and_ignores_json_key_order(db: Path) -> None:
    cache, _ = cache_for(Setup(), db, [])
    reordered = SEARCH.model_copy(
        update={"parameters": {"properties": {"q": {"type": "string"}}, "type": "object"}}
    )
    key = cache.cache_key(REQUEST)
    assert len(key) == 64
    assert int(key, 16) >= 0
    assert cache.cache_key(REQUEST.model_copy(update={"tools": (reordered,)})) == key


# -- what is (not) stored --


async def test_errors_are_never_cached(db: Path) -> None:
    cache, fake = cache_for(Setup(), db, [ProviderUnavailable("503"), "recovered"])
    with pytest.raises(ProviderUnavailable):
        await cache.chat(REQUEST)
    assert (await cache.chat(REQUEST)).text == "recovered"
    assert len(fake.requests) == 2
    assert (await cache.chat(REQUEST)).text == "recovered"
    assert len(fake.requests) == 2
    assert (cache.hits, cache.misses) == (1, 2)


async def test_expired_entries_miss_and_are_replaced(db: Path) -> None:
    now = [1000.0]
    cache, fake = cache_for(Setup(), db, ["old", "new"], ttl_seconds=10, clock=lambda: now[0])
    assert (await cache.chat(REQUEST)).text == "old"
    now[0] = 1009.9
    assert (await cache.chat(REQUEST)).text == "old"
    assert len(fake.requests) == 1
    now[0] = 1010.0
    assert (await cache.chat(REQUEST)).text == "new"
    assert len(fake.requests) == 2
    now[0] = 1019.0  # the replacement is fresh from 1010 on
    assert (await cache.chat(REQUEST)).text == "new"
    assert len(fake.requests) == 2


async def test_purge_expired_removes_only_stale_rows(db: Path) -> None:
    now = [0.0]
    cache, _ = cache_for(Setup(), db, ["a", "b", "c"], ttl_seconds=10, clock=lambda: now[0])
    await cache.chat(REQUEST.model_copy(update={"max_tokens": 1}))
    now[0] = 5.0
    await cache.chat(REQUEST.model_copy(update={"max_tokens": 2}))
    now[0] = 8.0
    await cache.chat(REQUEST.model_copy(update={"max_tokens": 3}))
    now[0] = 15.0
    assert cache.purge_expired() == 2
    assert cache.purge_expired() == 0
    assert clear(db) == 1


def test_ttl_must_be_positive(db: Path) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        CachingChatModel(FakeChatModel([]), db, ttl_seconds=0)


async def test_a_corrupt_row_is_a_miss_and_is_overwritten(db: Path) -> None:
    cache, fake = cache_for(Setup(), db, ["first", "second"])
    await cache.chat(REQUEST)
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("UPDATE responses SET response = ?", ("not json",))
    raw.close()
    assert (await cache.chat(REQUEST)).text == "second"
    assert (await cache.chat(REQUEST)).text == "second"
    assert len(fake.requests) == 2


# -- streams --


async def test_stream_miss_stores_and_later_stream_and_chat_hits_replay_it(db: Path) -> None:
    cache, fake = cache_for(Setup(), db, [RICH])
    live = await collect(cache.stream(REQUEST))
    replayed = await collect(cache.stream(REQUEST))
    as_chat = await cache.chat(REQUEST)

    assert len(fake.requests) == 1
    assert (cache.hits, cache.misses) == (2, 1)
    text, calls, usages, dones = assemble(live)
    assert text  # the fake's stream did deliver the text
    assert assemble(replayed) == (text, calls, usages, dones)
    assert calls == list(RICH.tool_calls)
    assert usages == [RICH.usage]
    assert dones == [DoneEvent(finish_reason="tool_calls", request_id="req-1")]
    assert isinstance(replayed[-1], DoneEvent)
    assert as_chat.text == text
    assert as_chat.tool_calls == RICH.tool_calls
    assert as_chat.usage == RICH.usage
    assert (as_chat.finish_reason, as_chat.request_id, as_chat.model) == (
        "tool_calls",
        "req-1",
        "fake",
    )


async def test_chat_miss_replays_as_a_stream_losslessly_in_chunks(db: Path) -> None:
    cache, fake = cache_for(Setup(), db, [RICH])
    await cache.chat(REQUEST)
    events = await collect(cache.stream(REQUEST))
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert len(tokens) > 1
    text, calls, usages, dones = assemble(events)
    assert text == RICH.text  # leading, inner and trailing whitespace all survive
    assert calls == list(RICH.tool_calls)
    assert usages == [RICH.usage]
    assert dones == [DoneEvent(finish_reason="tool_calls", request_id="req-1")]
    assert [type(e).__name__ for e in events[len(tokens) :]] == [
        "ToolCallEvent",
        "ToolCallEvent",
        "UsageEvent",
        "DoneEvent",
    ]
    assert len(fake.requests) == 1


async def test_an_aborted_stream_stores_nothing_and_closes_upstream(db: Path) -> None:
    done: list[StreamEvent | Exception] = [
        TokenEvent(text="partial "),
        TokenEvent(text="answer"),
        DoneEvent(),
    ]
    inner = ScriptedStream(list(done), list(done))
    cache = CachingChatModel(inner, db)
    events = cache.stream(REQUEST)
    assert await anext(events) == TokenEvent(text="partial ")
    await events.aclose()  # type: ignore[attr-defined]
    assert inner.closed == 1

    again = await collect(cache.stream(REQUEST))
    assert inner.opened == 2
    assert again == done
    assert clear(db) == 1


@pytest.mark.parametrize(
    "script",
    [
        [TokenEvent(text="half"), ErrorEvent(error="connection reset", kind="Timeout")],
        [TokenEvent(text="half"), ErrorEvent(error="odd", kind="InvalidResponse"), DoneEvent()],
        [TokenEvent(text="half"), UsageEvent(usage=Usage(output_tokens=1))],
    ],
    ids=["error then end", "error then done", "no done"],
)
async def test_a_failed_stream_stores_nothing(db: Path, script: list[StreamEvent]) -> None:
    good: list[StreamEvent | Exception] = [TokenEvent(text="whole"), DoneEvent()]
    inner = ScriptedStream(list(script), good)
    cache = CachingChatModel(inner, db)
    assert await collect(cache.stream(REQUEST)) == script
    assert assemble(await collect(cache.stream(REQUEST)))[0] == "whole"
    assert inner.opened == 2
    assert cache.misses == 2


async def test_a_stream_that_raises_propagates_and_stores_nothing(db: Path) -> None:
    inner = ScriptedStream(
        [TokenEvent(text="half"), ProviderUnavailable("gone")],
        [TokenEvent(text="whole"), DoneEvent()],
    )
    cache = CachingChatModel(inner, db)
    with pytest.raises(ProviderUnavailable):
        await collect(cache.stream(REQUEST))
    assert assemble(await collect(cache.stream(REQUEST)))[0] == "whole"
    assert inner.opened == 2
    assert clear(db) == 1


# -- the file --


async def test_entries_persist_across_wrapper_instances(db: Path) -> None:
    first, _ = cache_for(Setup(), db, [RICH])
    await first.chat(REQUEST)
    first.close()
    second, fake = cache_for(Setup(), db, [])  # would raise if it reached the model
    assert await second.chat(REQUEST) == RICH
    assert fake.requests == []
    assert second.hits == 1


async def test_clear_empties_the_file_and_returns_the_count(db: Path) -> None:
    cache, fake = cache_for(Setup(), db, ["a", "b", "c", "a again"])
    for n in (1, 2, 3):
        await cache.chat(REQUEST.model_copy(update={"max_tokens": n}))
    assert clear(db) == 3
    assert clear(db) == 0
    assert (await cache.chat(REQUEST.model_copy(update={"max_tokens": 1}))).text == "a again"
    assert len(fake.requests) == 4
    assert cache.clear() == 1
    assert cache.clear() == 0


def test_clear_on_a_missing_file_does_not_create_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.db"
    assert clear(path) == 0
    assert not path.exists()


async def test_concurrent_callers_share_one_cache(db: Path) -> None:
    cache, fake = cache_for(Setup(), db, [f"answer {n}" for n in range(20)])
    requests = [REQUEST.model_copy(update={"max_tokens": n + 1}) for n in range(20)]
    first = await asyncio.gather(*(cache.chat(r) for r in requests))
    again = await asyncio.gather(*(cache.chat(r) for r in requests))
    assert sorted(r.text for r in first) == sorted(f"answer {n}" for n in range(20))
    assert [r.text for r in again] == [r.text for r in first]
    assert len(fake.requests) == 20
    assert (cache.hits, cache.misses) == (20, 20)
