"""CachedEmbedder: document embeddings come from SQLite the second time, queries never do."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from tether.models.cached import CachedEmbedder
from tether.models.embedder import Embedder, TextKind, Vectors
from tether.models.fake import HashEmbedder


class Recording:
    """Wraps an embedder and records every batch it is asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.batches: list[list[str]] = []

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    async def embed(self, texts: Sequence[str], *, kind: TextKind = "document") -> Vectors:
        self.batches.append(list(texts))
        return await self.inner.embed(texts, kind=kind)


@pytest.fixture
def inner() -> HashEmbedder:
    return HashEmbedder(dim=32)


@pytest.fixture
def cached(inner: HashEmbedder, tmp_path: Path) -> Iterator[CachedEmbedder]:
    embedder = CachedEmbedder(inner, tmp_path / "cache" / "embeddings.db")
    yield embedder
    embedder.close()


TEXTS = ["alpha beta", "gamma delta", "epsilon zeta eta"]


def test_passes_through_identity(cached: CachedEmbedder, inner: HashEmbedder) -> None:
    assert cached.model_id == inner.model_id
    assert cached.dim == inner.dim
    assert isinstance(cached, Embedder)
    assert cached.path.is_file()  # parent folders are created


async def test_second_call_is_served_from_the_cache(
    cached: CachedEmbedder, inner: HashEmbedder
) -> None:
    first = await cached.embed(TEXTS)
    assert inner.calls == 1 and inner.texts_embedded == 3
    assert (cached.hits, cached.misses) == (0, 3)

    second = await cached.embed(TEXTS)
    assert inner.calls == 1 and inner.texts_embedded == 3
    assert (cached.hits, cached.misses) == (3, 3)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, await inner.embed(TEXTS))


async def test_only_new_texts_reach_the_inner_embedder(inner: HashEmbedder, tmp_path: Path) -> None:
    recording = Recording(inner)
    cached = CachedEmbedder(recording, tmp_path / "c.db")
    await cached.embed(["one thing", "two things"])
    vectors = await cached.embed(["two things", "three things", "one thing"])
    assert recording.batches == [["one thing", "two things"], ["three things"]]
    assert (cached.hits, cached.misses) == (2, 3)
    np.testing.assert_array_equal(
        vectors, await inner.embed(["two things", "three things", "one thing"])
    )
    cached.close()


async def test_duplicates_within_one_call_are_embedded_once(
    inner: HashEmbedder, tmp_path: Path
) -> None:
    recording = Recording(inner)
    cached = CachedEmbedder(recording, tmp_path / "c.db")
    texts = ["same words", "other words", "same words", "same words"]
    vectors = await cached.embed(texts)
    assert recording.batches == [["same words", "other words"]]
    assert cached.misses == 2 and cached.hits == 0
    assert vectors.shape == (4, inner.dim)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_array_equal(vectors[0], vectors[3])
    np.testing.assert_array_equal(vectors, await inner.embed(texts))
    cached.close()


async def test_query_kind_bypasses_the_cache(cached: CachedEmbedder, inner: HashEmbedder) -> None:
    await cached.embed(TEXTS, kind="query")
    await cached.embed(TEXTS, kind="query")
    assert inner.calls == 2
    assert (cached.hits, cached.misses) == (0, 0)
    # Nothing was written: a document call afterwards still misses.
    await cached.embed(TEXTS, kind="document")
    assert cached.misses == 3 and inner.calls == 3


async def test_cache_persists_across_instances(inner: HashEmbedder, tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    first = CachedEmbedder(inner, path)
    expected = await first.embed(TEXTS)
    first.close()

    fresh_inner = HashEmbedder(dim=32)
    second = CachedEmbedder(fresh_inner, path)
    got = await second.embed(TEXTS)
    second.close()
    assert fresh_inner.calls == 0
    assert second.hits == 3
    np.testing.assert_array_equal(got, expected)


async def test_cache_is_keyed_by_model(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    small = CachedEmbedder(HashEmbedder(dim=16), path)
    await small.embed(TEXTS)
    small.close()
    other_inner = HashEmbedder(dim=32)
    other = CachedEmbedder(other_inner, path)
    vectors = await other.embed(TEXTS)
    other.close()
    assert other_inner.calls == 1 and other.hits == 0
    assert vectors.shape == (3, 32)


async def test_empty_input(cached: CachedEmbedder, inner: HashEmbedder) -> None:
    vectors = await cached.embed([])
    assert vectors.shape == (0, inner.dim)
    assert inner.calls == 0


async def test_many_texts_cross_the_lookup_batch(
    cached: CachedEmbedder, inner: HashEmbedder
) -> None:
    texts = [f"text number {i} word{i}" for i in range(1200)]  # > the 500-key lookup batch
    first = await cached.embed(texts)
    second = await cached.embed(texts)
    assert inner.calls == 1
    assert cached.hits == 1200
    np.testing.assert_array_equal(first, second)


async def test_a_repeated_single_query_is_answered_from_memory(
    cached: CachedEmbedder, inner: HashEmbedder
) -> None:
    first = await cached.embed(["what is tether?"], kind="query")
    again = await cached.embed(["what is tether?"], kind="query")
    np.testing.assert_array_equal(first, again)
    assert inner.calls == 1
    await cached.embed(["something else"], kind="query")
    assert inner.calls == 2


async def test_query_memory_is_bounded(
    cached: CachedEmbedder, inner: HashEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tether.models.cached.QUERY_MEMORY", 2)
    for text in ("a", "b", "c"):
        await cached.embed([text], kind="query")
    await cached.embed(["a"], kind="query")  # evicted: embedded again
    assert inner.calls == 4
    await cached.embed(["c"], kind="query")  # still remembered
    assert inner.calls == 4
