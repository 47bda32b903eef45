"""The agent the settings describe: the model stack, the built-in tools over the runtime's
store, the allowlist, and the SQLite file holding runs, tool calls, audit and tasks.
Shared by `tether serve` and `tether runs`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from tether.agent.loop import Agent
from tether.agent.state import Bounds
from tether.agent.store import RunStore
from tether.errors import ConfigError
from tether.ledger import Ledger
from tether.memory import Memory
from tether.models.registry import compose, open_provider
from tether.pricing import default_table
from tether.runtime import Runtime
from tether.settings import Settings, budget_limits, model_api_key
from tether.tools.audit import AuditLog
from tether.tools.builtin import create_task, get_task, search_docs
from tether.tools.registry import Allowlist, ToolRegistry
from tether.tools.tasks import TaskStore

ROUTE = "agent"


@dataclass
class AgentKit:
    agent: Agent | None
    runs: RunStore
    audit: AuditLog
    tasks: TaskStore
    memory: Memory

    async def facts_for(self, tenant: str, user: str, *, limit: int = 20) -> list[str]:
        """A user's current facts with their provenance, as the agent is shown them."""
        found = await self.memory.facts(tenant, user)
        return [
            f"{f.subject}: {f.value} (source: {f.source}, confidence {f.confidence:.2f}, "
            f"recorded {time.strftime('%Y-%m-%d', time.gmtime(f.recorded_at))})"
            for f in found[:limit]
        ]


def bounds_of(settings: Settings) -> Bounds:
    return Bounds(
        max_steps=settings.agent_max_steps,
        max_cost_usd=settings.agent_max_cost_usd,
        timeout_s=settings.agent_timeout_s,
    )


@asynccontextmanager
async def open_agent(
    settings: Settings, runtime: Runtime, *, ledger: Ledger | None = None
) -> AsyncIterator[AgentKit]:
    """Stores always; the agent itself only when `agent_model` names a model (so the
    audit log can be read, and pending calls listed, without one)."""
    async with AsyncExitStack() as stack:
        runs = RunStore(settings.agent_db)
        stack.callback(runs.close)
        audit = AuditLog(settings.agent_db)
        stack.callback(audit.close)
        tasks = TaskStore(settings.agent_db)
        stack.callback(tasks.close)
        memory = Memory(settings.memory_db)
        stack.callback(memory.close)
        agent = None
        spec = settings.agent_model.strip()
        if spec:
            provider = await stack.enter_async_context(
                open_provider(spec, api_key=model_api_key(settings, spec))
            )
            price = default_table().price(provider.model.name)
            if price is None and settings.agent_max_cost_usd > 0 and spec != "fake":
                raise ConfigError(
                    f"agent model {spec!r} has no price, so its cost bound cannot work; "
                    "price it or set TETHER_AGENT_MAX_COST_USD=0"
                )
            if ledger is None:
                ledger = Ledger(settings.usage_db)
                stack.callback(ledger.close)
            model = compose(
                provider.model,
                ledger=ledger,
                limits=budget_limits(settings),
                cache=None,  # a tool-using step must see fresh results, never a replay
                counter=provider.counter,
            )
            registry = ToolRegistry(
                [
                    search_docs(runtime.store, runtime.embedder),
                    create_task(tasks, requires_approval=settings.agent_task_approval),
                    get_task(tasks),
                ],
                allowlist=Allowlist(
                    routes={ROUTE: frozenset(settings.agent_tools)},
                    tenants={t: frozenset(n) for t, n in settings.agent_tenant_tools.items()},
                ),
            )
            named = set(settings.agent_tools).union(*settings.agent_tenant_tools.values())
            unknown = named - set(registry.names())
            if unknown:
                raise ConfigError(f"agent_tools names unknown tools: {sorted(unknown)}")
            agent = Agent(
                model,
                registry,
                runs,
                audit,
                price=price,
                secrets=[s.get_secret_value() for s in settings.agent_secrets],
                bounds=bounds_of(settings),
            )
        yield AgentKit(agent=agent, runs=runs, audit=audit, tasks=tasks, memory=memory)
