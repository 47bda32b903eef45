"""What the app holds for its lifetime: the runtime (store, embedder), keys, limiter,
answer log, models and metrics. Built once in the lifespan, shared by every request."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from tether import prompts
from tether.agent.setup import AgentKit, open_agent
from tether.errors import ConfigError
from tether.ledger import Ledger
from tether.models.chat import ChatModel
from tether.models.registry import CacheConfig, Provider, compose, open_provider
from tether.observability.metrics import Metrics
from tether.observability.tracing import TracingConfig, setup_tracing, shutdown_tracing
from tether.pricing import default_table
from tether.rag import AnswerConfig
from tether.runtime import Runtime, answer_config, open_runtime, tracing_config
from tether.server.answer_log import AnswerLog
from tether.server.keys import KeyStore
from tether.server.ratelimit import RateLimiter
from tether.server.uploads_db import UploadBlobs
from tether.settings import Settings, budget_limits, feature_model, model_api_key

#: The model name OpenAI-compatible clients send to get answers from the knowledge base.
RAG_MODEL = "tether-rag"
#: The feature the service's answers are attributed and pinned under (`[features.answer]`).
FEATURE = "answer"


@dataclass
class Service:
    settings: Settings
    runtime: Runtime
    keys: KeyStore
    limiter: RateLimiter
    answers: AnswerLog
    blobs: UploadBlobs
    metrics: Metrics
    ledger: Ledger | None
    answer_config: AnswerConfig
    #: The answer model's provider; None = the extractive answerer.
    answer_provider: Provider | None
    #: Gateway pass-through providers by the model name clients send.
    gateway: dict[str, Provider]
    #: Agent runs, the audit log and tasks (the agent itself is None without a model).
    agents: AgentKit
    #: Upload parser subprocesses allowed at once.
    parsers: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(max(1, os.cpu_count() or 1))
    )
    _stacks: dict[tuple[str, str], ChatModel] = field(default_factory=dict)

    def model_for(self, name: str, tenant: str) -> ChatModel | None:
        """The wrapped model (trace, cache, budget, retry) for one tenant: the cache is
        keyed by tenant, so one stack per (model, tenant), built on first use."""
        provider = self.answer_provider if name == RAG_MODEL else self.gateway.get(name)
        if provider is None:
            return None
        stack = self._stacks.get((name, tenant))
        if stack is None:
            settings = self.settings
            cache = None
            if settings.response_cache_ttl > 0:
                prompt_key = ""
                if name == RAG_MODEL:
                    prompt_key = prompts.get("qa.answer", self.answer_config.prompt_version).key
                cache = CacheConfig(
                    settings.response_cache,
                    settings.response_cache_ttl,
                    scope=tenant,
                    prompt_key=prompt_key,
                )
            stack = compose(
                provider.model,
                ledger=self.ledger,
                limits=budget_limits(settings),
                cache=cache,
                counter=provider.counter,
            )
            self._stacks[(name, tenant)] = stack
        return stack

    @property
    def models(self) -> list[str]:
        return [RAG_MODEL, *self.gateway]


def check_prices(settings: Settings, providers: dict[str, Provider | None]) -> None:
    """Dollar budgets need a price for every model: fail at start-up, not per request."""
    if not any(limit.usd is not None for limit in budget_limits(settings)):
        return
    for name, provider in providers.items():
        if provider is not None and default_table().price(provider.model.name) is None:
            raise ConfigError(
                f"model {name!r} ({provider.model.name}) has no price in the price table, "
                "and a dollar budget is set; use token budgets or a priced model"
            )


@asynccontextmanager
async def open_service(settings: Settings) -> AsyncIterator[Service]:
    if RAG_MODEL in settings.gateway_models:
        raise ConfigError(f"{RAG_MODEL!r} is built in; give the gateway model another name")
    metrics = Metrics()
    config = tracing_config(settings)
    # One tracer provider for the process (spans to the span store / OTLP, and metrics),
    # so the runtime does not install its own.
    setup_tracing(config or TracingConfig(), metrics=metrics)
    try:
        async with AsyncExitStack() as stack:
            runtime = await stack.enter_async_context(open_runtime(settings, tracing=False))
            spec = feature_model(settings, FEATURE)
            answer_provider = None
            if spec.strip() not in ("", "extractive"):
                answer_provider = await stack.enter_async_context(
                    open_provider(spec, api_key=model_api_key(settings, spec))
                )
            gateway = {}
            for name, target in settings.gateway_models.items():
                gateway[name] = await stack.enter_async_context(
                    open_provider(target, api_key=model_api_key(settings, target))
                )
            check_prices(settings, {FEATURE: answer_provider, **gateway})
            needs_ledger = answer_provider is not None or bool(gateway)
            ledger = Ledger(settings.usage_db) if needs_ledger else None
            if ledger is not None:
                stack.callback(ledger.close)
            keys = KeyStore(settings.keys_db)
            stack.callback(keys.close)
            answers = AnswerLog(settings.answers_db)
            stack.callback(answers.close)
            blobs = UploadBlobs(settings.uploads_db)
            stack.callback(blobs.close)
            agents = await stack.enter_async_context(open_agent(settings, runtime, ledger=ledger))
            yield Service(
                settings=settings,
                runtime=runtime,
                keys=keys,
                limiter=RateLimiter(),
                answers=answers,
                blobs=blobs,
                metrics=metrics,
                ledger=ledger,
                answer_config=answer_config(settings, feature=FEATURE),
                answer_provider=answer_provider,
                gateway=gateway,
                agents=agents,
            )
    finally:
        shutdown_tracing()
