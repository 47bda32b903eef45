"""`tether eval answers | compare | redaction` through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import REPO, Env, make_env, tether

MINI = REPO / "tests" / "fixtures" / "clapnq_mini"
PII = REPO.parent / "shared" / "data" / "pii" / "presidio_synth.jsonl"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    return make_env(tmp_path_factory.mktemp("eval-answers"))


@pytest.fixture(scope="module")
def extractive(env: Env) -> dict[str, object]:
    out = env.root / "extractive.json"
    run = tether(
        env,
        "eval",
        "answers",
        "--dataset",
        str(MINI),
        "--json",
        str(out),
        "--html",
        str(env.root / "report.html"),
    )
    assert run.code == 0, run.err
    body: dict[str, object] = json.loads(out.read_text())
    return body


def test_answers_report_has_the_documented_keys(extractive: dict[str, object], env: Env) -> None:
    for key in (
        "citation_precision",
        "citation_recall",
        "answer_f1",
        "decline_accuracy",
        "answerable_accuracy",
        "faithfulness",
        "schema_validity",
        "latency_p50_ms",
        "cost_usd",
    ):
        assert key in extractive, key
    cases = extractive["cases"]
    assert isinstance(cases, dict) and len(cases) == 6
    # The three answerable mini cases are answered from their own passage.
    assert extractive["answerable_accuracy"] == 1.0
    assert extractive["citation_recall"] == 1.0
    assert extractive["decline_accuracy"] is not None
    assert (env.root / "report.html").read_text().count("<svg") == 2


def test_thresholds_gate_the_exit_code(env: Env, extractive: dict[str, object]) -> None:
    strict = env.root / "strict.toml"
    strict.write_text("[answers]\nanswerable_accuracy = 1.0\nanswer_f1 = 0.999\n")
    run = tether(env, "eval", "answers", "--dataset", str(MINI), "--thresholds", str(strict))
    assert run.code == 1
    assert "threshold failed: answer_f1" in run.out
    assert "answerable_accuracy" not in run.out.split("threshold failed")[-1]
    lenient = env.root / "lenient.toml"
    lenient.write_text("[answers]\nanswerable_accuracy = 1.0\n")
    run = tether(env, "eval", "answers", "--dataset", str(MINI), "--thresholds", str(lenient))
    assert run.code == 0 and "thresholds" in run.out


def test_compare_says_whether_a_change_is_significant(
    env: Env, extractive: dict[str, object]
) -> None:
    before = env.root / "extractive.json"
    # A candidate that declines everything: every answerable case gets worse.
    after = env.root / "declines.json"
    (env.root / "declining").mkdir(exist_ok=True)
    declining = make_env(env.root / "declining", TETHER_DECLINE_THRESHOLD="1.0")
    done = tether(declining, "eval", "answers", "--dataset", str(MINI), "--json", str(after))
    assert done.code == 0, done.err
    assert json.loads(after.read_text())["answerable_accuracy"] == 0.0
    out = env.root / "diff.json"
    cmp = tether(env, "eval", "compare", str(before), str(after), "--json", str(out))
    assert cmp.code == 0, cmp.err
    diffs = {d["metric"]: d for d in json.loads(out.read_text())}
    assert diffs["answerable_accuracy"]["delta"] == -1.0
    assert diffs["answerable_accuracy"]["n"] == 3
    # Three cases cannot make a difference significant at 5%: the test says so honestly.
    assert diffs["answerable_accuracy"]["significant"] is False
    assert diffs["answerable_accuracy"]["p_value"] > 0.05


def test_compare_refuses_a_non_report(env: Env, tmp_path: Path) -> None:
    bogus = tmp_path / "x.json"
    bogus.write_text("[]")
    run = tether(env, "eval", "compare", str(bogus), str(bogus))
    assert run.code == 2 and "DatasetError" in run.err


def test_redaction_report_on_presidio(env: Env, tmp_path: Path) -> None:
    if not PII.is_file():
        pytest.skip(f"{PII} absent (public evaluation data lives in ../shared/data)")
    out = tmp_path / "pii.json"
    run = tether(env, "eval", "redaction", "--dataset", str(PII), "--json", str(out))
    assert run.code == 0, run.err
    body = json.loads(out.read_text())
    for entity in ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS"):
        assert body[entity]["recall"] >= 0.9, (entity, body[entity])
    assert body["PERSON"]["gold"] > 0  # reported, however low
