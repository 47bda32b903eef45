"""OpenAICompatibleChat against a real server nobody here wrote: llama.cpp (xllamacpp)
serving SmolLM2-135M-Instruct. `make test` fetches the GGUF; plain pytest skips without it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.errors import ContextLengthExceeded
from tether.models.chat import (
    ChatRequest,
    DoneEvent,
    JsonSchemaFormat,
    TokenEvent,
    UsageEvent,
)
from tether.models.llamacpp import LocalServer, start_local_server
from tether.models.openai_compat import OpenAICompatibleChat
from tether.types import Message

ROOT = Path(__file__).resolve().parents[3]
GGUF = Path(
    os.environ.get("TETHER_TEST_GGUF", ROOT / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf")
)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    if not GGUF.is_file():
        pytest.skip(f"{GGUF} missing: run `make models` (make test does) to fetch SmolLM2")
    pytest.importorskip("xllamacpp", reason="xllamacpp not installed (dev dependency)")
    with start_local_server(GGUF, n_ctx=4096, threads=2) as running:
        yield running


def ask(text: str, **kwargs: object) -> ChatRequest:
    return ChatRequest(
        messages=(Message(role="user", content=text),),
        temperature=0.0,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_chat_returns_text_and_usage(server: LocalServer) -> None:
    model = OpenAICompatibleChat(server.base_url, "smollm2")
    reply = await model.chat(
        ask("What is the capital of France? Answer in one word.", max_tokens=8)
    )
    assert reply.text.strip()
    assert reply.usage.input_tokens > 5 and 0 < reply.usage.output_tokens <= 8
    assert reply.finish_reason in ("stop", "length")
    await model.aclose()


async def test_streaming_yields_tokens_usage_and_done(server: LocalServer) -> None:
    model = OpenAICompatibleChat(server.base_url, "smollm2")
    events = [e async for e in model.stream(ask("Count from one to five.", max_tokens=16))]
    tokens = [e.text for e in events if isinstance(e, TokenEvent)]
    assert len(tokens) >= 2 and "".join(tokens).strip()
    usage = [e.usage for e in events if isinstance(e, UsageEvent)]
    assert usage and usage[-1].output_tokens == pytest.approx(len(tokens), abs=2)
    assert isinstance(events[-1], DoneEvent)
    await model.aclose()


async def test_json_schema_output_validates(server: LocalServer) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "confidence": {"type": "number"}},
        "required": ["city", "confidence"],
        "additionalProperties": False,
    }
    model = OpenAICompatibleChat(server.base_url, "smollm2")
    reply = await model.chat(
        ask(
            "Which city is the capital of France? Reply as JSON.",
            max_tokens=48,
            response_format=JsonSchemaFormat(name="capital", schema=schema),
        )
    )
    data = json.loads(reply.text)
    assert set(data) == {"city", "confidence"}
    assert isinstance(data["city"], str) and isinstance(data["confidence"], int | float)
    await model.aclose()


async def test_closing_a_stream_early_leaves_the_server_serving(server: LocalServer) -> None:
    model = OpenAICompatibleChat(server.base_url, "smollm2")
    events = model.stream(ask("Write a long story about a lighthouse.", max_tokens=200))
    first = await anext(events)
    assert isinstance(first, TokenEvent)
    await events.aclose()  # type: ignore[attr-defined]
    reply = await model.chat(ask("Say yes.", max_tokens=4))
    assert reply.usage.output_tokens > 0
    await model.aclose()


async def test_a_prompt_over_the_context_window_is_a_typed_error(server: LocalServer) -> None:
    model = OpenAICompatibleChat(server.base_url, "smollm2")
    with pytest.raises(ContextLengthExceeded):
        await model.chat(ask("word " * 6000, max_tokens=8))
    await model.aclose()


def test_cli_ask_answers_through_the_server_with_checked_citations(
    server: LocalServer, tmp_path: Path
) -> None:
    import subprocess
    import sys

    env = {
        **os.environ,
        "TETHER_STORE": f"sqlite:///{tmp_path / 't.db'}",
        "TETHER_EMBED_CACHE": str(tmp_path / "cache.db"),
        "TETHER_CONFIG": str(tmp_path / "none.toml"),
        "TETHER_USAGE_DB": str(tmp_path / "usage.db"),
        "TETHER_RESPONSE_CACHE": str(tmp_path / "responses.db"),
        "TETHER_RESPONSE_CACHE_TTL": "3600",
        "COLUMNS": "200",
    }
    run = [sys.executable, "-c", "from tether.cli import main; main()"]
    ingest = subprocess.run(
        [*run, "ingest", str(ROOT / "docs")], env=env, capture_output=True, text=True, timeout=120
    )
    assert ingest.returncode == 0, ingest.stderr
    spec = f"openai-compat:{server.base_url}#smollm2"
    asked = subprocess.run(
        [
            *run,
            "ask",
            "--json",
            "--k",
            "3",
            "--model",
            spec,
            "How does tether keep one tenant's documents away from another tenant?",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert asked.returncode == 0, asked.stderr
    data = json.loads(asked.stdout)
    assert data["model"] == "openai-compat:smollm2"
    assert data["usage"]["input_tokens"] > 100 and data["usage"]["output_tokens"] > 0
    retrieved = {r["chunk_id"] for r in data["retrieved"]}
    cited = {c["chunk_id"] for c in data["citations"]}
    assert cited <= retrieved
    assert data["declined"] or cited
    # The call was metered: `tether usage` reports it with the tokens the server counted.
    usage = subprocess.run(
        [*run, "usage", "--by", "model"], env=env, capture_output=True, text=True, timeout=60
    )
    assert usage.returncode == 0, usage.stderr
    row = next(line for line in usage.stdout.splitlines() if "openai-compat:smollm2" in line)
    assert str(data["usage"]["input_tokens"]) in row
    # The same question again is a response-cache hit: same answer, no new metered call.
    again = subprocess.run(asked.args, env=env, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["summary"] == data["summary"]
    usage_after = subprocess.run(
        [*run, "usage", "--by", "model"], env=env, capture_output=True, text=True, timeout=60
    )
    assert usage_after.stdout == usage.stdout
    cleared = subprocess.run(
        [*run, "cache", "clear"], env=env, capture_output=True, text=True, timeout=60
    )
    assert cleared.returncode == 0 and "removed 0 " not in cleared.stdout


def test_local_tokenizer_counts_in_the_models_own_tokens(server: LocalServer) -> None:
    from tether.models.llamacpp import ServerTokenCounter
    from tether.tokens import TiktokenCounter

    counter = ServerTokenCounter(server.base_url)
    text = "Tokenizers disagree: SmolLM2 is not o200k_base."
    own = counter.count(text)
    counter.close()
    assert own > 0 and own != TiktokenCounter().count(text)


async def test_local_spec_starts_its_own_server_and_answers(tmp_path: Path) -> None:
    if not GGUF.is_file():
        pytest.skip(f"{GGUF} missing: run `make models`")
    from tether.ledger import Ledger, Limit
    from tether.models.registry import open_chat_model

    ledger = Ledger(tmp_path / "usage.db")
    async with open_chat_model(
        f"local:{GGUF}", ledger=ledger, limits=[Limit("user_day", usd=0.0)]
    ) as model:
        assert model is not None and model.name == f"local:{GGUF.name}"
        reply = await model.chat(ask("Say hello.", max_tokens=4))
        assert reply.usage.output_tokens > 0
    (row,) = ledger.summary(by=("model",))
    assert row.key == (f"local:{GGUF.name}",) and row.usd == 0.0  # local calls are free
