"""The bounded agent loop: plan → act → observe → reflect over explicit, persisted state.

- plan: one model call over the rendered state, offering the allowlisted tools;
- act: the planned calls, written ahead into the state before any runs, so a crash and
  resume replays the same call ids (and idempotency keys) instead of planning anew;
- observe: results come back compact, screened for injected instructions and rendered
  as untrusted data; once any is in the context, every write needs approval;
- reflect: the plan text and each call's outcome go to the scratchpad.

Bounds (steps, cost, active wall-clock time, per-tool quotas) each stop the run with
their own reason. A write needing approval pauses the run; `approve`/`reject` resume it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import NoReturn

from tether.agent.state import (
    AgentResult,
    AgentState,
    Bounds,
    Observation,
    PendingCall,
    PlannedCall,
    StopReason,
)
from tether.agent.store import RunStore, guard_lease, idempotency_key
from tether.errors import (
    BudgetExceeded,
    InvalidToolArgs,
    ProviderError,
    RunConflict,
    ToolNotAllowed,
    UnknownTool,
)
from tether.models.budget import calling_as
from tether.models.chat import ChatModel, ChatRequest
from tether.pricing import Price, cost_usd
from tether.prompts.agent_step_v1 import AgentStepV1, StepInputs, StepObservation, system_text
from tether.security.injection import InjectionScreen
from tether.security.output_guard import OutputGuard
from tether.security.redaction import redact
from tether.tools.audit import Approval, AuditEntry, AuditLog, Outcome
from tether.tools.registry import AnyTool, ToolContext, ToolRegistry, compact, safe_args

log = logging.getLogger("tether.agent")

#: Observations kept verbatim in the prompt; older ones live on in the scratchpad.
RECENT_OBSERVATIONS = 6


class _Stop(Exception):
    """Internal: a bound or a pause ended this drive of the loop."""


class Agent:
    def __init__(
        self,
        model: ChatModel,
        registry: ToolRegistry,
        runs: RunStore,
        audit: AuditLog,
        *,
        price: Price | None = None,
        screen: InjectionScreen | None = None,
        secrets: Sequence[str] = (),
        bounds: Bounds | None = None,
        max_tokens: int = 512,
        instructions: str = "",
    ) -> None:
        self.model = model
        self.registry = registry
        self.runs = runs
        self.audit = audit
        self.price = price
        self.screen = screen or InjectionScreen()
        #: The application's own system instructions (protected like the built-in ones).
        self.instructions = instructions
        self.guard = OutputGuard(system_prompt=system_text(instructions), secrets=secrets)
        self.bounds = bounds or Bounds()
        self.max_tokens = max_tokens
        self.prompt = AgentStepV1()
        self._planned: dict[str, list[PlannedCall]] = {}

    # --- public API ------------------------------------------------------------------

    async def start(
        self,
        goal: str,
        *,
        tenant: str,
        principal: str,
        principals: Sequence[str] = (),
        route: str = "agent",
        facts: Sequence[str] = (),
        bounds: Bounds | None = None,
        run_id: str | None = None,
    ) -> AgentResult:
        state = AgentState(
            run_id=run_id or f"run_{uuid.uuid4().hex}",
            tenant=tenant,
            principal=principal,
            principals=list(principals),
            route=route,
            goal=goal,
            facts=list(facts),
            bounds=bounds or self.bounds,
        )
        if facts:
            # Remembered facts may have come from documents or tools: treat them as such.
            self._taint(state, "memory")
        verdict = self.screen.screen(goal)
        if verdict.flagged:
            self._taint(state, "goal")
            state.scratchpad.append(f"the goal was flagged by the screen: {verdict.reasons}")
        owner = _owner()
        self.runs.create(state, owner=owner)
        return await self._drive(state, owner)

    async def resume(self, tenant: str, run_id: str) -> AgentResult:
        """Continue a run that is running (e.g. after a crash) or whose pending call has
        been decided. A run another live worker is driving is a `RunConflict`."""
        owner = _owner()
        guard_lease(self.runs.acquire(tenant, run_id, owner), run_id)
        state = self.runs.load(tenant, run_id)
        if state.status == "stopped" and state.stop_reason != "need_approval":
            self.runs.release(run_id, owner)
            return AgentResult.of(state)
        if state.pending is not None:
            status = self.runs.call_status(run_id, state.pending.call_id)
            if status == "pending":
                self.runs.release(run_id, owner)
                return AgentResult.of(state)
        return await self._drive(state, owner)

    async def decide(
        self,
        tenant: str,
        run_id: str,
        call_id: str,
        *,
        approve: bool,
        principal: str,
    ) -> AgentResult:
        """Approve or reject the pending call `call_id` and resume the run.

        The call is named, never implied: a repeated request (a client retry, a second
        click) then decides the same call again, which is harmless (it runs at most
        once), and can never decide a newer call the run has paused on since."""
        self.runs.decide(tenant, run_id, call_id, approve=approve, principal=principal)
        try:
            return await self.resume(tenant, run_id)
        except RunConflict:
            # Another request is resuming it right now; the decision is recorded.
            return AgentResult.of(self.runs.load(tenant, run_id))

    # --- the loop --------------------------------------------------------------------

    async def _drive(self, state: AgentState, owner: str) -> AgentResult:
        began = time.monotonic()
        remaining = max(state.bounds.timeout_s - state.elapsed_s, 0.0)
        state.lease_owner, state.deadline = owner, began + remaining
        state.status, state.stop_reason = "running", None
        lost = False
        try:
            async with asyncio.timeout(remaining):
                if state.pending is not None:
                    await self._settle(state)
                while True:
                    self.runs.renew(state)
                    if state.planned:
                        await self._act(state)
                    else:
                        await self._plan(state)
                    if state.status != "running":
                        break
        except TimeoutError:
            _halt(state, "timeout", f"active time reached {state.bounds.timeout_s:g} s")
        except _Stop:
            pass
        except RunConflict:
            # Another worker took the run over (this one stalled past its lease): it owns
            # the state now, so nothing is saved from here.
            lost = True
            raise
        except Exception as exc:  # a bug or a broken tool registry: stop, do not strand
            log.exception("agent run %s failed", state.run_id)
            _halt(state, "error", f"{type(exc).__name__}: {redact(str(exc))[:300]}")
        finally:
            state.elapsed_s += time.monotonic() - began
            if not lost:
                self.runs.save(state)
                self.runs.release(state.run_id, owner)
        return AgentResult.of(state)

    async def _plan(self, state: AgentState) -> None:
        bounds = state.bounds
        if state.steps >= bounds.max_steps:
            self._stop(state, "max_steps", f"{state.steps} steps taken")
        if bounds.max_cost_usd and state.cost_usd >= bounds.max_cost_usd:
            self._stop(state, "max_cost", f"spent ${state.cost_usd:.6f}")
        tools = self.registry.offered(route=state.route, tenant=state.tenant)
        inputs = StepInputs(
            goal=state.goal,
            instructions=self.instructions,
            facts=state.facts,
            scratchpad=state.scratchpad[-20:],
            observations=[
                StepObservation(
                    tool=o.tool, call_id=o.call_id, content=o.content, flagged=o.flagged
                )
                for o in state.observations[-RECENT_OBSERVATIONS:]
            ],
            steps_left=bounds.max_steps - state.steps,
        )
        request = ChatRequest(
            messages=self.prompt.render(inputs),
            tools=tuple(t.spec() for t in tools),
            tool_choice="auto" if tools else None,
            max_tokens=self.max_tokens,
        )
        try:
            with calling_as(user=state.principal, feature="agent", tenant=state.tenant):
                response = await self.model.chat(request)
        except (ProviderError, BudgetExceeded) as exc:
            self._stop(state, "model_error", f"{type(exc).__name__}: {redact(str(exc))[:300]}")
        state.steps += 1
        if self.price is not None:
            state.cost_usd += cost_usd(response.usage, self.price)
        if not response.tool_calls:
            verdict = self.guard.check(response.text)
            state.answer = verdict.text
            state.blocked = list(verdict.reasons) if not verdict.allowed else []
            self._stop(state, "done", "")
        if response.text.strip():
            state.scratchpad.append(f"step {state.steps} plan: {redact(response.text)[:300]}")
        state.planned = [
            PlannedCall(call_id=f"{state.steps}.{i}", tool=c.name, arguments=c.arguments)
            for i, c in enumerate(response.tool_calls, 1)
        ]
        self.runs.save(state)  # written ahead: a resume replays these exact calls

    async def _act(self, state: AgentState) -> None:
        call = state.planned[0]
        audit = _AuditDraft(state, call)
        try:
            tool = self.registry.allowed(call.tool, route=state.route, tenant=state.tenant)
        except (UnknownTool, ToolNotAllowed) as exc:
            outcome: Outcome = "unknown_tool" if isinstance(exc, UnknownTool) else "not_allowed"
            self._observe_error(state, call, str(exc))
            self.audit.record(audit.entry(outcome=outcome, detail=str(exc)))
            return self._done_with(state, call)
        audit.kind = tool.kind
        try:
            args = tool.parse(call.arguments)
        except InvalidToolArgs as exc:
            self._observe_error(state, call, str(exc))
            self.audit.record(audit.entry(outcome="invalid_args", detail=str(exc)))
            return self._done_with(state, call)
        audit.args = safe_args(args)
        used = state.tool_counts.get(tool.name, 0)
        quota = state.bounds.tool_quotas.get(tool.name, tool.quota)
        if quota is not None and used >= quota:
            self.audit.record(audit.entry(outcome="quota", detail=f"quota {quota} reached"))
            state.planned = []
            self._stop(state, "tool_quota", f"{tool.name} quota of {quota} calls reached")
        if tool.kind == "write":
            leak = self.guard.check(call.arguments)
            if not leak.allowed:
                detail = f"refused: the arguments would disclose {', '.join(leak.reasons)}"
                self._observe_error(state, call, detail)
                self.audit.record(audit.entry(outcome="error", detail=detail))
                return self._done_with(state, call)
            if tool.requires_approval or state.tainted:
                self.runs.add_call(state, call.call_id, tool.name, call.arguments, "pending")
                state.tool_counts[tool.name] = used + 1
                state.pending = PendingCall(
                    call_id=call.call_id,
                    tool=tool.name,
                    safe_args=audit.args,
                    reason="configured" if tool.requires_approval else "untrusted_context",
                    taint_sources=list(state.taint_sources),
                )
                dropped = [c.call_id for c in state.planned[1:]]
                if dropped:
                    state.scratchpad.append(f"calls {dropped} were not run: awaiting approval")
                state.planned = []
                self.audit.record(
                    audit.entry(outcome="need_approval", approval="pending", detail="")
                )
                self._stop(state, "need_approval", f"{tool.name} awaits approval")
        self.runs.add_call(state, call.call_id, tool.name, call.arguments, "approved")
        state.tool_counts[tool.name] = used + 1
        await self._execute(state, tool, call, audit, approval="not_required", approver=None)
        self._done_with(state, call)

    async def _settle(self, state: AgentState) -> None:
        """Carry out the decision on the pending call: run it if approved, tell the model
        it was refused if rejected."""
        pending = state.pending
        assert pending is not None
        arguments, status, approver = self.runs.decision(state.run_id, pending.call_id)
        call = PlannedCall(call_id=pending.call_id, tool=pending.tool, arguments=arguments)
        audit = _AuditDraft(state, call)
        audit.args = pending.safe_args
        try:
            # Approved while allowed is not enough: it must still be allowed now.
            tool = self.registry.allowed(pending.tool, route=state.route, tenant=state.tenant)
        except (UnknownTool, ToolNotAllowed) as exc:
            self._observe_error(state, call, str(exc))
            self.audit.record(
                audit.entry(outcome="not_allowed", approver=approver, detail=str(exc))
            )
            state.pending = None
            self.runs.save(state)
            return
        audit.kind = tool.kind
        if status == "rejected":
            self._observe_error(state, call, f"a person rejected this call ({approver})")
            self.audit.record(
                audit.entry(outcome="rejected", approval="rejected", approver=approver)
            )
        else:
            await self._execute(state, tool, call, audit, approval="approved", approver=approver)
        state.pending = None
        self.runs.save(state)

    async def _execute(
        self,
        state: AgentState,
        tool: AnyTool,
        call: PlannedCall,
        audit: _AuditDraft,
        *,
        approval: Approval,
        approver: str | None,
    ) -> None:
        claim, stored = self.runs.claim(state.run_id, call.call_id)
        if claim == "done" and stored is not None:
            previous = _stored(stored)
            self._observe(state, tool, call, ok=previous[0], content=previous[1])
            self.audit.record(
                audit.entry(outcome="duplicate", approval=approval, approver=approver)
            )
            return
        if claim != "claimed":
            raise RunConflict(f"call {call.call_id} of run {state.run_id} is {claim}")
        key = idempotency_key(state.run_id, call.call_id)
        context = ToolContext(
            tenant=state.tenant,
            principal=state.principal,
            run_id=state.run_id,
            call_id=call.call_id,
            idempotency_key=key,
            principals=frozenset(state.principals or [state.principal]),
        )
        began = time.perf_counter()
        outcome: Outcome = "ok"
        # The tool's own limit, never past the run's: then its timeout, not the run's,
        # is what interrupts it, and the call is recorded below either way.
        limit = min(tool.timeout_s, max(state.deadline - time.monotonic(), 0.0))
        try:
            async with asyncio.timeout(limit):
                result = await tool.call(tool.parse(call.arguments), context)
            content, size = compact(result)
            ok = True
        except TimeoutError:
            outcome, ok, size = "timeout", False, 0
            content = f"error: {tool.name} took longer than {limit:g} s"
        except asyncio.CancelledError:
            # Cancelled from outside (shutdown, a client gone): record it, then go on.
            content = f"error: {tool.name} was interrupted"
            self.runs.finish(state.run_id, call.call_id, ok=False, result=content)
            self.audit.record(
                audit.entry(outcome="timeout", approval=approval, approver=approver, detail=content)
            )
            raise
        except Exception as exc:  # a tool's failure is an observation, not a crash
            outcome, ok, size = "error", False, 0
            content = f"error: {type(exc).__name__}: {redact(str(exc))[:300]}"
        latency = (time.perf_counter() - began) * 1000
        self.runs.finish(state.run_id, call.call_id, ok=ok, result=content)
        self._observe(state, tool, call, ok=ok, content=content)
        self.audit.record(
            audit.entry(
                outcome=outcome,
                approval=approval,
                approver=approver,
                latency_ms=latency,
                result_bytes=size,
                detail="" if ok else content,
            )
        )

    # --- bookkeeping -----------------------------------------------------------------

    def _observe(
        self, state: AgentState, tool: AnyTool, call: PlannedCall, *, ok: bool, content: str
    ) -> None:
        flagged, reasons = False, []
        # An error message from an untrusted tool (an HTTP error body, say) is untrusted
        # text too.
        if tool.returns_untrusted:
            verdict = self.screen.screen(content)
            flagged, reasons = verdict.flagged, list(verdict.reasons)
            self._taint(state, f"{tool.name}:{call.call_id}")
        state.observations.append(
            Observation(
                step=state.steps,
                call_id=call.call_id,
                tool=tool.name,
                ok=ok,
                content=content,
                untrusted=tool.returns_untrusted,
                flagged=flagged,
                screen_reasons=reasons,
            )
        )
        note = "ok" if ok else "failed"
        flag = " (flagged: possible injected instructions)" if flagged else ""
        state.scratchpad.append(f"{call.call_id} {tool.name} → {note}, {len(content)} chars{flag}")

    def _observe_error(self, state: AgentState, call: PlannedCall, message: str) -> None:
        state.observations.append(
            Observation(
                step=state.steps,
                call_id=call.call_id,
                tool=call.tool[:64],
                ok=False,
                content=f"error: {message}",
                untrusted=False,
            )
        )
        state.scratchpad.append(f"{call.call_id} {call.tool[:64]} → refused")

    def _done_with(self, state: AgentState, call: PlannedCall) -> None:
        state.planned = [c for c in state.planned if c.call_id != call.call_id]
        self.runs.save(state)

    def _taint(self, state: AgentState, source: str) -> None:
        state.tainted = True
        if source not in state.taint_sources:
            state.taint_sources.append(source)

    def _stop(self, state: AgentState, reason: StopReason, detail: str) -> NoReturn:
        _halt(state, reason, detail)
        raise _Stop(reason)


class _AuditDraft:
    """What is known about a call so far, for its audit row."""

    def __init__(self, state: AgentState, call: PlannedCall) -> None:
        self.state, self.call = state, call
        self.kind = "unknown"
        self.args: dict[str, object] = {"raw": redact(call.arguments)[:500]}

    def entry(
        self,
        *,
        outcome: Outcome,
        approval: Approval = "not_required",
        approver: str | None = None,
        latency_ms: float = 0.0,
        result_bytes: int = 0,
        detail: str = "",
    ) -> AuditEntry:
        return AuditEntry(
            tenant=self.state.tenant,
            principal=self.state.principal,
            run_id=self.state.run_id,
            call_id=self.call.call_id,
            tool=self.call.tool,
            kind=self.kind,
            args=self.args,
            approval=approval,
            approver=approver,
            latency_ms=round(latency_ms, 3),
            result_bytes=result_bytes,
            outcome=outcome,
            detail=redact(detail),
        )


def _halt(state: AgentState, reason: StopReason, detail: str) -> None:
    state.status = "paused" if reason == "need_approval" else "stopped"
    state.stop_reason, state.detail = reason, detail
    if reason != "need_approval":
        state.pending = None  # a stopped run waits for nobody


def _owner() -> str:
    return uuid.uuid4().hex


def _stored(raw: str) -> tuple[bool, str]:
    data = json.loads(raw)
    return bool(data["ok"]), str(data["content"])
