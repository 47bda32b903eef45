"""`/v1/answer` throughput over the SciFact store with the extractive default.

    uv run python -m benchmarks.serve_answer [--seconds 30] [--concurrency 16]

Serves `benchmarks/out/scifact.db` (built by `benchmarks.scifact`) with one `tether serve`
worker and drives `POST /v1/answer` with the SciFact train questions, closed loop, from
the load generator in this process. Two phases, reported apart:

- cold: a fresh embedding cache, every question new, so each request embeds the sentences
  of its retrieved chunks (the extractive answerer's main cost);
- warm: after every question of the set was answered once (untimed), the same questions
  again: sentence vectors come from the embedding cache and query vectors from memory,
  as in a service that has been answering questions about the same documents a while.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import loadgen
from benchmarks.common import DATA, OUT, ROOT, machine, require
from benchmarks.gateway import Children, free_port, http_call, wait_ready


@dataclass
class AnswerTarget(loadgen.Target):
    questions: tuple[str, ...] = ()
    offset: int = 0

    def request(self, client: int, n: int) -> bytes:
        # Clients walk disjoint stretches of the question list.
        question = self.questions[(self.offset + client * 10_000 + n) % len(self.questions)]
        body = json.dumps({"question": question}).encode()
        head = (
            f"POST {self.path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
            f"content-type: application/json\r\nauthorization: Bearer {self.key}\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--questions", type=int, default=300, help="size of the question set")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    parser.add_argument("--profile", type=float, default=0.0, help="py-spy the warm phase")
    args = parser.parse_args()
    store = require(OUT / "scifact.db")
    questions = tuple(
        json.loads(line)["text"]
        for line in (require(DATA / "scifact" / "queries.train.jsonl")).read_text().splitlines()
    )[: args.questions]
    work = Path(tempfile.mkdtemp(prefix="tether-answer-bench-"))
    # A copy: the service opens the store read-write (WAL), and the benchmark's own copy
    # must stay as `benchmarks.scifact` built it.
    shutil.copy(store, work / "scifact.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env.update(
        TETHER_STORE=f"sqlite:///{work / 'scifact.db'}",
        TETHER_KEYS_DB=str(work / "keys.db"),
        TETHER_ANSWERS_DB=str(work / "answers.db"),
        TETHER_TRACES_DB=str(work / "traces.db"),
        TETHER_USAGE_DB=str(work / "usage.db"),
        TETHER_EMBED_CACHE=str(work / "embeddings.db"),
        TETHER_CONFIG=str(work / "none.toml"),
    )
    env.update(item.split("=", 1) for item in args.env)
    key = subprocess.run(
        ["uv", "run", "tether", "keys", "create", "--tenant", "scifact", "--rps", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    children = Children()
    port = free_port()
    results: dict[str, Any] = {"machine": machine(), "store": "SciFact train corpus, 5,183 docs"}
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
        results["questions"] = len(questions)
        for phase, offset in (("cold", 1), ("fill", 0), ("warm", 0)):
            if phase == "fill":
                with ThreadPoolExecutor(args.workers * 2) as pool:
                    codes = list(
                        pool.map(
                            lambda q: http_call(
                                port, "POST", "/v1/answer", {"question": q}, key, timeout=120
                            )[0],
                            questions,
                        )
                    )
                results["fill_statuses"] = {str(c): codes.count(c) for c in set(codes)}
                continue
            target = AnswerTarget(
                host="127.0.0.1",
                port=port,
                path="/v1/answer",
                key=key,
                model="",
                max_tokens=0,
                questions=questions,
                offset=offset,
            )
            spy = None
            if phase == "warm" and args.profile:
                spy = subprocess.Popen(
                    ["py-spy", "record", "--subprocesses", "--nonblocking", "-d",
                     str(int(args.profile)), "-f", "raw", "-o", str(OUT / "serve_answer.spy"),
                     "-p", str(pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            out = asyncio.run(
                loadgen.run(
                    target,
                    args.concurrency,
                    args.seconds,
                    args.warmup,
                    None,
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
