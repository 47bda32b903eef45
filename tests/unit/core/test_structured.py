"""generate -> validate -> repair with a scripted model."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field

from tether.errors import InvalidOutput
from tether.models.fake import FakeChatModel
from tether.structured import generate, strict_schema
from tether.types import Message


class City(BaseModel):
    name: str
    population: int = Field(ge=0)


MESSAGES = [Message(role="user", content="Largest city?")]


async def test_valid_first_reply_needs_one_call_and_sends_the_schema() -> None:
    fake = FakeChatModel(['{"name": "Tokyo", "population": 37000000}'])
    result = await generate(fake, MESSAGES, City)
    assert result.value == City(name="Tokyo", population=37_000_000)
    assert len(fake.requests) == 1
    fmt = fake.requests[0].response_format
    assert fmt is not None and fmt.name == "City"
    assert fmt.json_schema["required"] == ["name", "population"]
    assert fmt.json_schema["additionalProperties"] is False


async def test_invalid_replies_are_repaired_with_the_errors_shown() -> None:
    fake = FakeChatModel(
        ["not json", '{"name": "Tokyo", "population": -1}', '{"name": "Tokyo", "population": 5}']
    )
    result = await generate(fake, MESSAGES, City, max_attempts=3)
    assert result.value.population == 5 and len(result.responses) == 3
    second, third = fake.requests[1], fake.requests[2]
    assert "not valid JSON" in second.messages[-1].content
    assert second.messages[-2].content == "not json"
    assert "population" in third.messages[-1].content
    assert result.usage.output_tokens == sum(r.usage.output_tokens for r in result.responses)


async def test_attempts_are_bounded_and_end_in_invalid_output() -> None:
    fake = FakeChatModel(["{}", "{}", "{}", "never asked"])
    with pytest.raises(InvalidOutput) as caught:
        await generate(fake, MESSAGES, City, max_attempts=3)
    assert len(fake.requests) == 3
    assert caught.value.last_output == "{}" and caught.value.errors


async def test_a_check_drives_repair_and_can_accept_with_problems() -> None:
    def small(city: City) -> list[str]:
        return [] if city.population < 10 else ["population must be under 10"]

    fake = FakeChatModel(['{"name": "A", "population": 50}', '{"name": "A", "population": 3}'])
    assert (await generate(fake, MESSAGES, City, check=small)).value.population == 3

    stubborn = FakeChatModel(['{"name": "A", "population": 50}'] * 2)
    kept = await generate(
        stubborn, MESSAGES, City, check=small, max_attempts=2, accept_with_problems=True
    )
    assert kept.value.population == 50 and kept.problems == ["population must be under 10"]


async def test_fenced_json_is_accepted_and_wire_schema_overrides() -> None:
    fake = FakeChatModel(['```json\n{"name": "B", "population": 1}\n```'])
    wire = {"type": "object", "properties": {"name": {"enum": ["B"]}}}
    result = await generate(fake, MESSAGES, City, wire_schema=wire)
    assert result.value.name == "B"
    assert fake.requests[0].response_format.json_schema == wire  # type: ignore[union-attr]


def test_strict_schema_requires_everything_and_drops_titles() -> None:
    schema = strict_schema(City)
    assert "title" not in json.dumps(schema)
    assert schema["required"] == ["name", "population"]
