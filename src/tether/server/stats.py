"""`/v1/stats`: the dashboard's numbers over time — requests, latency, errors and cache
hits from the span store, cost from the usage ledger — for the caller's tenant only."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from tether.server.auth import Caller, reader, service_of

router = APIRouter(tags=["dashboard"])


class Bucket(BaseModel):
    start: float
    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    cache_lookups: int
    cache_hits: int
    cost_usd: float


class Stats(BaseModel):
    since: float
    bucket_seconds: int
    buckets: list[Bucket]
    requests: int
    errors: int
    p50_ms: float | None
    cost_usd: float
    cache_hit_rate: float | None


def _read_only(path: str) -> sqlite3.Connection | None:
    file = Path(path).expanduser()
    if path.strip().lower() in ("", "off") or not file.exists():
        return None
    return sqlite3.connect(f"file:{file}?mode=ro", uri=True, timeout=5.0)


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


def compute(traces_db: str, usage_db: str, tenant: str, minutes: int, bucket_seconds: int) -> Stats:
    now = time.time()
    since = now - minutes * 60
    first = since - since % bucket_seconds
    count = int((now - first) // bucket_seconds) + 1
    latencies: list[list[float]] = [[] for _ in range(count)]
    errors = [0] * count
    lookups = [0] * count
    hits = [0] * count
    cost = [0.0] * count
    spans = _read_only(traces_db)
    if spans is not None:
        try:
            rows = spans.execute(
                "SELECT start_ns, end_ns, status, parent_id IS NULL, "
                "json_extract(attributes, '$.\"tether.cache.hit\"') FROM spans "
                "WHERE start_ns >= ? AND json_extract(attributes, '$.\"tether.tenant\"') = ?",
                (int(since * 1e9), tenant),
            ).fetchall()
        except sqlite3.OperationalError:
            rows = []  # no spans table yet
        finally:
            spans.close()
        for start_ns, end_ns, status, is_root, hit in rows:
            i = min(count - 1, max(0, int((start_ns / 1e9 - first) // bucket_seconds)))
            if is_root:
                latencies[i].append((end_ns - start_ns) / 1e6)
                errors[i] += status == "ERROR"
            if hit is not None:
                lookups[i] += 1
                hits[i] += int(hit)
    usage = _read_only(usage_db)
    if usage is not None:
        try:
            for ts, usd in usage.execute(
                "SELECT ts, usd FROM calls WHERE tenant = ? AND ts >= ? AND state = 'settled'",
                (tenant, since),
            ):
                i = min(count - 1, max(0, int((ts - first) // bucket_seconds)))
                cost[i] += usd
        except sqlite3.OperationalError:
            pass
        finally:
            usage.close()
    buckets = [
        Bucket(
            start=first + i * bucket_seconds,
            requests=len(latencies[i]),
            errors=errors[i],
            p50_ms=_percentile(latencies[i], 50),
            p95_ms=_percentile(latencies[i], 95),
            cache_lookups=lookups[i],
            cache_hits=hits[i],
            cost_usd=round(cost[i], 6),
        )
        for i in range(count)
    ]
    every = [v for bucket in latencies for v in bucket]
    total_lookups = sum(lookups)
    return Stats(
        since=since,
        bucket_seconds=bucket_seconds,
        buckets=buckets,
        requests=len(every),
        errors=sum(errors),
        p50_ms=_percentile(every, 50),
        cost_usd=round(sum(cost), 6),
        cache_hit_rate=round(sum(hits) / total_lookups, 4) if total_lookups else None,
    )


@router.get("/v1/stats", response_model=Stats)
async def get_stats(
    request: Request,
    caller: Annotated[Caller, Depends(reader)],
    minutes: Annotated[int, Query(ge=1, le=7 * 24 * 60)] = 60,
    bucket_seconds: Annotated[int, Query(ge=10, le=86400)] = 60,
) -> Stats:
    settings = service_of(request).settings
    if minutes * 60 // bucket_seconds > 2000:
        bucket_seconds = minutes * 60 // 2000 + 1
    return await asyncio.to_thread(
        compute, settings.traces_db, settings.usage_db, caller.tenant, minutes, bucket_seconds
    )
