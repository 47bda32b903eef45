"""The numpy BM25 must rank and score exactly as FTS5's own bm25() on the same index."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from tether.lexical import query_terms
from tether.models.fake import HashEmbedder
from tether.store.bm25 import BM25Params, build_postings
from tether.store.protocol import DocumentRecord, Scope
from tether.store.sqlite import SQLiteStore
from tether.types import Chunk

VOCAB = (
    "cell cells mouse mice protein proteins gene genes tumour growth running runs ran "
    "vitamin bone density heart insulin signal pathway receptor binding"
).split()
SCOPE = Scope("bm25")


async def _store(path: Path, docs: int = 120, seed: int = 7) -> SQLiteStore:
    rng = random.Random(seed)
    embedder = HashEmbedder()
    store = SQLiteStore(path / "s.db", embed_model=embedder.model_id, dim=embedder.dim)
    batch = []
    for d in range(docs):
        text = " ".join(rng.choice(VOCAB) for _ in range(rng.randint(3, 60)))
        title = " ".join(rng.choice(VOCAB) for _ in range(rng.randint(0, 4)))
        chunk = Chunk(
            id=f"c{d:015x}",
            source_id=f"s{d}",
            tenant_id="bm25",
            text=text,
            title=title,
            section=rng.choice(["", "intro", "methods cells"]),
        )
        vectors = await embedder.embed([text])
        batch.append(
            (DocumentRecord("bm25", f"s{d}", title, str(d), 1, datetime.now(UTC)), [chunk], vectors)
        )
    await store.replace_documents("bm25", batch)
    return store


def _fts5_reference(path: Path, query: str, limit: int) -> list[tuple[str, float]]:
    db = sqlite3.connect(path / "s.db")
    expression = " OR ".join(f'"{t}"' for t in query_terms(query))
    rows = db.execute(
        "SELECT c.id, -bm25(fts_1, 2.0, 1.0, 1.0) AS s FROM fts_1 JOIN chunks c "
        "ON c.rowid = fts_1.rowid WHERE fts_1 MATCH ? ORDER BY s DESC, c.id LIMIT ?",
        (expression, limit),
    ).fetchall()
    db.close()
    return [(str(i), float(s)) for i, s in rows]


@pytest.mark.parametrize(
    "query",
    [
        "cells in mice",
        "running protein growth",
        "vitamin D and bone density",
        "insulin",
        "gene genes receptor binding pathway",
        "the heart of the signal",
    ],
)
async def test_scores_equal_fts5_bm25(tmp_path: Path, query: str) -> None:
    store = await _store(tmp_path)
    try:
        ours = await store.keyword_search(SCOPE, query, [], 200)
        reference = _fts5_reference(tmp_path, query, 200)
        assert len(ours) == len(reference) > 0
        ours_by_id, ref_by_id = dict(ours), dict(reference)
        assert ours_by_id.keys() == ref_by_id.keys()
        for cid, score in ref_by_id.items():
            assert ours_by_id[cid] == pytest.approx(score, rel=1e-5)
    finally:
        await store.close()


async def test_postings_are_cached_per_generation(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    first = await store.keyword_search(SCOPE, "cells mice", [], 10)
    await store.close()
    db = sqlite3.connect(tmp_path / "s.db")
    (generation,) = db.execute("SELECT generation FROM keyword_cache").fetchone()
    (current,) = db.execute("SELECT generation FROM tenants WHERE tenant_id='bm25'").fetchone()
    db.close()
    assert generation == current
    embedder = HashEmbedder()
    reopened = SQLiteStore(tmp_path / "s.db", embed_model=embedder.model_id, dim=embedder.dim)
    try:
        assert await reopened.keyword_search(SCOPE, "cells mice", [], 10) == first
        # A write bumps the generation: the next search sees the new document.
        chunk = Chunk(
            id="cfffffffffffffff", source_id="new", tenant_id="bm25", text="zebrafish zebrafish"
        )
        await reopened.replace_documents(
            "bm25",
            [
                (
                    DocumentRecord("bm25", "new", "", "h", 1, datetime.now(UTC)),
                    [chunk],
                    await embedder.embed([chunk.text]),
                )
            ],
        )
        assert [cid for cid, _ in await reopened.keyword_search(SCOPE, "zebrafish", [], 10)] == [
            "cfffffffffffffff"
        ]
    finally:
        await reopened.close()


def test_build_postings_tunable_parameters_change_scores() -> None:
    rows = [("cell", 1, 2, 3), ("cell", 2, 2, 1), ("mice", 2, 0, 1)]
    rowids = np.array([1, 2, 3], dtype=np.int64)
    default = build_postings(rows, rowids).scores(["cell", "mice"])
    flat = build_postings(rows, rowids, BM25Params(b=0.0, weights=(1.0, 1.0, 1.0)))
    assert default[2] == 0.0  # row 3 has no query term
    assert not np.allclose(default, flat.scores(["cell", "mice"]))
    assert build_postings([], rowids).scores(["cell"]).tolist() == [0.0, 0.0, 0.0]


def test_skip_floored_drops_terms_in_over_half_the_documents_unless_alone() -> None:
    # "common" is in all four documents (idf at the floor), "rare" in one.
    rows = [("common", d, 2, 1) for d in range(4)] + [("rare", 2, 2, 1)]
    postings = build_postings(sorted(rows), np.arange(4, dtype=np.int64))
    full = postings.scores(["common", "rare"])
    assert (full > 0).all() and full.argmax() == 2
    skipped = postings.scores(["common", "rare"], skip_floored=True)
    assert np.flatnonzero(skipped).tolist() == [2]
    assert skipped[2] == pytest.approx(full[2] - postings.scores(["common"])[2])
    alone = postings.scores(["common"], skip_floored=True)
    assert (alone > 0).all()  # a query of floored terms only still matches
