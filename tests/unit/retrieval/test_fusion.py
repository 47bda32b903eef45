"""Rank fusion: RRF arithmetic, min-max and z-score convex fusion, ties, missing ids."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.retrieval.fusion import convex, fuse, reciprocal_rank


def _as_dict(fused: list[tuple[str, float]]) -> dict[str, float]:
    return dict(fused)


# -- RRF -------------------------------------------------------------------------------------


def test_rrf_hand_example() -> None:
    keyword = [("a", 9.0), ("b", 5.0), ("c", 1.0)]
    dense = [("c", 0.9), ("a", 0.8), ("d", 0.1)]
    fused = reciprocal_rank([keyword, dense], k=60)
    scores = _as_dict(fused)
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert scores["b"] == pytest.approx(1 / 62)
    assert scores["d"] == pytest.approx(1 / 63)
    assert [cid for cid, _ in fused] == ["a", "c", "b", "d"]


def test_rrf_ignores_raw_scores_only_ranks_matter() -> None:
    one = reciprocal_rank([[("a", 1000.0), ("b", 999.0)], [("b", 0.2), ("a", 0.1)]], k=1)
    two = reciprocal_rank([[("a", 2.0), ("b", -50.0)], [("b", 99.0), ("a", -99.0)]], k=1)
    assert one == two


def test_rrf_weights_scale_each_list() -> None:
    fused = reciprocal_rank([[("a", 1.0)], [("b", 1.0)]], k=10, weights=[3.0, 1.0])
    assert fused == [("a", pytest.approx(3 / 11)), ("b", pytest.approx(1 / 11))]


def test_rrf_weights_must_match_lists() -> None:
    with pytest.raises(ValueError):
        reciprocal_rank([[("a", 1.0)], [("b", 1.0)]], weights=[1.0])


def test_fuse_rrf_with_equal_weights_is_plain_rrf() -> None:
    keyword = [("a", 3.0), ("b", 2.0)]
    dense = [("b", 0.9), ("c", 0.5)]
    assert fuse(keyword, dense, method="rrf", rrf_k=60, dense_weight=0.5) == reciprocal_rank(
        [keyword, dense], k=60
    )


def test_fuse_rrf_dense_weight_one_ignores_keyword_side() -> None:
    keyword = [("a", 3.0), ("b", 2.0)]
    dense = [("b", 0.9), ("c", 0.5)]
    fused = fuse(keyword, dense, method="rrf", rrf_k=60, dense_weight=1.0)
    scores = _as_dict(fused)
    assert scores["a"] == 0.0
    assert scores["b"] == pytest.approx(2 / 61)
    assert [cid for cid, _ in fused][:2] == ["b", "c"]


# -- convex ----------------------------------------------------------------------------------


def test_convex_minmax_hand_example() -> None:
    keyword = [("a", 10.0), ("b", 6.0), ("c", 2.0)]  # -> a 1.0, b 0.5, c 0.0
    dense = [("b", 0.9), ("c", 0.7), ("a", 0.5)]  # -> b 1.0, c 0.5, a 0.0
    fused = convex([keyword, dense], weights=[0.3, 0.7])
    scores = _as_dict(fused)
    assert scores["a"] == pytest.approx(0.3 * 1.0 + 0.7 * 0.0)
    assert scores["b"] == pytest.approx(0.3 * 0.5 + 0.7 * 1.0)
    assert scores["c"] == pytest.approx(0.3 * 0.0 + 0.7 * 0.5)
    assert [cid for cid, _ in fused] == ["b", "c", "a"]


def test_convex_minmax_missing_id_gets_zero_from_that_list() -> None:
    keyword = [("a", 4.0), ("b", 2.0), ("c", 0.0)]
    dense = [("d", 0.8), ("a", 0.4)]
    scores = _as_dict(convex([keyword, dense], weights=[0.5, 0.5]))
    assert scores["d"] == pytest.approx(0.5 * 0.0 + 0.5 * 1.0)  # missing from keyword
    assert scores["b"] == pytest.approx(0.5 * 0.5 + 0.5 * 0.0)  # missing from dense
    assert scores["a"] == pytest.approx(0.5 * 1.0 + 0.5 * 0.0)
    assert set(scores) == {"a", "b", "c", "d"}


def test_convex_minmax_single_hit_list_gives_missing_ids_nothing() -> None:
    """The docstring: an id missing from a list gets that list's floor, 0 for min-max.

    With one keyword hit (a rare term), the keyword list normalises to {a: 1.0}. An id the
    keyword search did not find must not score as if it were that best keyword hit."""
    keyword = [("a", 3.0)]
    dense = [("b", 0.9), ("a", 0.5), ("c", 0.1)]
    scores = _as_dict(convex([keyword, dense], weights=[0.5, 0.5]))
    assert scores["c"] == pytest.approx(0.0)  # worst dense hit, absent from keyword
    assert scores["b"] == pytest.approx(0.5)  # best dense, absent from keyword
    assert scores["a"] == pytest.approx(0.5 + 0.5 * 0.5)
    assert max(scores, key=scores.__getitem__) == "a"


def test_convex_minmax_all_equal_scores_normalise_to_one() -> None:
    fused = convex([[("a", 2.0), ("b", 2.0)]], weights=[1.0])
    assert fused == [("a", 1.0), ("b", 1.0)]


def test_convex_z_hand_example() -> None:
    keyword = [("a", 3.0), ("b", 1.0)]  # mean 2, std 1 -> a +1, b -1
    dense = [("b", 0.6), ("c", 0.4), ("a", 0.2)]  # mean 0.4, std sqrt(0.08/3)
    std = math.sqrt(((0.2) ** 2 + 0 + (0.2) ** 2) / 3)
    fused = convex([keyword, dense], weights=[0.5, 0.5], how="z")
    scores = _as_dict(fused)
    assert scores["a"] == pytest.approx(0.5 * 1.0 + 0.5 * (-0.2 / std))
    assert scores["b"] == pytest.approx(0.5 * -1.0 + 0.5 * (0.2 / std))
    # c is missing from keyword: it gets that list's lowest z (-1).
    assert scores["c"] == pytest.approx(0.5 * -1.0 + 0.5 * 0.0)


def test_convex_z_constant_list_contributes_zero() -> None:
    fused = convex(
        [[("a", 5.0), ("b", 5.0)], [("a", 0.1), ("b", 0.3)]], weights=[0.5, 0.5], how="z"
    )
    scores = _as_dict(fused)
    assert scores["a"] == pytest.approx(0.5 * -1.0)
    assert scores["b"] == pytest.approx(0.5 * 1.0)


def test_convex_empty_lists() -> None:
    assert convex([[], []], weights=[0.5, 0.5]) == []
    assert convex([[("a", 1.0), ("b", 0.0)], []], weights=[0.5, 0.5]) == [("a", 0.5), ("b", 0.0)]


@pytest.mark.parametrize("method", ["convex", "zconvex"])
def test_fuse_convex_dense_weight_zero_orders_by_keyword(method: str) -> None:
    keyword = [("a", 3.0), ("b", 2.0), ("c", 1.0)]
    dense = [("c", 0.9), ("b", 0.5), ("a", 0.1)]
    fused = fuse(keyword, dense, method=method, dense_weight=0.0)  # type: ignore[arg-type]
    assert [cid for cid, _ in fused] == ["a", "b", "c"]
    fused = fuse(keyword, dense, method=method, dense_weight=1.0)  # type: ignore[arg-type]
    assert [cid for cid, _ in fused] == ["c", "b", "a"]


# -- ties and invariants ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["rrf", "convex", "zconvex"])
def test_ties_are_broken_by_id_whatever_the_input_order(method: str) -> None:
    # x and y swap places between the lists, so every method scores them equally.
    keyword = [("y", 2.0), ("x", 1.0)]
    dense = [("x", 2.0), ("y", 1.0)]
    fused = fuse(keyword, dense, method=method)  # type: ignore[arg-type]
    swapped = fuse(dense, keyword, method=method)  # type: ignore[arg-type]
    assert fused[0][1] == pytest.approx(fused[1][1])
    assert [cid for cid, _ in fused] == ["x", "y"]
    assert [cid for cid, _ in swapped] == ["x", "y"]


def test_output_is_sorted_best_first() -> None:
    keyword = [(f"k{i}", float(10 - i)) for i in range(10)]
    dense = [(f"k{9 - i}", 1.0 - i / 10) for i in range(10)]
    for method in ("rrf", "convex", "zconvex"):
        scores = [s for _, s in fuse(keyword, dense, method=method)]  # type: ignore[arg-type]
        assert scores == sorted(scores, reverse=True)


_IDS = st.sampled_from([f"c{i}" for i in range(30)])
_SCORES = st.floats(min_value=-100, max_value=100, allow_nan=False)
_RANKED = st.lists(st.tuples(_IDS, _SCORES), max_size=20, unique_by=lambda t: t[0]).map(
    lambda items: sorted(items, key=lambda t: -t[1])
)


@settings(max_examples=150, deadline=None)
@given(
    keyword=_RANKED,
    dense=_RANKED,
    method=st.sampled_from(["rrf", "convex", "zconvex"]),
    weight=st.floats(min_value=0.0, max_value=1.0),
)
def test_fused_output_is_a_permutation_of_the_union(
    keyword: list[tuple[str, float]],
    dense: list[tuple[str, float]],
    method: str,
    weight: float,
) -> None:
    fused = fuse(keyword, dense, method=method, dense_weight=weight)  # type: ignore[arg-type]
    ids = [cid for cid, _ in fused]
    assert len(ids) == len(set(ids))
    assert set(ids) == {cid for cid, _ in keyword} | {cid for cid, _ in dense}
    assert all(math.isfinite(s) for _, s in fused)
    # Sorted best first, ties by id.
    assert fused == sorted(fused, key=lambda item: (-item[1], item[0]))
