"""Retrieval metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.evals.metrics import hit_at_k, mrr_at_k, ndcg_at_k, percentile, recall_at_k


def test_ndcg_graded_relevance_hand_computed() -> None:
    ranked = ["d1", "d2", "d3", "d4"]
    relevant = {"d1": 1, "d3": 3, "d5": 2}
    dcg = 1 / math.log2(2) + 0 / math.log2(3) + 3 / math.log2(4) + 0 / math.log2(5)
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert dcg == pytest.approx(2.5)
    assert ndcg_at_k(ranked, relevant, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(ranked, relevant, 10) == pytest.approx(0.5250, abs=1e-4)


def test_ndcg_uses_linear_gains_not_exponential() -> None:
    # With exponential gains (2^g - 1) this would be 7/(7 + 1/log2(3)) instead.
    ranked = ["a", "b"]
    relevant = {"a": 3, "b": 1}
    assert ndcg_at_k(ranked, relevant, 10) == pytest.approx(1.0)
    swapped = ndcg_at_k(["b", "a"], relevant, 10)
    assert swapped == pytest.approx((1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3)))


def test_ndcg_cuts_at_k_for_both_dcg_and_ideal() -> None:
    relevant = {"a": 1, "b": 1, "c": 1}
    assert ndcg_at_k(["x", "a", "b", "c"], relevant, 1) == 0.0
    assert ndcg_at_k(["a", "x"], relevant, 1) == pytest.approx(1.0)
    assert ndcg_at_k(["a", "b"], relevant, 2) == pytest.approx(1.0)


def test_ndcg_without_relevant_documents_is_zero() -> None:
    assert ndcg_at_k(["a", "b"], {}, 10) == 0.0
    assert ndcg_at_k(["a", "b"], {"a": 0}, 10) == 0.0
    assert ndcg_at_k([], {"a": 1}, 10) == 0.0


def test_recall() -> None:
    relevant = {"a": 1, "b": 2, "c": 1, "z": 0}
    assert recall_at_k(["a", "x", "c"], relevant, 100) == pytest.approx(2 / 3)
    assert recall_at_k(["a", "x", "c"], relevant, 1) == pytest.approx(1 / 3)
    assert recall_at_k(["z"], relevant, 100) == 0.0  # grade 0 is not relevant
    assert recall_at_k(["a"], {}, 100) == 0.0
    assert recall_at_k(["a", "a", "b", "c"], relevant, 100) == pytest.approx(1.0)


def test_mrr() -> None:
    relevant = {"c": 1, "d": 2}
    assert mrr_at_k(["a", "b", "c", "d"], relevant, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["d"], relevant, 10) == 1.0
    assert mrr_at_k(["a", "b", "c"], relevant, 2) == 0.0
    assert mrr_at_k(["a", "b"], {"a": 0}, 10) == 0.0


def test_hit() -> None:
    relevant = {"c": 1}
    assert hit_at_k(["a", "b", "c"], relevant, 3) == 1.0
    assert hit_at_k(["a", "b", "c"], relevant, 2) == 0.0
    assert hit_at_k([], relevant, 10) == 0.0
    assert hit_at_k(["c"], {"c": 0}, 10) == 0.0


def test_percentile_interpolates_linearly() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 50) == pytest.approx(25.0)
    assert percentile(values, 99) == pytest.approx(39.7)
    assert percentile([40.0, 10.0, 30.0, 20.0], 25) == pytest.approx(
        17.5
    )  # input need not be sorted
    assert percentile([7.0], 99) == 7.0


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))
    assert math.isnan(percentile([], 99))


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=50),
    q=st.floats(min_value=0, max_value=100),
)
def test_percentile_lies_within_the_data(values: list[float], q: float) -> None:
    p = percentile(values, q)
    assert min(values) - 1e-6 <= p <= max(values) + 1e-6


@settings(max_examples=100, deadline=None)
@given(
    ranked=st.lists(st.sampled_from("abcdefghij"), unique=True, max_size=10),
    grades=st.dictionaries(st.sampled_from("abcdefghij"), st.integers(0, 3), max_size=10),
    k=st.integers(1, 10),
)
def test_metrics_are_in_unit_interval(ranked: list[str], grades: dict[str, int], k: int) -> None:
    for metric in (ndcg_at_k, recall_at_k, mrr_at_k, hit_at_k):
        value = metric(ranked, grades, k)
        assert 0.0 <= value <= 1.0 + 1e-9
    ideal = sorted((d for d, g in grades.items() if g > 0), key=lambda d: -grades[d])
    if ideal:
        assert ndcg_at_k(ideal, grades, k) == pytest.approx(1.0)
