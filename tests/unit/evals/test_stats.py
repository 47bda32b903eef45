"""Bootstrap intervals and the paired permutation test."""

from __future__ import annotations

import math

import numpy as np

from tether.evals.stats import estimate, paired_difference


def test_estimate_skips_nan_and_brackets_the_mean() -> None:
    values = [0.0, 1.0, math.nan, 1.0, 0.0, 1.0]
    e = estimate(values)
    assert e.n == 5 and e.mean == 0.6
    assert e.ci_low is not None and e.ci_high is not None
    assert 0.0 <= e.ci_low < 0.6 < e.ci_high <= 1.0
    assert estimate([math.nan]).mean is None
    assert estimate([0.5, 0.5]).ci_low == 0.5


def test_interval_narrows_with_more_cases() -> None:
    rng = np.random.default_rng(0)
    small = estimate(list(rng.random(20)))
    large = estimate(list(rng.random(2000)))
    assert (large.ci_high - large.ci_low) < (small.ci_high - small.ci_low) / 5  # type: ignore[operator]


def test_a_consistent_gain_is_significant_and_noise_is_not() -> None:
    rng = np.random.default_rng(1)
    base = {str(i): float(v) for i, v in enumerate(rng.random(200))}
    better = {k: v + 0.05 for k, v in base.items()}
    noisy = {k: v + float(rng.normal(0, 0.05)) for k, v in base.items()}
    gain = paired_difference("m", base, better)
    assert gain.significant and gain.delta is not None and abs(gain.delta - 0.05) < 1e-9
    assert gain.ci_low is not None and gain.ci_low > 0
    assert not paired_difference("m", base, noisy).significant
    same = paired_difference("m", base, dict(base))
    assert same.p_value == 1.0 and not same.significant


def test_only_shared_finite_cases_are_paired() -> None:
    d = paired_difference("m", {"a": 1.0, "b": math.nan, "c": 0.0}, {"a": 0.0, "b": 1.0, "d": 1.0})
    assert d.n == 1 and d.delta == -1.0
