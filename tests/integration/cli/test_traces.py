"""`tether traces`: every answer leaves a trace that can be listed, shown and replayed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import Env, make_env, tether
from tether.indexer import ingest_paths
from tether.models.minilm import MiniLMEmbedder
from tether.rag import answer
from tether.store.protocol import Scope
from tether.store.sqlite import SQLiteStore
from tether.testing.call_fixture import CallFixture, ReplayChatModel

DOCS = Path(__file__).resolve().parents[2] / "fixtures" / "docs"
QUESTION = "Why does the nightly backup job fail on the replica?"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    env = make_env(tmp_path_factory.mktemp("traces"), TETHER_TRACE_CONTENT="true")
    assert tether(env, "ingest", str(DOCS)).code == 0
    return env


@pytest.fixture(scope="module")
def asked(env: Env) -> dict[str, object]:
    run = tether(env, "ask", QUESTION, "--model", "fake", "--json")
    assert run.code == 0, run.err
    payload: dict[str, object] = json.loads(run.out)
    return payload


def test_ask_returns_a_trace_id_that_traces_list_shows(env: Env, asked: dict[str, object]) -> None:
    trace_id = asked["trace_id"]
    assert isinstance(trace_id, str) and len(trace_id) == 32
    run = tether(env, "traces", "list", "--json")
    assert run.code == 0, run.err
    (summary,) = [t for t in json.loads(run.out) if t["trace_id"] == trace_id]
    usage = asked["usage"]
    assert isinstance(usage, dict)
    assert summary["name"] == "tether.answer"
    assert summary["input_tokens"] == usage["input_tokens"] > 0
    assert summary["output_tokens"] == usage["output_tokens"] > 0
    assert summary["tenant"] == "default"


def test_traces_show_is_the_request_tree(env: Env, asked: dict[str, object]) -> None:
    trace_id = str(asked["trace_id"])
    run = tether(env, "traces", "show", trace_id[:10], "--json")
    assert run.code == 0, run.err
    spans = {s["name"]: s for s in json.loads(run.out)}
    assert set(spans) >= {
        "tether.answer",
        "tether.retrieve",
        "tether.embed",
        "tether.pack",
        "tether.prompt.render",
        "chat fake",
        "tether.citations",
    }
    root = spans["tether.answer"]["span_id"]
    for name in ("tether.retrieve", "tether.pack", "tether.prompt.render", "chat fake"):
        assert spans[name]["parent_id"] == root
    retrieved = spans["tether.retrieve"]["attributes"]["tether.retrieved.ids"]
    context = spans["tether.pack"]["attributes"]["tether.context.ids"]
    cited = spans["tether.citations"]["attributes"]["tether.cited.ids"]
    assert set(context) <= set(retrieved) and set(cited) <= set(context)
    assert [r["chunk_id"] for r in asked["retrieved"]] == retrieved  # type: ignore[union-attr]
    call = spans["chat fake"]["attributes"]
    assert call["gen_ai.system"] == "tether.fake" and call["tether.prompt.id"] == "qa.answer@1"
    human = tether(env, "traces", "show", trace_id)
    assert human.code == 0 and "chat fake" in human.out and "tether.retrieve" in human.out


def test_unknown_trace_is_a_clear_error(env: Env) -> None:
    run = tether(env, "traces", "show", "abcdef0123")
    assert run.code == 2 and "TraceNotFound" in run.err


async def test_an_exported_trace_replays_as_a_regression_test(
    env: Env, asked: dict[str, object], tmp_path: Path
) -> None:
    fixture = tmp_path / "call.json"
    run = tether(env, "traces", "export", str(asked["trace_id"]), "--fixture", str(fixture))
    assert run.code == 0, run.err
    (call,) = CallFixture.read(fixture).calls
    assert call.prompt_id == "qa.answer@1" and call.reply
    # Replayed offline against a fresh store with the same documents: the same answer.
    embedder = MiniLMEmbedder()
    store = SQLiteStore(tmp_path / "s.db", embed_model=embedder.model_id, dim=embedder.dim)
    await ingest_paths([DOCS], store=store, embedder=embedder, tenant_id="default")
    model = ReplayChatModel(fixture)
    result = await answer(
        QUESTION, store=store, embedder=embedder, scope=Scope("default"), model=model
    )
    await store.close()
    assert model.used == 1
    assert result.answer.summary == asked["summary"]
    assert [c.chunk_id for c in result.answer.citations] == [
        c["chunk_id"]  # type: ignore[index]
        for c in asked["citations"]  # type: ignore[attr-defined]
    ]


def test_by_default_spans_carry_ids_and_sizes_but_no_text(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    assert tether(env, "ingest", str(DOCS)).code == 0
    run = tether(env, "ask", QUESTION, "--model", "fake", "--json")
    assert run.code == 0, run.err
    trace_id = json.loads(run.out)["trace_id"]
    shown = tether(env, "traces", "show", trace_id, "--json")
    spans = json.loads(shown.out)
    everything = json.dumps(spans)
    assert "nightly backup" not in everything.lower()  # neither question nor document text
    call = next(s for s in spans if s["name"] == "chat fake")["attributes"]
    assert "gen_ai.input.messages" not in call and call["gen_ai.usage.input_tokens"] > 0
    retrieved = next(s for s in spans if s["name"] == "tether.retrieve")["attributes"]
    assert retrieved["tether.retrieved.ids"]
    export = tether(env, "traces", "export", trace_id, "--fixture", str(tmp_path / "f.json"))
    assert export.code == 2 and "TETHER_TRACE_CONTENT=true" in export.err
