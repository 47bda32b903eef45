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


async def test_grounded_reply_quotes_and_cites_the_first_source() -> None:
    import json

    from tether.models.fake import grounded_reply
    from tether.prompts import get
    from tether.prompts.qa_answer_v1 import QAInputs, Source

    messages = get("qa.answer").render(
        QAInputs(
            question="q",
            sources=[
                Source(id="c0123456789abcde", text="First sentence here. Second one."),
                Source(id="c1111111111111111", text="Other."),
            ],
        )
    )
    data = json.loads(grounded_reply(ChatRequest(messages=messages)))
    assert data["answer"] == "First sentence here. [c0123456789abcde]"
    assert data["cited_ids"] == ["c0123456789abcde"] and not data["declined"]
    empty = json.loads(grounded_reply(REQUEST))
    assert empty["declined"] and empty["cited_ids"] == []


async def test_a_responder_answers_after_the_script() -> None:
    fake = FakeChatModel(["scripted"], responder=lambda request: "generated")
    assert [(await fake.chat(REQUEST)).text for _ in range(3)] == [
        "scripted",
        "generated",
        "generated",
    ]
