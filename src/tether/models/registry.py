"""Model strings -> ChatModel, composed once with the cross-cutting wrappers.

extractive                               the offline answerer (no ChatModel)
openai:gpt-4.1-mini                      api.openai.com, key from OPENAI_API_KEY
openai-compat:http://host:port/v1#name   any OpenAI-compatible server
local:/path/model.gguf                   xllamacpp serving the file on 127.0.0.1
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from tether.errors import ConfigError
from tether.ledger import Ledger, Limit
from tether.models.anthropic import AnthropicChat
from tether.models.budget import BudgetedChatModel
from tether.models.cache import CachingChatModel
from tether.models.chat import ChatModel
from tether.models.fake import FakeChatModel, grounded_reply
from tether.models.openai_compat import OpenAICompatibleChat
from tether.models.retry import RetryingChatModel, RetryPolicy
from tether.models.traced import Hook, TracedChatModel, log_hook
from tether.tokens import TokenCounter

OPENAI_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class CacheConfig:
    path: str
    ttl_seconds: float
    #: The tenant the cached answers belong to: part of every key.
    scope: str
    prompt_key: str = ""


def compose(
    provider: ChatModel,
    *,
    retry: RetryPolicy = RetryPolicy(),
    ledger: Ledger | None = None,
    limits: Sequence[Limit] = (),
    cache: CacheConfig | None = None,
    hooks: Sequence[Hook] = (log_hook,),
    counter: TokenCounter | None = None,
) -> ChatModel:
    """The wrapper stack, outermost first: trace (sees every logical call, hits included),
    cache (a hit neither reserves budget nor reaches the provider), budget (one
    reservation covers all retries), retry, then the provider."""
    model: ChatModel = RetryingChatModel(provider, retry)
    if ledger is not None:
        model = BudgetedChatModel(model, ledger, limits, counter=counter)
    if cache is not None:
        model = CachingChatModel(
            model,
            cache.path,
            ttl_seconds=cache.ttl_seconds,
            scope=cache.scope,
            prompt_key=cache.prompt_key,
        )
    return TracedChatModel(model, hooks)


@dataclass(frozen=True)
class Provider:
    """A provider before the wrappers: the service composes one stack per tenant over it."""

    model: ChatModel
    counter: TokenCounter | None = None


@asynccontextmanager
async def open_provider(spec: str, *, api_key: str | None = None) -> AsyncIterator[Provider]:
    """The raw provider a (non-extractive) spec names, closed on exit."""
    kind, _, rest = spec.strip().partition(":")
    provider: OpenAICompatibleChat | AnthropicChat | FakeChatModel
    if kind == "openai":
        if not rest:
            raise ConfigError("openai: needs a model name, e.g. openai:gpt-4.1-mini")
        if not api_key:
            raise ConfigError("openai: models need OPENAI_API_KEY (environment or .env)")
        provider = OpenAICompatibleChat(
            OPENAI_BASE_URL, rest, api_key=api_key, name=f"openai:{rest}"
        )
    elif kind == "openai-compat":
        base_url, _, name = rest.partition("#")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError("use openai-compat:http://host:port/v1#model")
        provider = OpenAICompatibleChat(base_url, name or "default", api_key=api_key)
    elif kind == "local":
        from tether.models.llamacpp import ServerTokenCounter, start_local_server

        path = Path(rest).expanduser()
        server = await asyncio.to_thread(start_local_server, path)
        provider = OpenAICompatibleChat(server.base_url, path.stem, name=f"local:{path.name}")
        counter = ServerTokenCounter(server.base_url)
        try:
            yield Provider(provider, counter)
        finally:
            counter.close()
            await provider.aclose()
            await asyncio.to_thread(server.stop)
        return
    elif kind == "fake" or spec.strip() == "fake":
        provider = FakeChatModel(responder=grounded_reply)  # offline, deterministic
    elif kind == "anthropic":
        if not rest:
            raise ConfigError(
                "anthropic: needs a model name, e.g. anthropic:claude-sonnet-4-20250514"
            )
        if not api_key:
            raise ConfigError("anthropic: models need ANTHROPIC_API_KEY (environment or .env)")
        provider = AnthropicChat(rest, api_key=api_key)
    else:
        raise ConfigError(
            f"unknown model {spec!r}; use extractive, openai:<model>, anthropic:<model>, "
            "openai-compat:<url>#<model> or local:<file.gguf>"
        )
    try:
        yield Provider(provider)
    finally:
        if not isinstance(provider, FakeChatModel):
            await provider.aclose()


@asynccontextmanager
async def open_chat_model(
    spec: str,
    *,
    api_key: str | None = None,
    retry: RetryPolicy = RetryPolicy(),
    ledger: Ledger | None = None,
    limits: Sequence[Limit] = (),
    cache: CacheConfig | None = None,
) -> AsyncIterator[ChatModel | None]:
    """The model a spec names (None for the extractive answerer), closed on exit."""
    if spec.strip() in ("", "extractive"):
        yield None
        return
    async with open_provider(spec, api_key=api_key) as provider:
        yield compose(
            provider.model,
            retry=retry,
            ledger=ledger,
            limits=limits,
            cache=cache,
            counter=provider.counter,
        )
