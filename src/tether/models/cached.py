"""An embedding cache that wraps any Embedder: key = hash(model id, text), kept in SQLite."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tether.models.embedder import Embedder, TextKind, Vectors
from tether.quick_sqlite import use_wal

_BATCH = 500
#: Recent query vectors kept in memory (384 floats each: 4,096 of them take 6 MB).
QUERY_MEMORY = 4096


class CachedEmbedder:
    """Returns cached rows for texts seen before and embeds only the rest.

    Query embeddings bypass the SQLite file (a lookup would cost as much as the model call
    it saves); the most recent ones are remembered in memory instead.
    """

    def __init__(self, inner: Embedder, path: str | Path) -> None:
        self._inner = inner
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        use_wal(self._db)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (key BLOB PRIMARY KEY, vector BLOB NOT NULL)"
        )
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self._queries: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    @property
    def dim(self) -> int:
        return self._inner.dim

    def _key(self, text: str) -> bytes:
        return hashlib.sha256(f"{self.model_id}\x00{text}".encode()).digest()[:20]

    def _lookup(self, keys: list[bytes]) -> dict[bytes, bytes]:
        found: dict[bytes, bytes] = {}
        with self._lock:
            for start in range(0, len(keys), _BATCH):
                part = keys[start : start + _BATCH]
                marks = ",".join("?" * len(part))
                found.update(
                    self._db.execute(
                        f"SELECT key, vector FROM embeddings WHERE key IN ({marks})", part
                    ).fetchall()
                )
        return found

    def _store(self, rows: list[tuple[bytes, bytes]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?)", rows)
            self._db.execute("COMMIT")

    async def embed(self, texts: Sequence[str], *, kind: TextKind = "document") -> Vectors:
        if kind == "query":
            return await self._embed_queries(texts)
        keys = [self._key(t) for t in texts]
        found = await asyncio.to_thread(self._lookup, keys)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        missing: dict[bytes, list[int]] = {}
        for i, key in enumerate(keys):
            if key in found:
                out[i] = np.frombuffer(found[key], dtype=np.float32)
            else:
                missing.setdefault(key, []).append(i)
        self.hits += len(texts) - sum(len(v) for v in missing.values())
        if missing:
            firsts = [rows[0] for rows in missing.values()]
            fresh = await self._inner.embed([texts[i] for i in firsts], kind=kind)
            self.misses += len(firsts)
            for vector, rows in zip(fresh, missing.values(), strict=True):
                out[rows] = vector
            await asyncio.to_thread(
                self._store,
                [(k, v.astype(np.float32).tobytes()) for k, v in zip(missing, fresh, strict=True)],
            )
        return out

    async def _embed_queries(self, texts: Sequence[str]) -> Vectors:
        """Queries skip SQLite (a lookup costs about what embedding one does) but a
        question asked again — the common case for a service — is a dict lookup."""
        if len(texts) != 1:
            return await self._inner.embed(texts, kind="query")
        text = texts[0]
        vector = self._queries.get(text)
        if vector is not None:
            self._queries.move_to_end(text)
            return vector[None, :]
        fresh = await self._inner.embed(texts, kind="query")
        self._queries[text] = fresh[0]
        if len(self._queries) > QUERY_MEMORY:
            self._queries.popitem(last=False)
        return fresh

    def close(self) -> None:
        with self._lock:
            self._db.close()
