"""An agent run's explicit state: everything the loop knows, persisted after every step
so a run can be paused for approval or resumed after a crash."""

from __future__ import annotations

import time
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, Field

#: Why a run stopped. Each bound has its own reason, so a caller can tell "the model
#: finished" from "we stopped it", and which limit did.
StopReason: TypeAlias = Literal[
    "done",
    "max_steps",
    "max_cost",
    "timeout",
    "tool_quota",
    "need_approval",
    "model_error",
    "error",
]
RunStatus: TypeAlias = Literal["running", "paused", "stopped"]


class Bounds(BaseModel):
    max_steps: int = Field(default=8, ge=1, le=100)
    max_cost_usd: float = Field(default=0.10, ge=0.0)
    #: Wall-clock seconds of active work (time paused for approval does not count).
    timeout_s: float = Field(default=120.0, gt=0.0)
    #: Calls per tool per run; overrides the tool's own quota.
    tool_quotas: dict[str, int] = Field(default_factory=dict)


class Observation(BaseModel):
    step: int
    call_id: str
    tool: str
    ok: bool
    #: The compact result (or the error) as the model sees it.
    content: str
    untrusted: bool
    flagged: bool = False
    screen_reasons: list[str] = Field(default_factory=list)


class PlannedCall(BaseModel):
    """A tool call the model asked for, written into the state before it runs."""

    call_id: str
    tool: str
    arguments: str


class PendingCall(BaseModel):
    """A write the run is waiting on a person for."""

    call_id: str
    tool: str
    safe_args: dict[str, Any]
    #: "configured": the tool always needs approval; "untrusted_context": it needs it
    #: because untrusted text is in the context.
    reason: Literal["configured", "untrusted_context"]
    taint_sources: list[str] = Field(default_factory=list)


class AgentState(BaseModel):
    run_id: str
    tenant: str
    principal: str
    principals: list[str] = Field(default_factory=list)
    route: str = "agent"
    goal: str
    bounds: Bounds = Bounds()
    scratchpad: list[str] = Field(default_factory=list)
    facts: list[str] = Field(default_factory=list)
    observations: list[Observation] = Field(default_factory=list)
    steps: int = 0
    cost_usd: float = 0.0
    elapsed_s: float = 0.0
    #: Untrusted text (a tool result, a flagged goal) has entered the context: from then
    #: on every write needs approval, whatever the tool's configuration says.
    tainted: bool = False
    taint_sources: list[str] = Field(default_factory=list)
    tool_counts: dict[str, int] = Field(default_factory=dict)
    status: RunStatus = "running"
    stop_reason: StopReason | None = None
    detail: str = ""
    planned: list[PlannedCall] = Field(default_factory=list)
    pending: PendingCall | None = None
    answer: str | None = None
    #: Reasons the output guard withheld the model's answer, if it did.
    blocked: list[str] = Field(default_factory=list)
    created: float = Field(default_factory=time.time)
    #: The worker driving the run now, and when its active time runs out (monotonic);
    #: not persisted.
    lease_owner: str = Field(default="", exclude=True)
    deadline: float = Field(default=0.0, exclude=True)


class AgentResult(BaseModel):
    run_id: str
    status: RunStatus
    stop_reason: StopReason | None
    answer: str | None
    pending: PendingCall | None
    steps: int
    cost_usd: float
    detail: str = ""

    @classmethod
    def of(cls, state: AgentState) -> AgentResult:
        return cls(
            run_id=state.run_id,
            status=state.status,
            stop_reason=state.stop_reason,
            answer=state.answer,
            pending=state.pending,
            steps=state.steps,
            cost_usd=round(state.cost_usd, 8),
            detail=state.detail,
        )
