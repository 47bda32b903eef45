"""Agent runs over HTTP: start one, read it, approve or reject the write it waits on,
and read the audit log.

Approving is safe to retry: a duplicated or concurrent approval of the same call gets the
run's state back and never repeats the side effect (see `agent.store`). Only writers may
approve, and only within their own tenant; the approver is recorded in the audit log.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from tether.agent.loop import Agent
from tether.agent.state import AgentResult, Bounds, Observation
from tether.errors import TetherError
from tether.server.auth import Caller, admin, reader, service_of, writer
from tether.server.errors import ApiError, from_tether
from tether.server.service import Service
from tether.tools.audit import AuditEntry

router = APIRouter(tags=["agents"])


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    goal: str = Field(min_length=1, max_length=4000)
    #: Tighter bounds than the server's; a request can lower them, never raise them.
    max_steps: int | None = Field(default=None, ge=1, le=100)
    timeout_s: float | None = Field(default=None, gt=0, le=3600)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The call being decided (the run's `pending.call_id`). Required: a repeated or late
    #: request then decides the same call again (harmless), never a newer one.
    call_id: str = Field(min_length=1, max_length=64)


class RunView(AgentResult):
    goal: str
    tainted: bool
    taint_sources: list[str]
    observations: list[Observation]
    scratchpad: list[str]


class AuditPage(BaseModel):
    entries: list[AuditEntry]


def _principal(caller: Caller) -> str:
    return f"key:{caller.key.id}" + (f" ({caller.key.name})" if caller.key.name else "")


def _agent(service: Service) -> Agent:
    if service.agents.agent is None:
        # Not a 5xx: nothing is failing, the feature is not enabled on this server.
        raise ApiError(
            404, "agent_unavailable", "agents are off: set TETHER_AGENT_MODEL to a model spec"
        )
    return service.agents.agent


def _view(service: Service, tenant: str, run_id: str) -> RunView:
    state = service.agents.runs.load(tenant, run_id)
    return RunView(
        **AgentResult.of(state).model_dump(),
        goal=state.goal,
        tainted=state.tainted,
        taint_sources=state.taint_sources,
        observations=state.observations,
        scratchpad=state.scratchpad,
    )


@router.post("/v1/runs", response_model=RunView)
async def start_run(
    body: RunRequest, request: Request, caller: Annotated[Caller, Depends(writer)]
) -> RunView:
    service = service_of(request)
    agent = _agent(service)
    limits = agent.bounds
    bounds = Bounds(
        max_steps=min(body.max_steps or limits.max_steps, limits.max_steps),
        max_cost_usd=limits.max_cost_usd,
        timeout_s=min(body.timeout_s or limits.timeout_s, limits.timeout_s),
        tool_quotas=limits.tool_quotas,
    )
    principal = _principal(caller)
    try:
        result = await agent.start(
            body.goal,
            tenant=caller.tenant,
            principal=principal,
            principals=sorted(caller.scope.principals),
            bounds=bounds,
            facts=await service.agents.facts_for(caller.tenant, principal),
        )
        return _view(service, caller.tenant, result.run_id)
    except TetherError as exc:
        raise from_tether(exc) from exc


@router.get("/v1/runs/{run_id}", response_model=RunView)
async def get_run(
    run_id: str, request: Request, caller: Annotated[Caller, Depends(reader)]
) -> RunView:
    try:
        return _view(service_of(request), caller.tenant, run_id)
    except TetherError as exc:
        raise from_tether(exc) from exc


async def _decide(
    request: Request, caller: Caller, run_id: str, approve: bool, body: Decision
) -> RunView:
    service = service_of(request)
    agent = _agent(service)
    try:
        await agent.decide(
            caller.tenant, run_id, body.call_id, approve=approve, principal=_principal(caller)
        )
        return _view(service, caller.tenant, run_id)
    except TetherError as exc:
        raise from_tether(exc) from exc


@router.post("/v1/runs/{run_id}/approve", response_model=RunView)
async def approve_run(
    run_id: str,
    request: Request,
    caller: Annotated[Caller, Depends(writer)],
    body: Decision,
) -> RunView:
    return await _decide(request, caller, run_id, True, body)


@router.post("/v1/runs/{run_id}/reject", response_model=RunView)
async def reject_run(
    run_id: str,
    request: Request,
    caller: Annotated[Caller, Depends(writer)],
    body: Decision,
) -> RunView:
    return await _decide(request, caller, run_id, False, body)


@router.post("/v1/runs/{run_id}/resume", response_model=RunView)
async def resume_run(
    run_id: str, request: Request, caller: Annotated[Caller, Depends(writer)]
) -> RunView:
    """Continue a run a crashed or restarted worker left running (a no-op for a run that
    is finished or waiting for approval)."""
    service = service_of(request)
    agent = _agent(service)
    try:
        await agent.resume(caller.tenant, run_id)
        return _view(service, caller.tenant, run_id)
    except TetherError as exc:
        raise from_tether(exc) from exc


@router.get("/v1/audit", response_model=AuditPage)
async def audit_log(
    request: Request,
    caller: Annotated[Caller, Depends(admin)],
    tool: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Annotated[str | None, Query(max_length=32)] = None,
    run_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """The tenant's audit rows, newest first (admin keys only)."""
    entries = service_of(request).agents.audit.query(
        tenant=caller.tenant, tool=tool, outcome=outcome, run_id=run_id, limit=limit
    )
    return AuditPage(entries=entries)
