"""A bounded soak: the gateway under steady load while its provider fails 5% of calls.

    uv run python -m benchmarks.soak [--seconds 300] [--concurrency 20] [--fault-rate 0.05]

`benchmarks.zero_upstream` answers 5% of chat calls with 500, 429 (Retry-After: 0) or
503; `tether serve` (one worker, budgets, response cache and tracing on) passes
`POST /v1/chat/completions` through to it; `benchmarks.loadgen` drives it closed-loop for
the whole window. Every 5 s the server's resident memory, open file descriptors and TCP
connections are sampled from /proc. Reported: statuses (a 502 is an upstream failure
that survived the retries — expected at 5%^3; a 500 would be tether's own fault), and
the memory, descriptor and connection series with the first-minute vs last-minute change.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import OUT, create_key, gateway_env, machine
from benchmarks.gateway import Children, free_port, wait_ready


def tree(pid: int) -> list[int]:
    """The process and its descendants, parents first (children of any thread count)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = [pid]
    for parent in found:
        found.extend(p for p, pp in parents.items() if pp == parent)
    return found


def sample(pid: int) -> dict[str, float]:
    """Memory (MB), descriptors and sockets of the serving python process (the deepest
    one in the `uv run` tree)."""
    server = tree(pid)[-1]
    rss = 0.0
    for line in Path(f"/proc/{server}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fds = os.listdir(f"/proc/{server}/fd")
    sockets = 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/{server}/fd/{fd}").startswith("socket:"):
                sockets += 1
        except OSError:
            continue
    return {"t": time.monotonic(), "rss_mb": round(rss, 1), "fds": len(fds), "sockets": sockets}


def change(series: list[dict[str, float]], key: str, start: float, minute: float = 60.0) -> float:
    first = [s[key] for s in series if s["t"] - start <= minute]
    last = [s[key] for s in series if series[-1]["t"] - s["t"] <= minute]
    return round(statistics.median(last) - statistics.median(first), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tether-soak-"))
    children = Children()
    upstream_port, port = free_port(), free_port()
    env = gateway_env(work, upstream_port)
    key = create_key(env, "soak")
    result: dict[str, Any] = {"machine": machine(), **vars(args)}
    try:
        children.start(
            "upstream",
            [
                "uv",
                "run",
                "python",
                "-m",
                "benchmarks.zero_upstream",
                "--port",
                str(upstream_port),
                "--fault-rate",
                str(args.fault_rate),
                "--seed",
                "1",
            ],
            env=env,
            log=work / "upstream.log",
            cpus=None,
        )
        wait_ready(children, "upstream", upstream_port, "/v1/models")
        children.start(
            "tether",
            ["uv", "run", "tether", "serve", "--port", str(port)],
            env=env,
            log=work / "tether.log",
            cpus=None,
        )
        wait_ready(children, "tether", port, "/readyz", timeout=180)
        pid = children.procs["tether"].pid
        load = children.start(
            "loadgen",
            [
                "uv",
                "run",
                "python",
                "-m",
                "benchmarks.loadgen",
                "--url",
                f"http://127.0.0.1:{port}/v1/chat/completions",
                "--key",
                key,
                "--concurrency",
                str(args.concurrency),
                "--seconds",
                str(args.seconds),
                "--warmup",
                "5",
                "--json",
                str(work / "load.json"),
            ],
            env=env,
            log=work / "loadgen.log",
            cpus=None,
        )
        series = []
        start = time.monotonic()
        while load.poll() is None:
            series.append(sample(pid))
            time.sleep(5)
        series.append(sample(pid))
        loaded = json.loads((work / "load.json").read_text())
        statuses = loaded["statuses"]
        result.update(
            requests=loaded["requests"],
            rps=loaded["rps"],
            latency_ms=loaded["latency_ms"],
            statuses=statuses,
            errors=loaded["errors"],
            unexpected_5xx=sum(
                n
                for code, n in statuses.items()
                if code.startswith("5") and code not in ("502", "504")
            ),
            upstream_failures_surfaced=sum(
                n for code, n in statuses.items() if code in ("502", "504")
            ),
            rss_mb_change_first_to_last_minute=change(series, "rss_mb", start),
            fds_change_first_to_last_minute=change(series, "fds", start),
            sockets_change_first_to_last_minute=change(series, "sockets", start),
            rss_mb=[s["rss_mb"] for s in series],
            fds=[s["fds"] for s in series],
            sockets=[s["sockets"] for s in series],
        )
    finally:
        children.stop_all()
    (OUT / "soak.json").write_text(json.dumps(result, indent=2))
    print(
        f"{result.get('requests')} requests, {result.get('rps')} rps, statuses "
        f"{result.get('statuses')}, unexpected 5xx {result.get('unexpected_5xx')}, "
        f"RSS {result.get('rss_mb', [0])[0]} -> {result.get('rss_mb', [0])[-1]} MB "
        f"(last-minute median - first-minute median {result.get('rss_mb_change_first_to_last_minute')}), "
        f"fds {result.get('fds', [0])[0]} -> {result.get('fds', [0])[-1]}"
    )


if __name__ == "__main__":
    main()
