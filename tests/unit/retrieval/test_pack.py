"""`pack`: budget, per-source cap, near-duplicates, source diversity and freshness."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tether.retrieval.pack import PackOptions, pack
from tether.types import Chunk, ScoredChunk

NOW = datetime(2024, 6, 1, tzinfo=UTC)
_WORD = re.compile(r"\w+")


class WordCounter:
    """One token per word: predictable budgets without a real tokenizer."""

    def __init__(self) -> None:
        self.calls = 0

    def count(self, text: str) -> int:
        self.calls += 1
        return len(_WORD.findall(text))


def _text(tag: str, words: int) -> str:
    # Distinct vocabulary per chunk so nothing is a near-duplicate by accident.
    return " ".join(f"{tag}w{i}" for i in range(words))


def item(
    cid: str,
    source: str,
    score: float,
    *,
    text: str | None = None,
    words: int = 10,
    updated: datetime | None = None,
) -> ScoredChunk:
    return ScoredChunk(
        chunk=Chunk(
            id=cid,
            source_id=source,
            tenant_id="t",
            text=text if text is not None else _text(cid, words),
            updated_at=updated,
        ),
        score=score,
    )


def ids(items: list[ScoredChunk]) -> list[str]:
    return [it.chunk.id for it in items]


def test_keeps_best_first_when_everything_fits() -> None:
    chunks = [item("b", "s2", 0.5), item("a", "s1", 0.9), item("c", "s3", 0.1)]
    assert ids(pack(chunks, PackOptions(max_tokens=1000), counter=WordCounter(), now=NOW)) == [
        "a",
        "b",
        "c",
    ]


def test_empty_input() -> None:
    assert pack([], PackOptions(), counter=WordCounter(), now=NOW) == []


def test_budget_skips_a_big_chunk_but_takes_a_smaller_one_after_it() -> None:
    chunks = [
        item("a", "s1", 0.9, words=60),
        item("b", "s2", 0.8, words=50),
        item("c", "s3", 0.7, words=30),
    ]
    packed = pack(chunks, PackOptions(max_tokens=95), counter=WordCounter(), now=NOW)
    assert ids(packed) == ["a", "c"]


def test_budget_exactly_met_is_allowed() -> None:
    chunks = [item("a", "s1", 0.9, words=40), item("b", "s2", 0.8, words=60)]
    packed = pack(chunks, PackOptions(max_tokens=100), counter=WordCounter(), now=NOW)
    assert ids(packed) == ["a", "b"]


def test_chunk_larger_than_budget_alone_is_dropped() -> None:
    packed = pack(
        [item("a", "s1", 1.0, words=20)], PackOptions(max_tokens=19), counter=WordCounter()
    )
    assert packed == []


@settings(max_examples=120, deadline=None)
@given(
    specs=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=200),  # words
            st.floats(min_value=0.0, max_value=1.0, allow_nan=False),  # score
            st.integers(min_value=0, max_value=4),  # source
        ),
        max_size=30,
    ),
    budget=st.integers(min_value=0, max_value=600),
    cap=st.integers(min_value=1, max_value=4),
)
def test_budget_and_cap_are_never_exceeded(
    specs: list[tuple[int, float, int]], budget: int, cap: int
) -> None:
    counter = WordCounter()
    chunks = [
        item(f"c{i}", f"s{src}", score, words=words) for i, (words, score, src) in enumerate(specs)
    ]
    packed = pack(
        chunks, PackOptions(max_tokens=budget, per_source_cap=cap), counter=counter, now=NOW
    )
    assert sum(counter.count(p.chunk.text) for p in packed) <= budget
    assert len(ids(packed)) == len(set(ids(packed)))
    assert set(ids(packed)) <= set(ids(chunks))
    per_source: dict[str, int] = {}
    for p in packed:
        per_source[p.chunk.source_id] = per_source.get(p.chunk.source_id, 0) + 1
    assert all(n <= cap for n in per_source.values())
    # Returned items are the inputs themselves, scores untouched.
    by_id = {c.chunk.id: c for c in chunks}
    assert all(by_id[p.chunk.id] == p for p in packed)


@settings(max_examples=60, deadline=None)
@given(
    words=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=15),
    budget=st.integers(min_value=0, max_value=300),
)
def test_packing_is_greedy_nothing_that_fits_is_left_out(words: list[int], budget: int) -> None:
    # One source per chunk and distinct texts: only the budget can exclude a chunk.
    chunks = [item(f"c{i}", f"s{i}", 1.0 - i / 100, words=w) for i, w in enumerate(words)]
    counter = WordCounter()
    packed = pack(
        chunks, PackOptions(max_tokens=budget, per_source_cap=1), counter=counter, now=NOW
    )
    used = sum(counter.count(p.chunk.text) for p in packed)
    left = [c for c in chunks if c.chunk.id not in set(ids(packed))]
    assert all(counter.count(c.chunk.text) > budget - used for c in left)


def test_per_source_cap() -> None:
    chunks = [item(f"a{i}", "s1", 1.0 - i / 100) for i in range(5)] + [item("b0", "s2", 0.1)]
    packed = pack(
        chunks, PackOptions(max_tokens=10_000, per_source_cap=2), counter=WordCounter(), now=NOW
    )
    assert [p.chunk.source_id for p in packed].count("s1") == 2
    assert "b0" in ids(packed)
    assert set(ids(packed)) == {"a0", "a1", "b0"}


def test_near_duplicates_are_removed() -> None:
    base = " ".join(f"word{i}" for i in range(40))
    near = base + " extra"  # 39 of 40 trigrams shared: Jaccard ~0.95
    chunks = [
        item("a", "s1", 0.9, text=base),
        item("dup", "s2", 0.8, text=near),
        item("exact", "s3", 0.7, text=base),
        item("other", "s4", 0.6, words=40),
    ]
    packed = pack(chunks, PackOptions(max_tokens=10_000), counter=WordCounter(), now=NOW)
    assert ids(packed) == ["a", "other"]


def test_duplicate_check_ignores_case_and_punctuation() -> None:
    text = " ".join(f"term{i}" for i in range(30))
    shouty = text.upper().replace(" ", ", ")
    packed = pack(
        [item("a", "s1", 0.9, text=text), item("b", "s2", 0.8, text=shouty)],
        PackOptions(max_tokens=10_000),
        counter=WordCounter(),
        now=NOW,
    )
    assert ids(packed) == ["a"]


def test_partly_overlapping_chunks_are_both_kept() -> None:
    words = [f"word{i}" for i in range(60)]
    first, second = " ".join(words[:40]), " ".join(words[20:])  # Jaccard ~0.33
    packed = pack(
        [item("a", "s1", 0.9, text=first), item("b", "s1", 0.8, text=second)],
        PackOptions(max_tokens=10_000),
        counter=WordCounter(),
        now=NOW,
    )
    assert ids(packed) == ["a", "b"]


def test_duplicate_threshold_is_configurable() -> None:
    words = [f"word{i}" for i in range(60)]
    first, second = " ".join(words[:40]), " ".join(words[20:])  # Jaccard ~0.33
    packed = pack(
        [item("a", "s1", 0.9, text=first), item("b", "s2", 0.8, text=second)],
        PackOptions(max_tokens=10_000, duplicate_threshold=0.3),
        counter=WordCounter(),
        now=NOW,
    )
    assert ids(packed) == ["a"]


def test_second_source_gets_in_before_third_chunk_of_first_source() -> None:
    chunks = [
        item("a1", "A", 1.00),
        item("a2", "A", 0.95),
        item("a3", "A", 0.94),
        item("b1", "B", 0.60),
    ]
    packed = pack(
        chunks, PackOptions(max_tokens=10_000, per_source_cap=5), counter=WordCounter(), now=NOW
    )
    assert ids(packed) == ["a1", "a2", "b1", "a3"]


def test_without_diversity_decay_order_is_by_score() -> None:
    chunks = [
        item("a1", "A", 1.00),
        item("a2", "A", 0.95),
        item("a3", "A", 0.94),
        item("b1", "B", 0.60),
    ]
    packed = pack(
        chunks,
        PackOptions(max_tokens=10_000, per_source_cap=5, diversity_decay=1.0),
        counter=WordCounter(),
        now=NOW,
    )
    assert ids(packed) == ["a1", "a2", "a3", "b1"]


def test_diversity_lets_a_second_source_in_under_a_tight_budget() -> None:
    chunks = [item("a1", "A", 1.0), item("a2", "A", 0.99), item("b1", "B", 0.8)]
    packed = pack(chunks, PackOptions(max_tokens=20), counter=WordCounter(), now=NOW)
    assert ids(packed) == ["a1", "b1"]


def test_freshness_boost_reorders_only_when_half_life_is_set() -> None:
    old = item("old", "s1", 1.00, updated=NOW - timedelta(days=365))
    new = item("new", "s2", 0.95, updated=NOW - timedelta(days=1))
    plain = pack([old, new], PackOptions(max_tokens=10_000), counter=WordCounter(), now=NOW)
    assert ids(plain) == ["old", "new"]
    fresh = pack(
        [old, new],
        PackOptions(max_tokens=10_000, freshness_half_life_days=30),
        counter=WordCounter(),
        now=NOW,
    )
    assert ids(fresh) == ["new", "old"]


def test_freshness_boost_is_bounded_by_its_weight() -> None:
    # A brand-new chunk gets at most +20%: not enough to beat a 30% better old one.
    old = item("old", "s1", 1.00, updated=NOW - timedelta(days=3650))
    new = item("new", "s2", 0.70, updated=NOW)
    packed = pack(
        [old, new],
        PackOptions(max_tokens=10_000, freshness_half_life_days=30),
        counter=WordCounter(),
        now=NOW,
    )
    assert ids(packed) == ["old", "new"]


def test_freshness_uses_created_at_and_naive_stamps_as_utc() -> None:
    naive_new = ScoredChunk(
        chunk=Chunk(
            id="new",
            source_id="s2",
            tenant_id="t",
            text=_text("new", 10),
            created_at=(NOW - timedelta(hours=1)).replace(tzinfo=None),
        ),
        score=0.95,
    )
    undated = item("undated", "s1", 1.0)
    packed = pack(
        [undated, naive_new],
        PackOptions(max_tokens=10_000, freshness_half_life_days=7),
        counter=WordCounter(),
        now=NOW,
    )
    assert ids(packed) == ["new", "undated"]


def test_default_counter_is_tiktoken() -> None:
    # "hello world" is 2 tokens in o200k_base: a budget of 2 fits it, 1 does not.
    chunk = item("a", "s1", 1.0, text="hello world")
    assert ids(pack([chunk], PackOptions(max_tokens=2), now=NOW)) == ["a"]
    assert pack([chunk], PackOptions(max_tokens=1), now=NOW) == []
