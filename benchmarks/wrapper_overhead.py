"""What the model wrapper stack costs per call, over a model that answers instantly.

    uv run python -m benchmarks.wrapper_overhead [--calls 2000]

Bare model vs the full stack (trace hooks + response cache + budget with its SQLite
ledger + retry) in the same run. The cache is measured on its miss path (every request
distinct: lookup, call, store; budget reserve and settle) and on its hit path.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import write
from tether.ledger import Ledger, Limit
from tether.models.chat import ChatModel, ChatRequest, ChatResponse
from tether.models.registry import CacheConfig, compose
from tether.models.traced import CallRecord
from tether.types import Message, Usage

REPLY = ChatResponse(text="ok", usage=Usage(input_tokens=12, output_tokens=3), request_id="r")


class Instant:
    name = "openai:gpt-4.1-mini"

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return REPLY

    async def stream(self, request: ChatRequest):  # type: ignore[no-untyped-def]
        raise NotImplementedError
        yield  # pragma: no cover


def requests(n: int, distinct: bool) -> list[ChatRequest]:
    return [
        ChatRequest(
            messages=(Message(role="user", content=f"question number {i if distinct else 0}"),),
            max_tokens=64,
        )
        for i in range(n)
    ]


async def per_call_ms(model: ChatModel, batch: list[ChatRequest]) -> list[float]:
    out = []
    for request in batch:
        start = time.perf_counter()
        await model.chat(request)
        out.append((time.perf_counter() - start) * 1000)
    return out


async def main(calls: int) -> None:
    spans: list[CallRecord] = []
    with tempfile.TemporaryDirectory() as tmp:
        stack = compose(
            Instant(),
            ledger=Ledger(Path(tmp) / "usage.db"),
            limits=[
                Limit("request", tokens=10_000),
                Limit("user_day", usd=1_000.0),
                Limit("feature_day", usd=1_000.0),
                Limit("tenant_month", usd=10_000.0),
            ],
            cache=CacheConfig(str(Path(tmp) / "responses.db"), 3600, scope="bench"),
            hooks=[spans.append],
        )
        bare = Instant()
        await per_call_ms(stack, requests(100, True))  # warm-up: imports, tiktoken, SQLite
        bare_ms = await per_call_ms(bare, requests(calls, True))
        miss_ms = await per_call_ms(stack, requests(calls, True)[::-1])
        hit_ms = await per_call_ms(stack, requests(calls, False))
    result = {
        "calls": calls,
        "bare_p50_ms": round(statistics.median(bare_ms), 4),
        "stack_miss_p50_ms": round(statistics.median(miss_ms), 4),
        "stack_hit_p50_ms": round(statistics.median(hit_ms), 4),
        "overhead_miss_p50_ms": round(statistics.median(miss_ms) - statistics.median(bare_ms), 4),
        "overhead_hit_p50_ms": round(statistics.median(hit_ms) - statistics.median(bare_ms), 4),
        "stack_miss_p99_ms": round(sorted(miss_ms)[int(0.99 * len(miss_ms))], 4),
        "spans_recorded": len(spans),
    }
    print(result)
    write("wrapper_overhead", result)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    asyncio.run(main(parser.parse_args().calls))
