"""Reports: JSON round trip, thresholds, comparison and the HTML page."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from tether.errors import ConfigError, DatasetError
from tether.evals.report import EvalReport, compare, load_thresholds, to_html


def report(values: list[float], extra: float = math.nan) -> EvalReport:
    cases = {str(i): {"precision": v, "recall": extra} for i, v in enumerate(values)}
    return EvalReport.from_cases(
        kind="answers",
        dataset="d",
        cases=cases,
        metric_names=["precision", "recall"],
        ops={"latency_p50_ms": 12.0},
        latencies_ms=[10.0, 12.0, 14.0],
    )


def test_json_round_trip_keeps_means_at_top_level_and_nan_as_null(tmp_path: Path) -> None:
    r = report([1.0, 0.0, 1.0, 1.0])
    r.write(tmp_path / "r.json")
    body = json.loads((tmp_path / "r.json").read_text())
    assert body["precision"] == 0.75 and body["recall"] is None
    assert body["latency_p50_ms"] == 12.0
    assert body["cases"]["0"]["recall"] is None
    back = EvalReport.read(tmp_path / "r.json")
    assert back.metrics["precision"] == r.metrics["precision"]
    assert math.isnan(back.cases["0"]["recall"])


def test_reading_a_foreign_file_is_a_dataset_error(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(DatasetError, match="not an eval report"):
        EvalReport.read(tmp_path / "x.json")


def test_thresholds_min_max_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        "[answers]\nprecision = 0.8\nlatency_p50_ms = { max = 10.0 }\nrecall = 0.1\n"
        '[retrieval]\n"ndcg@10" = 0.7\n'
    )
    bounds = load_thresholds(path, "answers")
    assert bounds == {
        "precision": {"min": 0.8},
        "latency_p50_ms": {"max": 10.0},
        "recall": {"min": 0.1},
    }
    failures = report([1.0, 0.0, 1.0, 1.0]).check(bounds)
    assert failures == [
        "precision = 0.7500 < min 0.8",
        "latency_p50_ms = 12.0000 > max 10.0",
        "recall: no value to check",
    ]
    assert report([1.0, 1.0], extra=0.5).check({"precision": {"min": 0.8}}) == []
    with pytest.raises(ConfigError, match="no \\[redteam\\]"):
        load_thresholds(path, "redteam")
    path.write_text('[answers]\nprecision = "high"\n')
    with pytest.raises(ConfigError, match="must be a number"):
        load_thresholds(path, "answers")


def test_compare_pairs_cases() -> None:
    before = report([0.0] * 30 + [1.0] * 30)
    after = report([1.0] * 60)
    (precision, recall) = compare(before, after)
    assert precision.metric == "precision" and precision.delta == 0.5 and precision.significant
    assert recall.n == 0 and not recall.significant


def test_html_is_self_contained_with_plots() -> None:
    page = to_html(report([1.0, 0.0, 1.0]))
    assert page.startswith("<!doctype html>") and page.count("<svg") == 2
    assert not re.search(r'(src|href)="https?:', page)  # nothing is fetched online
