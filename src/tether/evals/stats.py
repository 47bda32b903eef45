"""Means with 95% confidence intervals, and whether two runs differ: NaN-safe, seeded.

Intervals are percentile bootstraps over cases (the sampling error of the dataset, which is
what decides whether a change is real); with repeated runs each case contributes its mean
over the repeats. Two reports are compared pairwise, case by case, with a sign-flip
permutation test on the per-case differences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

RESAMPLES = 5000
ALPHA = 0.05


class Estimate(BaseModel):
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    #: Cases with a value (NaN means "does not apply", e.g. precision with no citation).
    n: int


class Difference(BaseModel):
    metric: str
    a: float | None
    b: float | None
    n: int
    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    significant: bool = False


def _finite(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    return arr[np.isfinite(arr)]


def estimate(values: Sequence[float], *, seed: int = 0) -> Estimate:
    data = _finite(values)
    if data.size == 0:
        return Estimate(mean=None, ci_low=None, ci_high=None, n=0)
    mean = float(data.mean())
    if data.size == 1 or float(data.std()) == 0.0:
        return Estimate(mean=mean, ci_low=mean, ci_high=mean, n=int(data.size))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, (RESAMPLES, data.size))].mean(axis=1)
    low, high = np.quantile(means, [ALPHA / 2, 1 - ALPHA / 2])
    return Estimate(mean=mean, ci_low=float(low), ci_high=float(high), n=int(data.size))


def paired_difference(
    metric: str, a: dict[str, float], b: dict[str, float], *, seed: int = 0
) -> Difference:
    """b - a over the cases both have a finite value for."""
    keys = sorted(k for k in a.keys() & b.keys() if math.isfinite(a[k]) and math.isfinite(b[k]))
    mean_a = estimate(list(a.values())).mean
    mean_b = estimate(list(b.values())).mean
    if not keys:
        return Difference(metric=metric, a=mean_a, b=mean_b, n=0)
    diffs = np.asarray([b[k] - a[k] for k in keys], dtype=np.float64)
    delta = float(diffs.mean())
    rng = np.random.default_rng(seed)
    if not diffs.any():
        p_value = 1.0
        low = high = 0.0
    else:
        signs = rng.choice((-1.0, 1.0), size=(RESAMPLES, diffs.size))
        null = np.abs((signs * diffs).mean(axis=1))
        p_value = float((np.sum(null >= abs(delta) - 1e-12) + 1) / (RESAMPLES + 1))
        boots = diffs[rng.integers(0, diffs.size, (RESAMPLES, diffs.size))].mean(axis=1)
        low, high = (float(x) for x in np.quantile(boots, [ALPHA / 2, 1 - ALPHA / 2]))
    return Difference(
        metric=metric,
        a=mean_a,
        b=mean_b,
        delta=delta,
        ci_low=low,
        ci_high=high,
        p_value=p_value,
        n=len(keys),
        significant=p_value < ALPHA,
    )
