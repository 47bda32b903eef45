"""Rank fusion of keyword and dense candidate lists. Pure functions over (id, score) lists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeAlias

import numpy as np

Ranked: TypeAlias = Sequence[tuple[str, float]]
FusionMethod: TypeAlias = Literal["rrf", "convex", "zconvex"]


def reciprocal_rank(
    lists: Sequence[Ranked], *, k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Weighted RRF: sum of w / (k + rank) over the lists an id appears in."""
    weights = weights or [1.0] * len(lists)
    fused: dict[str, float] = {}
    for ranked, weight in zip(lists, weights, strict=True):
        for rank, (cid, _) in enumerate(ranked, start=1):
            fused[cid] = fused.get(cid, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def _normalise(ranked: Ranked, how: Literal["minmax", "z"]) -> dict[str, float]:
    if not ranked:
        return {}
    scores = np.fromiter((s for _, s in ranked), dtype=np.float64, count=len(ranked))
    if how == "minmax":
        low, span = scores.min(), scores.max() - scores.min()
        norm = (scores - low) / span if span > 0 else np.ones_like(scores)
    else:
        std = scores.std()
        norm = (scores - scores.mean()) / std if std > 0 else np.zeros_like(scores)
    return {cid: float(v) for (cid, _), v in zip(ranked, norm, strict=True)}


def _floor(normalised: dict[str, float], how: Literal["minmax", "z"]) -> float:
    """What an id the list did not return scores on it: below anything it did return."""
    if how == "minmax" or not normalised:
        return 0.0
    low = min(normalised.values())
    # A constant list (one hit, or all tied) has every z at 0: missing ids go below it.
    return low - 1.0 if low == max(normalised.values()) else low


def convex(
    lists: Sequence[Ranked], *, weights: Sequence[float], how: Literal["minmax", "z"] = "minmax"
) -> list[tuple[str, float]]:
    """Weighted sum of per-query normalised scores; an id missing from a list gets that
    list's floor (0 for min-max, the lowest z for z-scores), so a list that
    returned a single hit does not lift everything it did not return."""
    normalised = [_normalise(ranked, how) for ranked in lists]
    floors = [_floor(n, how) for n in normalised]
    ids = {cid for n in normalised for cid in n}
    fused = {
        cid: sum(
            w * n.get(cid, floor) for n, w, floor in zip(normalised, weights, floors, strict=True)
        )
        for cid in ids
    }
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def fuse(
    keyword: Ranked,
    dense: Ranked,
    *,
    method: FusionMethod = "rrf",
    rrf_k: int = 60,
    dense_weight: float = 0.5,
) -> list[tuple[str, float]]:
    weights = (1.0 - dense_weight, dense_weight)
    if method == "rrf":
        return reciprocal_rank([keyword, dense], k=rrf_k, weights=[2 * w for w in weights])
    return convex([keyword, dense], weights=weights, how="minmax" if method == "convex" else "z")
