"""`tether ask "question"`"""

from __future__ import annotations

import asyncio
import getpass
import json
from typing import Annotated

import typer
from rich.console import Console

from tether import prompts
from tether.cli import render
from tether.ledger import Ledger
from tether.models.budget import calling_as
from tether.models.registry import CacheConfig, open_chat_model
from tether.rag import AnswerResult, answer
from tether.runtime import answer_config, open_runtime
from tether.settings import (
    Settings,
    budget_limits,
    feature_model,
    load_settings,
    model_api_key,
)
from tether.store.filters import parse_filter


async def run_ask(
    settings: Settings,
    question: str,
    tenant: str | None,
    principals: list[str] | None,
    filters: list[str],
    k: int | None,
    model_flag: str | None = None,
) -> AnswerResult:
    parsed = [parse_filter(f) for f in filters]
    spec = feature_model(settings, "ask", model_flag)
    key = model_api_key(settings, spec)
    config = answer_config(settings, k)
    # The extractive answerer makes no model calls, so it has nothing to meter.
    ledger = None if spec in ("", "extractive") else Ledger(settings.usage_db)
    async with open_runtime(settings) as rt:
        scope = rt.scope(tenant, principals)
        cache = (
            CacheConfig(
                settings.response_cache,
                settings.response_cache_ttl,
                scope=scope.tenant_id,
                prompt_key=prompts.get("qa.answer", config.prompt_version).key,
            )
            if settings.response_cache_ttl > 0
            else None
        )
        async with open_chat_model(
            spec,
            api_key=key,
            ledger=ledger,
            limits=budget_limits(settings),
            cache=cache,
        ) as model:
            with calling_as(user=getpass.getuser(), feature="ask", tenant=scope.tenant_id):
                return await answer(
                    question,
                    store=rt.store,
                    embedder=rt.embedder,
                    scope=scope,
                    filters=parsed,
                    config=config,
                    model=model,
                )


def ask_command(
    question: Annotated[str, typer.Argument(help="The question to answer from the store.")],
    tenant: Annotated[str | None, typer.Option(help="Tenant to search.")] = None,
    principal: Annotated[
        list[str] | None,
        typer.Option("--principal", help="Principal the caller holds (repeatable)."),
    ] = None,
    filter_: Annotated[
        list[str] | None,
        typer.Option(
            "--filter", help="Metadata filter: key=value, key=a|b, key>=value (repeatable)."
        ),
    ] = None,
    k: Annotated[int | None, typer.Option(help="Chunks to retrieve.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
    store: Annotated[str | None, typer.Option(help="Store URL.")] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="extractive (default, offline), openai:<model>, "
            "openai-compat:http://host:port/v1#<model> or local:/path/model.gguf."
        ),
    ] = None,
) -> None:
    """Answer a question from the ingested documents, citing the chunks it used."""
    settings = load_settings(store=store)
    result = asyncio.run(run_ask(settings, question, tenant, principal, filter_ or [], k, model))
    if as_json:
        payload = {
            **result.answer.model_dump(mode="json"),
            "retrieved": [
                {"chunk_id": r.chunk.id, "source_id": r.chunk.source_id, "score": r.score}
                for r in result.retrieved
            ],
            "timings_ms": result.timings_ms,
            "model": result.model,
            "usage": result.usage.model_dump() if result.usage else None,
            "trace_id": result.trace_id,
        }
        typer.echo(json.dumps(payload, indent=2))
    else:
        render.answer(Console(), question, result)
