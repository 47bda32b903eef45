"""`tether audit` (the tool-call audit log) and `tether runs` (start, inspect, approve
and reject agent runs)."""

from __future__ import annotations

import asyncio
import getpass
import json
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tether.agent.setup import AgentKit, open_agent
from tether.agent.state import AgentResult
from tether.agent.store import RunStore
from tether.errors import ConfigError
from tether.runtime import open_runtime
from tether.settings import Settings, load_settings
from tether.tools.audit import AuditLog

runs_app = typer.Typer(help="Agent runs: start, list, show, approve, reject.", no_args_is_help=True)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> float | None:
    """'90m', '24h', '7d' ago, or an ISO date/time; '' for no bound."""
    if not text:
        return None
    found = _DURATION.match(text.strip())
    if found:
        return time.time() - float(found.group(1)) * _UNIT[found.group(2)]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise typer.BadParameter(
            f"--since {text!r}: use 30m, 24h, 7d or YYYY-MM-DD[THH:MM]"
        ) from None


def audit_command(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    tool: Annotated[str | None, typer.Option(help="Only this tool.")] = None,
    outcome: Annotated[
        str | None, typer.Option(help="ok, error, need_approval, rejected, quota, ...")
    ] = None,
    run: Annotated[str | None, typer.Option("--run", help="Only this run id.")] = None,
    principal: Annotated[
        str | None, typer.Option(help="Only calls made for this principal.")
    ] = None,
    since: Annotated[str, typer.Option(help="30m, 24h, 7d or an ISO date.")] = "",
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List tool calls from the append-only audit log, newest first."""
    log = AuditLog(load_settings().agent_db)
    try:
        entries = log.query(
            tenant=tenant,
            tool=tool,
            outcome=outcome,
            run_id=run,
            principal=principal,
            since=parse_since(since),
            limit=limit,
        )
    finally:
        log.close()
    if as_json:
        for e in entries:
            typer.echo(e.model_dump_json())
        return
    table = Table(
        "when", "tenant", "principal", "run", "tool", "args", "approval", "outcome", "ms", "bytes"
    )
    for e in entries:
        table.add_row(
            datetime.fromtimestamp(e.at).strftime("%Y-%m-%d %H:%M:%S"),
            e.tenant,
            e.principal,
            e.run_id[-12:],
            e.tool,
            json.dumps(e.args, ensure_ascii=False)[:60],
            e.approval + (f" by {e.approver}" if e.approver else ""),
            e.outcome,
            f"{e.latency_ms:.1f}",
            str(e.result_bytes),
        )
    Console().print(table if entries else "no tool calls recorded")


def _show(result: AgentResult) -> None:
    out = Console()
    out.print(
        f"run {result.run_id}: {result.status} ({result.stop_reason}) after {result.steps} steps, ${result.cost_usd:.6f}"
    )
    if result.detail:
        out.print(f"  {result.detail}")
    if result.pending is not None:
        p = result.pending
        out.print(f"  waiting for approval: {p.tool} {json.dumps(p.safe_args, ensure_ascii=False)}")
        out.print(
            f"  why: {p.reason}" + (f" ({', '.join(p.taint_sources)})" if p.taint_sources else "")
        )
        out.print(f"  approve: tether runs approve {result.run_id} {p.call_id}")
    if result.answer is not None:
        out.print(result.answer, markup=False, highlight=False)


def _tenant(settings: Settings, tenant: str | None) -> str:
    return tenant or settings.default_tenant


async def _with_agent(
    settings: Settings, fn: Callable[[AgentKit], Awaitable[AgentResult]]
) -> AgentResult:
    async with open_runtime(settings) as runtime, open_agent(settings, runtime) as kit:
        if kit.agent is None:
            raise ConfigError("agents are off: set TETHER_AGENT_MODEL to a model spec")
        return await fn(kit)


@runs_app.command("start")
def start_command(
    goal: Annotated[str, typer.Argument(help="What the agent should do.")],
    tenant: Annotated[
        str | None, typer.Option(help="Tenant (default: the configured one).")
    ] = None,
    principal: Annotated[str, typer.Option(help="Who the run acts for.")] = "",
) -> None:
    """Start an agent run; it stops when done, at a bound, or waiting for approval."""
    settings = load_settings()
    who = principal or f"cli:{getpass.getuser()}"

    async def go(kit: AgentKit) -> AgentResult:
        assert kit.agent is not None
        scope = _tenant(settings, tenant)
        return await kit.agent.start(
            goal,
            tenant=scope,
            principal=who,
            principals=settings.principals,
            facts=await kit.facts_for(scope, who),
        )

    _show(asyncio.run(_with_agent(settings, go)))


def _decide(run_id: str, call_id: str, tenant: str | None, approver: str, approve: bool) -> None:
    settings = load_settings()
    who = approver or f"cli:{getpass.getuser()}"

    async def go(kit: AgentKit) -> AgentResult:
        assert kit.agent is not None
        return await kit.agent.decide(
            _tenant(settings, tenant), run_id, call_id, approve=approve, principal=who
        )

    _show(asyncio.run(_with_agent(settings, go)))


CallId = Annotated[str, typer.Argument(help="The pending call (shown by `runs start/show`).")]


@runs_app.command("approve")
def approve_command(
    run_id: str,
    call_id: CallId,
    tenant: Annotated[str | None, typer.Option()] = None,
    approver: Annotated[str, typer.Option("--as", help="Who approves (default: cli:<user>).")] = "",
) -> None:
    """Approve the write a run waits on, and resume it. Repeating it is harmless: the
    call is named, so it runs once and a newer call is never approved by mistake."""
    _decide(run_id, call_id, tenant, approver, True)


@runs_app.command("reject")
def reject_command(
    run_id: str,
    call_id: CallId,
    tenant: Annotated[str | None, typer.Option()] = None,
    approver: Annotated[str, typer.Option("--as", help="Who rejects (default: cli:<user>).")] = "",
) -> None:
    """Reject the write a run waits on; the run continues without it."""
    _decide(run_id, call_id, tenant, approver, False)


@runs_app.command("resume")
def resume_command(run_id: str, tenant: Annotated[str | None, typer.Option()] = None) -> None:
    """Continue a run a crashed worker left running (its lease must have expired)."""
    settings = load_settings()

    async def go(kit: AgentKit) -> AgentResult:
        assert kit.agent is not None
        return await kit.agent.resume(_tenant(settings, tenant), run_id)

    _show(asyncio.run(_with_agent(settings, go)))


@runs_app.command("show")
def show_command(run_id: str, tenant: Annotated[str | None, typer.Option()] = None) -> None:
    """A run's state: status, stop reason, pending approval, answer and scratchpad."""
    settings = load_settings()
    store = RunStore(settings.agent_db)
    try:
        state = store.load(_tenant(settings, tenant), run_id)
    finally:
        store.close()
    _show(AgentResult.of(state))
    for note in state.scratchpad:
        Console().print(f"  · {note}", markup=False, highlight=False)


@runs_app.command("list")
def list_command(
    tenant: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
) -> None:
    """Recent runs of a tenant, newest first."""
    settings = load_settings()
    store = RunStore(settings.agent_db)
    try:
        states = store.list(_tenant(settings, tenant), limit=limit)
    finally:
        store.close()
    table = Table("run", "status", "stop reason", "steps", "goal")
    for s in states:
        table.add_row(s.run_id, s.status, s.stop_reason or "", str(s.steps), s.goal[:60])
    Console().print(table if states else "no runs")
