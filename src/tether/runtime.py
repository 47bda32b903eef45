"""Building the store and embedder the settings describe (shared by the CLI and apps)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from tether.errors import ConfigError
from tether.models.cached import CachedEmbedder
from tether.models.embedder import Embedder
from tether.settings import Settings
from tether.store.protocol import Scope, Store, open_store


@dataclass
class Runtime:
    settings: Settings
    store: Store
    embedder: Embedder

    def scope(self, tenant: str | None, principals: list[str] | None = None) -> Scope:
        return Scope(
            tenant if tenant is not None else self.settings.default_tenant,
            frozenset(principals or self.settings.principals),
        )


def build_embedder(settings: Settings) -> Embedder:
    inner: Embedder
    if settings.embedder == "minilm":
        from tether.models.minilm import MiniLMEmbedder

        inner = MiniLMEmbedder(
            max_tokens=settings.embed_max_tokens,
            batch_size=settings.embed_batch_size,
            threads=settings.embed_threads,
        )
    elif settings.embedder.startswith("openai-compat:"):
        from tether.models.openai_embeddings import OpenAICompatibleEmbedder

        base_url, _, model = settings.embedder.removeprefix("openai-compat:").partition("#")
        if not model or settings.embeddings_dim is None:
            raise ConfigError(
                "openai-compat embedder needs 'openai-compat:<base url>#<model>' "
                "and TETHER_EMBEDDINGS_DIM"
            )
        key = settings.embeddings_api_key
        inner = OpenAICompatibleEmbedder(
            base_url,
            model,
            dim=settings.embeddings_dim,
            api_key=key.get_secret_value() if key else None,
        )
    else:
        raise ConfigError(f"unknown embedder {settings.embedder!r}; use minilm or openai-compat:")
    if settings.embed_cache.lower() == "off":
        return inner
    return CachedEmbedder(inner, settings.embed_cache)


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    embedder = build_embedder(settings)
    store = await open_store(settings.store, embed_model=embedder.model_id, dim=embedder.dim)
    try:
        yield Runtime(settings=settings, store=store, embedder=embedder)
    finally:
        await store.close()
        if isinstance(embedder, CachedEmbedder):
            embedder.close()
