"""`pack()`: choose which retrieved chunks go into the prompt, within a token budget."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tether.tokens import TiktokenCounter, TokenCounter
from tether.types import ScoredChunk

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class PackOptions:
    max_tokens: int = 1500
    #: At most this many chunks from one source.
    per_source_cap: int = 3
    #: Each chunk already taken from a source multiplies its siblings' scores by this.
    diversity_decay: float = 0.7
    #: Word-trigram Jaccard at or above which a chunk counts as a near-duplicate.
    duplicate_threshold: float = 0.8
    #: If set, newer chunks get up to `freshness_weight` extra (relative), halving per
    #: `freshness_half_life_days` of age.
    freshness_half_life_days: float | None = None
    freshness_weight: float = 0.2


def _shingles(text: str) -> frozenset[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    if len(words) < 3:
        return frozenset({tuple(words)})
    return frozenset(zip(words, words[1:], words[2:], strict=False))


def _jaccard(a: frozenset[tuple[str, ...]], b: frozenset[tuple[str, ...]]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _fresh_score(item: ScoredChunk, options: PackOptions, now: datetime) -> float:
    half_life = options.freshness_half_life_days
    stamp = item.chunk.updated_at or item.chunk.created_at
    if half_life is None or stamp is None:
        return item.score
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    age_days = max((now - stamp).total_seconds() / 86400.0, 0.0)
    return item.score * (1.0 + options.freshness_weight * math.pow(0.5, age_days / half_life))


def pack(
    chunks: Sequence[ScoredChunk],
    options: PackOptions = PackOptions(),
    *,
    counter: TokenCounter | None = None,
    now: datetime | None = None,
) -> list[ScoredChunk]:
    """Greedy selection by (freshness-boosted, diversity-decayed) score that skips
    near-duplicates, respects the per-source cap and never exceeds `max_tokens`.
    The result keeps selection order: best evidence first."""
    counter = counter or TiktokenCounter()
    now = now or datetime.now(UTC)
    base = {item.chunk.id: _fresh_score(item, options, now) for item in chunks}
    pool = list(chunks)
    taken: list[ScoredChunk] = []
    taken_shingles: list[frozenset[tuple[str, ...]]] = []
    per_source: dict[str, int] = {}
    budget = options.max_tokens
    while pool:
        best = max(
            pool,
            key=lambda it: (
                base[it.chunk.id] * options.diversity_decay ** per_source.get(it.chunk.source_id, 0)
            ),
        )
        pool.remove(best)
        if per_source.get(best.chunk.source_id, 0) >= options.per_source_cap:
            continue
        shingles = _shingles(best.chunk.text)
        if any(_jaccard(shingles, seen) >= options.duplicate_threshold for seen in taken_shingles):
            continue
        cost = counter.count(best.chunk.text)
        if cost > budget:
            continue  # a smaller chunk further down may still fit
        budget -= cost
        taken.append(best)
        taken_shingles.append(shingles)
        per_source[best.chunk.source_id] = per_source.get(best.chunk.source_id, 0) + 1
    return taken
