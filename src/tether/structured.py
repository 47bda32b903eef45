"""generate -> validate -> repair: typed output from a chat model, or InvalidOutput.

The provider's json_schema mode is requested where it exists; the output is still
validated here, because "supported" differs between servers and small models drift.
Each repair turn shows the model its previous output and exactly what was wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from tether.errors import InvalidOutput
from tether.models.chat import ChatModel, ChatRequest, ChatResponse, JsonSchemaFormat
from tether.types import Message, Usage

T = TypeVar("T", bound=BaseModel)
#: Extra checks beyond the schema (e.g. citations); returns problems, empty when fine.
Check = Callable[[T], list[str]]


@dataclass
class Generation(Generic[T]):
    value: T
    responses: list[ChatResponse] = field(default_factory=list)
    #: Problems the last accepted output still had (only when `accept_with_problems`).
    problems: list[str] = field(default_factory=list)

    @property
    def usage(self) -> Usage:
        return Usage(
            input_tokens=sum(r.usage.input_tokens for r in self.responses),
            output_tokens=sum(r.usage.output_tokens for r in self.responses),
            cached_input_tokens=sum(r.usage.cached_input_tokens for r in self.responses),
        )


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The pydantic schema in the shape strict json_schema modes accept: every property
    required, no additional properties, no titles."""

    def tidy(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: tidy(v) for k, v in node.items() if k != "title"}
            if node.get("type") == "object" and "properties" in node:
                node["required"] = list(node["properties"])
                node["additionalProperties"] = False
            return node
        if isinstance(node, list):
            return [tidy(v) for v in node]
        return node

    result: dict[str, Any] = tidy(model.model_json_schema())
    return result


def _parse(text: str, schema: type[T]) -> tuple[T | None, list[str]]:
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(body)
    except ValueError as exc:
        return None, [f"the reply is not valid JSON ({exc})"]
    try:
        return schema.model_validate(data), []
    except ValidationError as exc:
        return None, [
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        ]


async def generate(
    model: ChatModel,
    messages: Sequence[Message],
    schema: type[T],
    *,
    check: Check[T] | None = None,
    max_attempts: int = 3,
    max_tokens: int = 512,
    temperature: float | None = 0.0,
    accept_with_problems: bool = False,
    wire_schema: dict[str, Any] | None = None,
) -> Generation[T]:
    """Ask for `schema`; repair up to `max_attempts` total. With `accept_with_problems`,
    a schema-valid output whose `check` still fails after the last attempt is returned
    with its problems listed instead of raising. `wire_schema` replaces the JSON schema
    sent to the provider (e.g. narrowed to this request's valid ids); the output is
    still validated against `schema`."""
    conversation = list(messages)
    fmt = JsonSchemaFormat(name=schema.__name__, schema=wire_schema or strict_schema(schema))
    responses: list[ChatResponse] = []
    problems: list[str] = []
    last_valid: T | None = None
    last_valid_problems: list[str] = []
    for _ in range(max_attempts):
        response = await model.chat(
            ChatRequest(
                messages=tuple(conversation),
                max_tokens=max_tokens,
                temperature=temperature,
                response_format=fmt,
            )
        )
        responses.append(response)
        value, problems = _parse(response.text, schema)
        if value is not None:
            problems = check(value) if check else []
            last_valid, last_valid_problems = value, problems
            if not problems:
                return Generation(value, responses)
        conversation += [
            Message(role="assistant", content=response.text),
            Message(
                role="user",
                content="Your reply was not accepted:\n- "
                + "\n- ".join(problems)
                + "\nReply again with only the corrected JSON object.",
            ),
        ]
    if accept_with_problems and last_valid is not None:
        return Generation(last_valid, responses, last_valid_problems)
    raise InvalidOutput(
        f"no valid {schema.__name__} after {max_attempts} attempts: {'; '.join(problems)}",
        last_output=responses[-1].text if responses else "",
        errors=problems,
    )
