"""FakeChatModel: the scripted ChatModel users test their own apps with."""

from __future__ import annotations

import pytest

from tether.errors import RateLimited
from tether.models.chat import (
    ChatRequest,
    ChatResponse,
    DoneEvent,
    TokenEvent,
    ToolCall,
    ToolCallEvent,
)
from tether.models.fake import FakeChatModel
from tether.types import Message, Usage

REQUEST = ChatRequest(messages=(Message(role="user", content="two words"),))


async def test_replies_in_script_order_and_records_requests() -> None:
    fake = FakeChatModel(["first reply", ChatResponse(text="second", usage=Usage(input_tokens=9))])
    one = await fake.chat(REQUEST)
    two = await fake.chat(REQUEST)
    assert (one.text, one.usage.input_tokens, one.usage.output_tokens) == ("first reply", 2, 2)
    assert (two.text, two.usage.input_tokens) == ("second", 9)
    assert fake.requests == [REQUEST, REQUEST]
    with pytest.raises(AssertionError, match="ran out"):
        await fake.chat(REQUEST)


async def test_scripted_errors_are_raised() -> None:
    fake = FakeChatModel([RateLimited("slow down", retry_after=1.0), "ok"])
    with pytest.raises(RateLimited):
        await fake.chat(REQUEST)
    assert (await fake.chat(REQUEST)).text == "ok"


async def test_stream_yields_tokens_tool_calls_usage_and_done() -> None:
    call = ToolCall(id="c1", name="lookup", arguments="{}")
    fake = FakeChatModel(
        [ChatResponse(text="a b c", tool_calls=(call,), finish_reason="tool_calls")]
    )
    events = [e async for e in fake.stream(REQUEST)]
    assert "".join(e.text for e in events if isinstance(e, TokenEvent)) == "a b c"
    assert [e.call for e in events if isinstance(e, ToolCallEvent)] == [call]
    assert isinstance(events[-1], DoneEvent) and events[-1].finish_reason == "tool_calls"
