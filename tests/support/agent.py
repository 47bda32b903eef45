"""A real agent (real SQLite run store, audit log and task table) over a scripted model,
for the agent tests and for crash tests that run it in a child process."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from tether.agent.loop import Agent
from tether.agent.state import Bounds
from tether.agent.store import RunStore
from tether.models.chat import ChatRequest, ChatResponse, ToolCall
from tether.models.fake import FakeChatModel
from tether.pricing import Price
from tether.tools.audit import AuditLog
from tether.tools.builtin import create_task, get_task
from tether.tools.registry import AnyTool, ToolContext, ToolRegistry, tool
from tether.tools.tasks import TaskStore
from tether.types import Usage


class Query(BaseModel):
    query: str


class Page(BaseModel):
    text: str


def lookup(pages: dict[str, str] | None = None) -> AnyTool:
    """A read tool returning stored text (the untrusted content in these tests)."""

    @tool(kind="read", name="lookup")
    async def run(args: Query, ctx: ToolContext) -> Page:
        """Look a page up."""
        return Page(text=(pages or {}).get(args.query, f"page about {args.query}"))

    return run


def calls(*items: tuple[str, dict[str, object]]) -> ChatResponse:
    return ChatResponse(
        text="",
        tool_calls=tuple(
            ToolCall(id=f"c{i}", name=name, arguments=json.dumps(args))
            for i, (name, args) in enumerate(items)
        ),
        finish_reason="tool_calls",
        usage=Usage(input_tokens=100, output_tokens=10),
    )


def final(text: str) -> ChatResponse:
    return ChatResponse(text=text, usage=Usage(input_tokens=100, output_tokens=10))


TASK = {"title": "Renew the TLS certificate", "owner": "ops", "priority": "high"}


@dataclass
class Rig:
    agent: Agent
    runs: RunStore
    audit: AuditLog
    tasks: TaskStore
    model: FakeChatModel

    def close(self) -> None:
        self.runs.close()
        self.audit.close()
        self.tasks.close()


def rig(
    root: Path,
    script: Sequence[ChatResponse | str | Exception] = (),
    *,
    responder: Callable[[ChatRequest], ChatResponse | str] | None = None,
    extra_tools: Sequence[AnyTool] = (),
    approval: bool = True,
    bounds: Bounds | None = None,
    price: Price | None = None,
    secrets: Sequence[str] = (),
    stale_after_s: float = 300.0,
    delay: float = 0.0,
) -> Rig:
    db = root / "agent.db"
    runs = RunStore(db, stale_after_s=stale_after_s)
    audit = AuditLog(db)
    tasks = TaskStore(db)
    model = FakeChatModel(script, responder=responder, delay=delay)
    registry = ToolRegistry(
        [lookup(), create_task(tasks, requires_approval=approval), get_task(tasks), *extra_tools]
    )
    agent = Agent(model, registry, runs, audit, bounds=bounds, price=price, secrets=secrets)
    return Rig(agent, runs, audit, tasks, model)


def crash_now() -> None:
    """Die like a killed process: no finally blocks, no flushing."""
    os._exit(17)
