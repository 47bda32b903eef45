"""`/v1/answer` throughput over the SciFact store with the extractive default.

    uv run python -m benchmarks.serve_answer [--seconds 30] [--concurrency 16] [--workers 2]

Serves a copy of `benchmarks/out/scifact.db` (built by `benchmarks.scifact`: 5,183
documents) with `tether serve` and drives `POST /v1/answer` with the SciFact train
questions, closed loop, from the load generator in this process. Steps:

1. prepare: the store predates `prepare_answers`, so its chunks' candidate sentences are
   embedded into the server's embedding cache first, as `tether ingest` now does at
   ingest time (timed and reported; not part of the serving measurement);
2. first-time questions: every request a question never asked before (each client walks
   its own stretch of the 809 questions, stopping before any repeats), so every request
   embeds its question;
3. repeated questions: the same questions again for `--seconds`; query vectors now come
   from memory, as for a service that keeps being asked the same things.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import loadgen
from benchmarks.common import DATA, OUT, create_key, machine, require, tether_env
from benchmarks.gateway import Children, free_port, http_call, wait_ready
from tether.models.cached import CachedEmbedder
from tether.models.extractive import prepare_sentences
from tether.models.minilm import MiniLMEmbedder
from tether.store.sqlite import SQLiteStore


@dataclass
class AnswerTarget(loadgen.Target):
    questions: tuple[str, ...] = ()
    clients: int = 1

    def request(self, client: int, n: int) -> bytes:
        # Clients walk disjoint stretches of the question list.
        stretch = len(self.questions) // self.clients
        question = self.questions[(client * stretch + n) % len(self.questions)]
        body = json.dumps({"question": question}).encode()
        head = (
            f"POST {self.path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
            f"content-type: application/json\r\nauthorization: Bearer {self.key}\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


async def prepare(work: Path) -> dict[str, float]:
    """Embed every chunk's candidate sentences into the embedding cache the server uses."""
    embedder = CachedEmbedder(MiniLMEmbedder(), work / "embeddings.db")
    store = SQLiteStore(work / "scifact.db", embed_model=embedder.model_id, dim=embedder.dim)
    started = time.perf_counter()
    sentences = chunks = 0
    async for batch in store.export_documents("scifact", batch=200):
        batch_chunks = [c for _, doc_chunks, _ in batch for c in doc_chunks]
        chunks += len(batch_chunks)
        sentences += await prepare_sentences(batch_chunks, embedder)
    seconds = time.perf_counter() - started
    await store.close()
    embedder.close()
    return {"chunks": chunks, "sentences": sentences, "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    parser.add_argument("--profile", type=float, default=0.0, help="py-spy seconds")
    parser.add_argument("--profile-phase", default="repeated", choices=["first_time", "repeated"])
    args = parser.parse_args()
    store = require(OUT / "scifact.db")
    questions = tuple(
        json.loads(line)["text"]
        for line in (require(DATA / "scifact" / "queries.train.jsonl")).read_text().splitlines()
    )
    work = Path(tempfile.mkdtemp(prefix="tether-answer-bench-"))
    # A copy: the service opens the store read-write (WAL), and the benchmark's own copy
    # must stay as `benchmarks.scifact` built it.
    shutil.copy(store, work / "scifact.db")
    env = tether_env(
        work,
        TETHER_STORE=f"sqlite:///{work / 'scifact.db'}",
        TETHER_EMBED_CACHE=str(work / "embeddings.db"),
    )
    env.update(item.split("=", 1) for item in args.env)
    results: dict[str, Any] = {"machine": machine(), "store": "SciFact train corpus, 5,183 docs"}
    # Preparing takes minutes; a previous run's result is reused (delete it to redo).
    prepared = OUT / "scifact_sentences.db"
    stats = OUT / "scifact_sentences.json"
    if prepared.exists() and stats.exists():
        shutil.copy(prepared, work / "embeddings.db")
        results["prepare"] = {**json.loads(stats.read_text()), "reused": True}
    else:
        results["prepare"] = asyncio.run(prepare(work))
        shutil.copy(work / "embeddings.db", prepared)
        stats.write_text(json.dumps(results["prepare"]))
    print(f"prepare: {results['prepare']}")
    key = create_key(env, "scifact")
    children = Children()
    port = free_port()
    try:
        children.start(
            "tether",
            ["uv", "run", "tether", "serve", "--port", str(port), "--workers", str(args.workers)],
            env=env,
            log=work / "tether.log",
            cpus=None,
        )
        wait_ready(children, "tether", port, "/readyz", timeout=180)
        status, _, body = http_call(port, "POST", "/v1/answer", {"question": questions[0]}, key)
        assert status == 200, body[:500]
        answer = json.loads(body)
        results["sanity"] = {
            "declined": answer["answer"]["declined"],
            "citations": len(answer["citations"]),
        }
        pid = children.procs["tether"].pid
        results["workers"] = args.workers
        results["concurrency"] = args.concurrency
        stretch = len(questions) // args.concurrency
        for phase in ("first_time", "repeated"):
            target = AnswerTarget(
                host="127.0.0.1",
                port=port,
                path="/v1/answer",
                key=key,
                model="",
                max_tokens=0,
                questions=questions[1:],
                clients=args.concurrency,
            )
            first = phase == "first_time"
            spy = None
            if args.profile and phase == args.profile_phase:
                spy = subprocess.Popen(
                    [
                        "py-spy",
                        "record",
                        "--subprocesses",
                        "--nonblocking",
                        "-d",
                        str(int(args.profile)),
                        "-f",
                        "raw",
                        "-o",
                        str(OUT / "serve_answer.spy"),
                        "-p",
                        str(pid),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            out = asyncio.run(
                loadgen.run(
                    target,
                    args.concurrency,
                    # First-time: no warm-up (it would spend questions), and stop before
                    # any client reaches the next one's stretch.
                    600.0 if first else args.seconds,
                    0.0 if first else args.warmup,
                    (stretch - 1) * args.concurrency if first else None,
                    60.0,
                    {"tether": pid},
                )
            )
            results[phase] = out
            if spy is not None:
                spy.wait(60)
            print(
                f"{phase}: {out['rps']} requests/s at {args.concurrency} clients, "
                f"p50 {out['latency_ms']['p50']} ms, p99 {out['latency_ms']['p99']} ms, "
                f"statuses {out['statuses']}"
            )
    finally:
        children.stop_all()
    (OUT / "serve_answer.json").write_text(json.dumps(results, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
