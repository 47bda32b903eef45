"""The answer-eval runner on the mini ClapNQ fixture: real SQLite store, hash embedder."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tether.evals.datasets import load_clapnq
from tether.evals.runner import index_passages, run_answers
from tether.models.chat import ChatRequest, ChatResponse
from tether.models.fake import FakeChatModel, HashEmbedder
from tether.rag import AnswerConfig
from tether.store.protocol import Scope
from tether.store.sqlite import SQLiteStore

MINI = Path(__file__).resolve().parents[2] / "fixtures" / "clapnq_mini"


async def test_repeats_concurrency_and_a_judge(tmp_path: Path) -> None:
    embedder = HashEmbedder(dim=64)
    store = SQLiteStore(tmp_path / "s.db", embed_model=embedder.model_id, dim=embedder.dim)
    cases = load_clapnq(MINI)
    scope = Scope("eval")
    assert await index_passages(store, embedder, scope.tenant_id, cases) == 6
    assert await index_passages(store, embedder, scope.tenant_id, cases) == 0  # unchanged
    calls: list[ChatRequest] = []

    def judge(request: ChatRequest) -> ChatResponse:
        calls.append(request)
        return ChatResponse(text=json.dumps({"supported": True, "reason": "ok"}))

    report = await run_answers(
        cases,
        store=store,
        embedder=embedder,
        scope=scope,
        model=None,
        config=AnswerConfig(),
        dataset="mini",
        concurrency=3,
        repeats=2,
        judge=FakeChatModel([], responder=judge, name="fake"),
    )
    await store.close()
    assert report.repeats == 2 and len(report.cases) == 6 and len(report.latencies_ms) == 12
    assert set(report.metrics) >= {"decline_accuracy", "answerable_accuracy", "faithfulness_judge"}
    answered = [v for v in report.cases.values() if not math.isnan(v["faithfulness_judge"])]
    assert answered and all(v["faithfulness_judge"] == 1.0 for v in answered)
    assert calls  # the judge was asked, sentence by sentence
    assert report.config["judge"] == "fake with eval.faithfulness@1"
    for case in cases:  # a metric that does not apply to a case is NaN there
        values = report.cases[case.id]
        assert math.isnan(values["decline_accuracy"]) == case.answerable
