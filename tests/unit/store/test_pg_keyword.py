"""Ranking: the best positive scores, in slices, ties broken by position."""

from __future__ import annotations

import numpy as np
import pytest

from tether.store.pg_keyword import Ranking


def reference(scores: np.ndarray) -> list[int]:
    positive = [i for i, s in enumerate(scores) if s > 0]
    return sorted(positive, key=lambda i: (-scores[i], i))


@pytest.mark.parametrize("seed", range(20))
def test_slices_match_a_full_sort(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    # Coarse values make ties common; about a third are zero.
    scores = np.round(rng.random(n) * 5, 0) * (rng.random(n) > 0.3)
    ranking = Ranking(scores)
    if seed % 2:
        ranking.prepare(int(rng.integers(1, 50)))
    got: list[int] = []
    for size in (1, 3, 10, 40, 400, 5):
        got += ranking.next(size).tolist()
    assert got == reference(scores)


def test_nothing_positive_gives_nothing() -> None:
    assert Ranking(np.zeros(10)).next(5).tolist() == []
    assert Ranking(np.zeros(0)).next(5).tolist() == []
