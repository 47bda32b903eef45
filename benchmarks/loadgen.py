"""A closed-loop HTTP/1.1 load generator that costs little CPU per request.

    uv run python -m benchmarks.loadgen --url http://127.0.0.1:8600/v1/chat/completions \
        --concurrency 100 --seconds 15 --warmup 3 [--key KEY] [--json out.json]

N clients, each on its own keep-alive connection (raw `asyncio.Protocol`, uvloop when
importable; no HTTP client library in the loop), send one `POST` at a time and the next as
soon as the answer is in (closed loop: the offered load is whatever the server sustains).
Every request has the same shape (model `m`, one user message, `max_tokens` 16) but its own
text (a run nonce, the client and a counter), so no response cache can answer it.

Requests sent during the warm-up are not recorded. For each recorded request: latency from
just before the write to the last byte of the answer (`perf_counter`), status, and the
`Server-Timing` header's metrics if present (`app;dur=<ms>, model;dur=<ms>`: the time
inside the gateway and inside the model call; app - model is the gateway's own overhead).

Reported: rps, latency p50/p90/p99/mean/max, error counts by status (and connection errors,
timeouts), Server-Timing stats, the generator's own CPU use, and, with `--cpu-pids
name=pid,...`, the CPU seconds each named process tree used during the measured window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ResponseError(Exception):
    """The connection broke or the answer did not parse."""


@dataclass
class Answer:
    status: int
    timing: dict[str, float]
    size: int


class Client(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Answer] | None = None
        self.head: tuple[int, int, bool, bool, dict[str, float], int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ResponseError(f"connection lost: {exc}"))

    def send(self, payload: bytes) -> asyncio.Future[Answer]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.buffer.clear()
        self.head = None
        self.transport.write(payload)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        try:
            answer = self.parse()
        except (ValueError, IndexError) as exc:
            self.waiter.set_exception(ResponseError(f"unparsable answer: {exc}"))
            return
        if answer is not None:
            self.waiter.set_result(answer)

    def parse(self) -> Answer | None:
        buffer = self.buffer
        if self.head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return None
            lines = bytes(buffer[:end]).split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            length = -1
            chunked = False
            close = False
            timing: dict[str, float] = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
                elif name == b"server-timing":
                    timing.update(server_timing(value.decode("latin-1")))
            self.head = (status, length, chunked, close, timing, end + 4)
        status, length, chunked, close, timing, start = self.head
        if chunked:
            size = chunked_size(buffer, start)
            if size is None:
                return None
        elif length >= 0:
            if len(buffer) < start + length:
                return None
            size = length
        elif status in (204, 304) or 100 <= status < 200:
            size = 0
        else:
            raise ValueError("answer with neither content-length nor chunked encoding")
        if close and self.transport is not None:
            self.transport.close()
        return Answer(status, timing, size)


def server_timing(value: str) -> dict[str, float]:
    """`app;dur=1.2, model;dur=0.8` -> {"app": 1.2, "model": 0.8}."""
    out: dict[str, float] = {}
    for metric in value.split(","):
        name, *params = metric.strip().split(";")
        for param in params:
            key, _, number = param.strip().partition("=")
            if key == "dur" and name:
                with contextlib.suppress(ValueError):
                    out[name.strip()] = float(number.strip('"'))
    return out


def chunked_size(buffer: bytearray, start: int) -> int | None:
    """Decoded size of a complete chunked body at `start`, or None while incomplete."""
    position = start
    total = 0
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";", 1)[0], 16)
        position = line_end + 2
        if size == 0:
            return total if buffer.find(b"\r\n\r\n", position - 2) >= 0 else None
        if len(buffer) < position + size + 2:
            return None
        total += size
        position += size + 2


@dataclass
class Target:
    host: str
    port: int
    path: str
    key: str | None
    model: str
    max_tokens: int
    nonce: str = field(default_factory=lambda: secrets.token_hex(4))

    def request(self, client: int, n: int) -> bytes:
        text = f"bench {self.nonce} client {client} request {n}: reply with ok"
        body = json.dumps(
            {
                "model": self.model,
                "messages": [{"role": "user", "content": text}],
                "max_tokens": self.max_tokens,
            },
            separators=(",", ":"),
        ).encode()
        auth = f"authorization: Bearer {self.key}\r\n" if self.key else ""
        head = (
            f"POST {self.path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
            f"content-type: application/json\r\naccept: application/json\r\n{auth}"
            f"content-length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


@dataclass
class Recorder:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    timings: dict[str, list[float]] = field(default_factory=dict)
    overhead: list[float] = field(default_factory=list)
    bytes_in: int = 0

    def add(self, latency_ms: float, answer: Answer) -> None:
        self.latencies.append(latency_ms)
        self.statuses[str(answer.status)] += 1
        self.bytes_in += answer.size
        for name, value in answer.timing.items():
            self.timings.setdefault(name, []).append(value)
        if "app" in answer.timing and "model" in answer.timing:
            self.overhead.append(answer.timing["app"] - answer.timing["model"])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of an unsorted list (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "p50": round(percentile(values, 50), 3),
        "p90": round(percentile(values, 90), 3),
        "p99": round(percentile(values, 99), 3),
        "mean": round(statistics.fmean(values), 3),
        "max": round(max(values), 3),
    }


def tree_cpu_seconds(root: int) -> float:
    """utime + stime of a process and all its live descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        times[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    total = 0.0
    stack = [root]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: tree_cpu_seconds(pid) for name, pid in pids.items()}


