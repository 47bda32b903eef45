"""The tool registry: schemas from args models, validation before work, allowlists."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field

from tether.errors import ConfigError, InvalidToolArgs, ToolNotAllowed, UnknownTool
from tether.tools.registry import (
    Allowlist,
    ToolContext,
    ToolRegistry,
    compact,
    safe_args,
    tool,
)


class Args(BaseModel):
    query: str = Field(min_length=1, description="what to look for")
    k: int = Field(default=3, ge=1, le=10)


class Out(BaseModel):
    hits: list[str]


@tool(kind="read", quota=2)
async def find(args: Args, ctx: ToolContext) -> Out:
    """Find things."""
    return Out(hits=[args.query] * args.k)


@tool(kind="write", requires_approval=True, name="send")
async def send_mail(args: Args, ctx: ToolContext) -> Out:
    """Send mail."""
    return Out(hits=[])


def test_schema_comes_from_the_args_model() -> None:
    spec = find.spec()
    assert spec.name == "find" and spec.description == "Find things."
    assert spec.parameters["properties"]["k"]["maximum"] == 10
    assert spec.parameters["required"] == ["query"]
    assert (find.kind, find.quota, send_mail.kind, send_mail.requires_approval) == (
        "read",
        2,
        "write",
        True,
    )


def test_arguments_are_validated_before_any_work() -> None:
    assert find.parse('{"query": "x", "k": 2}') == Args(query="x", k=2)
    for bad in ('{"k": 2}', '{"query": "x", "k": 99}', "not json", '{"query": ""}'):
        with pytest.raises(InvalidToolArgs) as caught:
            find.parse(bad)
        assert caught.value.errors


def test_only_async_functions_with_pydantic_models_become_tools() -> None:
    with pytest.raises(ConfigError, match="async"):

        @tool(kind="read")
        def sync(args: Args, ctx: ToolContext) -> Out:  # type: ignore[type-var]
            return Out(hits=[])

    with pytest.raises(ConfigError, match="pydantic"):

        @tool(kind="read")
        async def loose(args: dict, ctx: ToolContext) -> Out:  # type: ignore[type-arg]
            return Out(hits=[])


def test_registry_refuses_unknown_duplicate_and_disallowed_tools() -> None:
    registry = ToolRegistry(
        [find, send_mail],
        allowlist=Allowlist(
            routes={"chat": frozenset({"find", "send"}), "public": frozenset({"find"})},
            tenants={"globex": frozenset({"find"})},
        ),
    )
    with pytest.raises(ConfigError, match="twice"):
        registry.register(find)
    with pytest.raises(UnknownTool):
        registry.get("rm_rf")
    assert registry.allowed("send", route="chat", tenant="acme") is send_mail
    with pytest.raises(ToolNotAllowed):
        registry.allowed("send", route="public", tenant="acme")
    with pytest.raises(ToolNotAllowed):
        registry.allowed("send", route="chat", tenant="globex")
    with pytest.raises(ToolNotAllowed):
        registry.allowed("find", route="unlisted", tenant="acme")
    assert [t.name for t in registry.offered(route="chat", tenant="globex")] == ["find"]
    assert [t.name for t in registry.offered(route="chat", tenant="acme")] == ["find", "send"]


def test_safe_args_redact_and_results_are_compact() -> None:
    shown = safe_args(Args(query="mail jane.doe@example.com the key sk-live-abcdef1234567890XYZ"))
    assert "jane.doe@example.com" not in json.dumps(shown)
    assert "sk-live-abcdef1234567890XYZ" not in json.dumps(shown)
    text, size = compact(Out(hits=["a" * 50] * 200), limit=100)
    assert size > 10_000 and len(text) < 140 and "truncated" in text
    small, n = compact(Out(hits=["a"]))
    assert small == '{"hits":["a"]}' and n == len(small)
