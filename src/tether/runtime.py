"""Building the store and embedder the settings describe (shared by the CLI and apps)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from threadpoolctl import threadpool_limits

from tether.errors import ConfigError
from tether.models.cached import CachedEmbedder
from tether.models.embedder import Embedder
from tether.models.extractive import ExtractiveOptions
from tether.observability.tracing import TracingConfig, setup_tracing, shutdown_tracing
from tether.rag import AnswerConfig
from tether.retrieval.pack import PackOptions
from tether.retrieval.retrieve import RetrievalConfig
from tether.settings import Settings, feature_prompt
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


def answer_config(
    settings: Settings, k: int | None = None, *, feature: str = "ask"
) -> AnswerConfig:
    """What `answer()` runs with, from the settings and the feature's prompt pin."""
    return AnswerConfig(
        prompt_version=feature_prompt(settings, feature, "qa.answer"),
        k=k or settings.top_k,
        max_question_chars=settings.max_question_chars,
        retrieval=RetrievalConfig(
            candidates=settings.candidates,
            fusion=settings.fusion,
            rrf_k=settings.rrf_k,
            dense_weight=settings.dense_weight,
        ),
        packing=PackOptions(
            max_tokens=settings.context_tokens, per_source_cap=settings.per_source_cap
        ),
        extractive=ExtractiveOptions(decline_threshold=settings.decline_threshold),
    )


def tracing_config(settings: Settings) -> TracingConfig | None:
    """What the settings ask tracing to export to; None when nowhere."""
    span_db = (
        None if settings.traces_db.strip().lower() in ("", "off") else Path(settings.traces_db)
    )
    if span_db is None and not settings.otlp_endpoint:
        return None
    return TracingConfig(
        span_db=span_db,
        otlp_endpoint=settings.otlp_endpoint,
        capture_content=settings.trace_content,
    )


@asynccontextmanager
async def open_runtime(settings: Settings, *, tracing: bool = True) -> AsyncIterator[Runtime]:
    """Store and embedder from the settings; with `tracing`, spans go where the settings
    say (the embedded span store by default) and are flushed on exit."""
    config = tracing_config(settings) if tracing else None
    if config is not None:
        setup_tracing(config)
    # Our numpy products are small (a query against a tenant's vectors: ~0.1 ms), and
    # OpenBLAS's idle threads spin for work afterwards, taking the cores ONNX Runtime
    # needs for the next query embedding. One BLAS thread: /v1/answer on first-time
    # SciFact questions went from 67.6 to 97.6 requests/s (benchmarks/serve_answer.py).
    threadpool_limits(limits=1, user_api="blas")
    embedder = build_embedder(settings)
    try:
        store = await open_store(settings.store, embed_model=embedder.model_id, dim=embedder.dim)
        try:
            yield Runtime(settings=settings, store=store, embedder=embedder)
        finally:
            await store.close()
    finally:
        if isinstance(embedder, CachedEmbedder):
            embedder.close()
        if config is not None:
            shutdown_tracing()