def machine_cpu_seconds() -> dict[str, float]:
    """CPU seconds of the whole machine so far, all cores (/proc/stat): time in processes
    (user + nice + system), in interrupts (irq + softirq: loopback traffic lands there,
    attributed to no process) and stolen by the hypervisor."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return {}
    fields += [0] * (8 - len(fields))
    # user nice system idle iowait irq softirq steal ...
    return {
        "machine_busy": sum(fields[:3]) / CLOCK_TICKS,
        "machine_irq": (fields[5] + fields[6]) / CLOCK_TICKS,
        "machine_steal": fields[7] / CLOCK_TICKS,
    }


async def run(
    target: Target,
    concurrency: int,
    seconds: float,
    warmup: float,
    requests: int | None,
    timeout: float,
    cpu_pids: dict[str, int],
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    errors: Counter[str] = Counter()
    started = time.perf_counter()
    measure_from = started + warmup
    measure_until = measure_from + seconds
    window: dict[str, float] = {}
    cpu_before: dict[str, float] = {}
    machine_before: dict[str, float] = {}
    measuring = asyncio.Event()
    opened = [0]  # connections opened: `concurrency` unless the server drops keep-alive

    async def connect() -> Client:
        _, protocol = await loop.create_connection(Client, target.host, target.port)
        opened[0] += 1
        return protocol

    async def start_window() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu_before.update(cpu_snapshot(cpu_pids))
        machine_before.update(machine_cpu_seconds())
        window["process_cpu"] = time.process_time()
        measuring.set()

    async def worker(index: int) -> None:
        client: Client | None = None
        n = 0
        while True:
            now = time.perf_counter()
            if now >= measure_until:
                return
            if requests is not None and measuring.is_set() and len(recorder.latencies) >= requests:
                return
            if client is None or client.transport is None:
                try:
                    client = await connect()
                except OSError as exc:
                    if now >= measure_from:
                        errors[f"connect: {type(exc).__name__}"] += 1
                    await asyncio.sleep(0.05)
                    continue
            payload = target.request(index, n)
            n += 1
            begin = time.perf_counter()
            future = client.send(payload)
            timer = loop.call_later(timeout, expire, future)
            try:
                answer = await future
            except (ResponseError, TimeoutError) as exc:
                if begin >= measure_from:
                    errors["timeout" if isinstance(exc, TimeoutError) else "connection"] += 1
                if client.transport is not None:
                    client.transport.close()
                client = None
                continue
            finally:
                timer.cancel()
            end = time.perf_counter()
            if begin >= measure_from and end <= measure_until:
                recorder.add((end - begin) * 1000, answer)

    def expire(future: asyncio.Future[Answer]) -> None:
        if not future.done():
            future.set_exception(TimeoutError())

    window_task = asyncio.create_task(start_window())
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    await window_task
    ended = min(time.perf_counter(), measure_until)
    cpu_after = cpu_snapshot(cpu_pids)
    machine_after = machine_cpu_seconds()
    elapsed = ended - measure_from
    loadgen_cpu = time.process_time() - window.get("process_cpu", time.process_time())
    count = len(recorder.latencies)
    ok = recorder.statuses.get("200", 0)
    return {
        "url": f"http://{target.host}:{target.port}{target.path}",
        "concurrency": concurrency,
        "warmup_s": warmup,
        "measured_s": round(elapsed, 3),
        "requests": count,
        "ok": ok,
        "rps": round(count / elapsed, 1) if elapsed > 0 else 0.0,
        "ok_rps": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms": summary(recorder.latencies),
        "statuses": dict(sorted(recorder.statuses.items())),
        "errors": dict(errors),
        "server_timing_ms": {name: summary(values) for name, values in recorder.timings.items()},
        "overhead_ms": summary(recorder.overhead),
        "bytes_in": recorder.bytes_in,
        "connections_opened": opened[0],
        "cpu_s": {
            "loadgen": round(loadgen_cpu, 3),
            **{name: round(cpu_after[name] - cpu_before.get(name, 0.0), 3) for name in cpu_pids},
            # The whole machine (every process, all cores) over the same window: what the
            # processes above do not account for is someone else's load, i.e. noise.
            **{
                name: round(value - machine_before.get(name, value), 3)
                for name, value in machine_after.items()
            },
        },
    }


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def parse_pids(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, pid = item.partition("=")
        out[name] = int(pid)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="http://host:port/v1/chat/completions")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--requests", type=int, default=None, help="stop after this many too")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    parser.add_argument("--key", default=None, help="sent as Authorization: Bearer KEY")
    parser.add_argument("--model", default="m")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--cpu-pids", default="", help="name=pid,... process trees to meter")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    args = parser.parse_args()
    url = urlsplit(args.url)
    if url.scheme != "http" or url.hostname is None:
        sys.exit("only http://host:port/path URLs")
    target = Target(
        host=url.hostname,
        port=url.port or 80,
        path=url.path or "/",
        key=args.key,
        model=args.model,
        max_tokens=args.max_tokens,
    )
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        result = runner.run(
            run(
                target,
                args.concurrency,
                args.seconds,
                args.warmup,
                args.requests,
                args.timeout,
                parse_pids(args.cpu_pids),
            )
        )
    text = json.dumps(result, indent=2)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    latency = cast(dict[str, float] | None, result["latency_ms"])
    line = (
        f"c={args.concurrency} {result['rps']} rps, "
        + (f"p50 {latency['p50']} ms p99 {latency['p99']} ms, " if latency else "")
        + f"statuses {result['statuses']} errors {result['errors']}"
    )
    print(line if args.json is not None else text, flush=True)


if __name__ == "__main__":
    main()
