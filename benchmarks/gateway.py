"""What an OpenAI-compatible gateway adds per request: direct vs LiteLLM's proxy vs tether.

    uv run python -m benchmarks.gateway [--seconds 15] [--warmup 3] [--concurrency 1,100]
                                        [--targets direct,litellm,tether] [--no-pin]

One run, side by side, `POST /v1/chat/completions` (non-streaming) against a zero-latency
upstream (`benchmarks.zero_upstream`):
* direct: the load generator talks to the upstream itself;
* litellm: through LiteLLM's proxy (`litellm[proxy]`, installed in its own virtualenv
  `.cache/litellm-venv`, created here when missing, never a dependency of the project),
  one worker, a config routing model `m` to `openai/m` at the upstream, a master key (so it
  authenticates as tether does), no database, telemetry off, cost map read locally;
* tether: `tether serve`, one worker, an API key from `tether keys create`, model `m`
  mapped to the upstream, stores, usage, traces and the response cache (on) in a fresh
  temporary directory. Skipped, saying why, when `tether serve --help` fails.

Each target is measured at each concurrency (default 1 and 100) by `benchmarks.loadgen` in
its own process: closed loop, keep-alive connections, every request's text distinct (no
cache hit), `--warmup` seconds unrecorded then `--seconds` recorded. With two cores or
more, CPUs are pinned so the comparison is one worker on one core: the server under test
gets CPU 0, the load generator (and, for the proxies, the upstream) CPU 1. CPU seconds used
by each process tree during the measured window are reported too.

"Added latency at one client" is p50 through the proxy minus p50 direct, at concurrency 1.
Results: `benchmarks/out/gateway.json` and a table on stdout.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, create_key, gateway_env, write

LITELLM_VENV = ROOT / ".cache" / "litellm-venv"
#: What goes into LiteLLM's virtualenv. opentelemetry-sdk: without it LiteLLM 1.108's auth
#: path retries a failing import of its OTel logger on every request (recompiling the
#: module each time), which costs it about a third of its throughput; httptools is what
#: `uvicorn[standard]` would bring (LiteLLM's uvicorn otherwise parses HTTP with h11).
LITELLM_PACKAGES = ["litellm[proxy]", "opentelemetry-sdk", "httptools"]
LITELLM_KEY = "sk-bench-master"
MODEL = "m"
#: Cores' worth of CPU used by processes outside the benchmark above which a run is noisy.
NOISE_CORES = 0.1
PATH = "/v1/chat/completions"


class Children:
    """Every process started here, each in its own session; all are ended at exit."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def start(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        env: dict[str, str],
        log: Path,
        cpus: set[int] | None,
        cwd: Path = ROOT,
    ) -> subprocess.Popen[bytes]:
        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        handle = log.open("wb")
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=pin,
        )
        handle.close()
        self.procs[name] = proc
        self.logs[name] = log
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            if proc.poll() is not None:
                break
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
        # The group may outlive its leader (a worker the leader forked).
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.logs.get(name)
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_call(
    port: int,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    key: str | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def wait_ready(
    children: Children, name: str, port: int, path: str, timeout: float = 120.0
) -> float:
    """Seconds until `GET path` answered 200; exits with the log's tail if it never does."""
    proc = children.procs[name]
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}):\n{children.tail(name)}")
        with suppress(OSError, http.client.HTTPException):
            if http_call(port, "GET", path, timeout=2.0)[0] == 200:
                return time.perf_counter() - start
        time.sleep(0.2)
    raise RuntimeError(f"{name} not ready after {timeout:.0f} s:\n{children.tail(name)}")


def check_chat(port: int, key: str | None) -> dict[str, Any]:
    """One request by hand: the proxy must answer 200 with the upstream's 'ok'."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "sanity check"}]}
    status, headers, raw = http_call(port, "POST", PATH, body, key, timeout=30.0)
    if status != 200:
        raise RuntimeError(f"sanity request answered {status}: {raw[:500]!r}")
    reply = json.loads(raw)
    content = reply["choices"][0]["message"]["content"]
    if content != "ok":
        raise RuntimeError(f"sanity request answered {content!r}, not 'ok'")
    return {"status": status, "server_timing": headers.get("server-timing")}


def pin_tree(root: int, cpus: set[int]) -> None:
    """Move every thread of a process and its descendants to `cpus`."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    tree = {root}
    grew = True
    while grew:
        new = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= new
        grew = bool(new)
    for pid in tree:
        with suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with suppress(OSError):
                    os.sched_setaffinity(int(tid), cpus)


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, children: Children) -> None:
        self.args = args
        self.work = work
        self.children = children
        self.levels: list[int] = [int(c) for c in args.concurrency.split(",")]
        cores = os.cpu_count() or 1
        self.pin = not args.no_pin and cores >= 2
        self.sut_cpus: set[int] | None = {0} if self.pin else None
        self.side_cpus: set[int] | None = {1} if self.pin else None
        self.upstream_port = free_port()
        self.upstream_pid = 0

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV",))}
        env.update(extra)
        return env

    def load(self, name: str, port: int, key: str | None, sut_pid: int) -> dict[str, Any]:
        """Run the load generator at each concurrency against one target."""
        results: dict[str, Any] = {}
        cpu_pids = f"server={sut_pid}"
        if sut_pid != self.upstream_pid:
            cpu_pids += f",upstream={self.upstream_pid}"
        for level in self.levels:
            out = self.work / f"{name}-c{level}.json"
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.loadgen",
                "--url",
                f"http://127.0.0.1:{port}{PATH}",
                "--concurrency",
                str(level),
                "--seconds",
                str(self.args.seconds),
                "--warmup",
                str(self.args.warmup),
                "--cpu-pids",
                cpu_pids,
                "--json",
                str(out),
            ]
            if key:
                cmd += ["--key", key]
            print(f"  {name} at concurrency {level} ...", flush=True)
            proc = self.children.start(
                f"loadgen-{name}-{level}",
                cmd,
                env=self.env(),
                log=self.work / f"loadgen-{name}-{level}.log",
                cpus=self.side_cpus,
            )
            deadline = self.args.warmup + self.args.seconds + 120
            with suppress(subprocess.TimeoutExpired):
                proc.wait(deadline)
            tail = self.children.tail(f"loadgen-{name}-{level}", 5)
            self.children.stop(f"loadgen-{name}-{level}")
            if not out.exists():
                raise RuntimeError(f"load generator failed:\n{tail}")
            print(f"    {tail.splitlines()[-1] if tail else ''}", flush=True)
            results[f"c{level}"] = json.loads(out.read_text())
        return results

    # ----------------------------------------------------------------- targets

    def start_upstream(self) -> None:
        proc = self.children.start(
            "upstream",
            [sys.executable, "-m", "benchmarks.zero_upstream", "--port", str(self.upstream_port)],
            env=self.env(),
            log=self.work / "upstream.log",
            cpus=self.sut_cpus,
        )
        self.upstream_pid = proc.pid
        wait_ready(self.children, "upstream", self.upstream_port, "/v1/models")

    def direct(self) -> dict[str, Any]:
        if self.pin and self.sut_cpus:
            pin_tree(self.upstream_pid, self.sut_cpus)
        check_chat(self.upstream_port, None)
        results = self.load("direct", self.upstream_port, None, self.upstream_pid)
        if self.pin and self.side_cpus:
            pin_tree(self.upstream_pid, self.side_cpus)
        return results

    def litellm(self) -> dict[str, Any]:
        version = ensure_litellm()
        port = free_port()
        config = self.work / "litellm_config.yaml"
        config.write_text(litellm_config(self.upstream_port))
        env = self.env(
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            LITELLM_LOG="ERROR",
            LITELLM_MODE="PRODUCTION",
            NO_DOCS="True",
        )
        env.pop("DATABASE_URL", None)
        self.children.start(
            "litellm",
            [
                str(LITELLM_VENV / "bin" / "litellm"),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_workers",
                "1",
            ],
            env=env,
            log=self.work / "litellm.log",
            cpus=self.sut_cpus,
            cwd=self.work,
        )
        ready = wait_ready(self.children, "litellm", port, "/health/readiness", timeout=180)
        sanity = check_chat(port, LITELLM_KEY)
        pid = self.children.procs["litellm"].pid
        try:
            results = self.load("litellm", port, LITELLM_KEY, pid)
        finally:
            self.children.stop("litellm")
        return {
            "version": version,
            "packages": LITELLM_PACKAGES,
            "config": config.read_text(),
            "ready_after_s": round(ready, 1),
            "sanity": sanity,
            **results,
        }

    def tether(self) -> dict[str, Any]:
        home = self.work / "tether"
        home.mkdir(exist_ok=True)
        env = gateway_env(home, self.upstream_port, MODEL)
        env.update(item.split("=", 1) for item in self.args.env)
        tether = ["uv", "run", "tether"]
        probe = subprocess.run(
            [*tether, "serve", "--help"], cwd=ROOT, env=env, capture_output=True, timeout=300
        )
        if probe.returncode != 0:
            reason = (probe.stderr or probe.stdout).decode(errors="replace").strip()
            raise Skipped(f"`tether serve --help` failed: {reason.splitlines()[-1:]}")
        key = create_key(env, "bench")
        port = free_port()
        self.children.start(
            "tether",
            [*tether, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            log=self.work / "tether.log",
            cpus=self.sut_cpus,
        )
        ready = wait_ready(self.children, "tether", port, "/readyz", timeout=180)
        sanity = check_chat(port, key)
        pid = self.children.procs["tether"].pid
        try:
            results = self.load("tether", port, key, pid)
        finally:
            self.children.stop("tether")
        return {
            "version": git_revision(),
            "ready_after_s": round(ready, 1),
            "sanity": sanity,
            **results,
        }


class Skipped(Exception):
    """A target that cannot run here; the rest of the benchmark goes on."""


def ensure_litellm() -> str:
    """Create `.cache/litellm-venv` with LiteLLM's proxy if needed; its LiteLLM version."""
    python = LITELLM_VENV / "bin" / "python"
    uv = shutil.which("uv")
    if uv is None:
        raise Skipped("uv is not on PATH, needed to create the LiteLLM virtualenv")
    if not python.exists():
        print(f"  creating {LITELLM_VENV} ...", flush=True)
        subprocess.run(
            [uv, "venv", "--quiet", "--python", "3.11", str(LITELLM_VENV)], check=True, cwd=ROOT
        )
    env = {k: v for k, v in os.environ.items() if k != "UV_PROJECT_ENVIRONMENT"}
    env["VIRTUAL_ENV"] = str(LITELLM_VENV)
    # Idempotent: quick and offline when everything is installed already.
    installed = subprocess.run(
        [uv, "pip", "install", "--quiet", "--compile-bytecode", *LITELLM_PACKAGES],
        cwd=ROOT,
        env=env,
        capture_output=True,
    )
    if installed.returncode != 0:
        raise Skipped(f"installing {LITELLM_PACKAGES} failed: {installed.stderr.decode()[-800:]}")
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        check=True,
    )
    return version.stdout.decode().strip()


def litellm_config(upstream_port: int) -> str:
    return f"""\
model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{MODEL}
      api_base: http://127.0.0.1:{upstream_port}/v1
      api_key: sk-dummy-upstream
litellm_settings:
  telemetry: false
  set_verbose: false
  json_logs: true
  drop_params: true
  num_retries: 0
general_settings:
  master_key: {LITELLM_KEY}
  disable_spend_logs: true
  disable_error_logs: true
"""


def git_revision() -> str:
    with suppress(OSError, subprocess.SubprocessError):
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True
        )
        return rev.stdout.decode().strip() + ("+dirty" if dirty.stdout.strip() else "")
    return "unknown"


# --------------------------------------------------------------------- report


def row(
    name: str, result: dict[str, Any], direct: dict[str, Any] | None, levels: list[int]
) -> dict[str, Any]:
    low, high = f"c{min(levels)}", f"c{max(levels)}"
    out: dict[str, Any] = {"target": name}
    for level in (low, high):
        run = result.get(level)
        if not run or not run.get("latency_ms"):
            continue
        latency = run["latency_ms"]
        out[f"rps_{level}"] = run["rps"]
        out[f"p50_ms_{level}"] = latency["p50"]
        out[f"p99_ms_{level}"] = latency["p99"]
        out[f"non_200_{level}"] = run["requests"] - run["ok"] + sum(run["errors"].values())
        server_cpu = run["cpu_s"].get("server")
        if server_cpu is not None and run["requests"]:
            out[f"server_cpu_ms_per_request_{level}"] = round(
                1000 * server_cpu / run["requests"], 3
            )
        cpu = run["cpu_s"]
        ours = cpu["loadgen"] + cpu.get("server", 0.0) + cpu.get("upstream", 0.0)
        other = max(0.0, cpu.get("machine_busy", ours) - ours)
        out[f"other_processes_cores_{level}"] = round(other / run["measured_s"], 2)
        # The load generator on a full core means the rps is its ceiling, not the server's.
        if run["cpu_s"]["loadgen"] > 0.9 * run["measured_s"]:
            out[f"loadgen_saturated_{level}"] = True
        if run.get("overhead_ms"):
            out[f"server_timing_overhead_ms_{level}"] = run["overhead_ms"]
    if direct is not None and direct.get(low, {}).get("latency_ms") and f"p50_ms_{low}" in out:
        out["added_p50_ms_one_client"] = round(
            out[f"p50_ms_{low}"] - direct[low]["latency_ms"]["p50"], 3
        )
    return out


def table(rows: list[dict[str, Any]], levels: list[int]) -> str:
    low, high = f"c{min(levels)}", f"c{max(levels)}"
    columns = [
        ("target", "target", "{}"),
        (f"rps @{max(levels)}", f"rps_{high}", "{:.0f}"),
        (f"p50 @{min(levels)} ms", f"p50_ms_{low}", "{:.2f}"),
        (f"p99 @{min(levels)} ms", f"p99_ms_{low}", "{:.2f}"),
        (f"p50 @{max(levels)} ms", f"p50_ms_{high}", "{:.1f}"),
        (f"p99 @{max(levels)} ms", f"p99_ms_{high}", "{:.1f}"),
        ("added p50 @1 ms", "added_p50_ms_one_client", "{:+.2f}"),
        (f"CPU ms/req @{max(levels)}", f"server_cpu_ms_per_request_{high}", "{:.2f}"),
        ("errors", "errors", "{}"),
    ]
    lines = []
    cells = []
    for r in rows:
        r = {**r, "errors": sum(v for k, v in r.items() if k.startswith("non_200_"))}
        if "skipped" in r:
            cells.append([r["target"], f"skipped: {r['skipped']}"])
            continue
        cells.append([fmt.format(r[key]) if key in r else "-" for _, key, fmt in columns])
    widths = [
        max([len(title)] + [len(c[i]) for c in cells if len(c) == len(columns)])
        for i, (title, _, _) in enumerate(columns)
    ]
    lines.append(
        "  ".join(
            t.rjust(w) if i else t.ljust(w)
            for i, ((t, _, _), w) in enumerate(zip(columns, widths, strict=True))
        )
    )
    for c in cells:
        if len(c) != len(columns):
            lines.append(f"{c[0].ljust(widths[0])}  {c[1]}")
        else:
            lines.append(
                "  ".join(
                    v.rjust(w) if i else v.ljust(w)
                    for i, (v, w) in enumerate(zip(c, widths, strict=True))
                )
            )
    for r in rows:
        for level in (low, high):
            other = r.get(f"other_processes_cores_{level}", 0.0)
            if other > NOISE_CORES:
                lines.append(
                    f"{r['target']} @{level[1:]}: NOISY, other processes used {other:.2f} "
                    "cores during the window"
                )
            if r.get(f"loadgen_saturated_{level}"):
                lines.append(
                    f"{r['target']} @{level[1:]}: the load generator used a full core; "
                    "this rps is its ceiling, the server's is higher"
                )
            overhead = r.get(f"server_timing_overhead_ms_{level}")
            if overhead:
                lines.append(
                    f"{r['target']} @{level[1:]}: Server-Timing app - model "
                    f"p50 {overhead['p50']:.3f} ms, p99 {overhead['p99']:.3f} ms"
                )
    return "\n".join(lines)


@contextmanager
def terminated_on_signal() -> Iterator[None]:
    """SIGTERM/SIGHUP become SystemExit so that `finally` blocks stop the children."""

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measured, per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="unrecorded, per run")
    parser.add_argument("--concurrency", default="1,100", help="levels, comma-separated")
    parser.add_argument("--targets", default="direct,litellm,tether")
    parser.add_argument("--no-pin", action="store_true", help="do not pin CPUs")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--name", default="gateway", help="results: benchmarks/out/NAME.json")
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for tether's server (repeatable)"
    )
    args = parser.parse_args()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(targets) - {"direct", "litellm", "tether"}
    if unknown:
        sys.exit(f"unknown targets: {sorted(unknown)}")
    if "direct" not in targets:
        targets.insert(0, "direct")  # the baseline that "added latency" is measured from

    work = Path(tempfile.mkdtemp(prefix="tether-gateway-bench-"))
    children = Children()
    results: dict[str, Any] = {}
    try:
        with terminated_on_signal():
            bench = Bench(args, work, children)
            print(
                f"pinning: {'server under test on CPU 0, load generator on CPU 1' if bench.pin else 'off'}"
                f"; {args.warmup:g} s warm-up + {args.seconds:g} s per run; work dir {work}",
                flush=True,
            )
            bench.start_upstream()
            for target in targets:
                print(f"{target}:", flush=True)
                try:
                    results[target] = getattr(bench, target)()
                except Skipped as exc:
                    print(f"  skipped: {exc}", flush=True)
                    results[target] = {"skipped": str(exc)}
                except RuntimeError as exc:
                    print(f"  failed: {exc}", flush=True)
                    results[target] = {"skipped": f"failed: {str(exc)[:2000]}"}
            rows = []
            for target in targets:
                result = results[target]
                if "skipped" in result:
                    lines = [line.strip() for line in result["skipped"].splitlines()]
                    reason = lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1]}"
                    rows.append({"target": target, "skipped": reason[:300]})
                else:
                    rows.append(row(target, result, results.get("direct"), bench.levels))
            write(
                args.name,
                {
                    "benchmark": "gateway overhead, POST /v1/chat/completions, non-streaming",
                    "settings": {
                        "seconds": args.seconds,
                        "warmup_s": args.warmup,
                        "concurrency": bench.levels,
                        "workers_per_server": 1,
                        "cpu_pinning": (
                            "server under test on CPU 0; load generator and (behind a proxy) "
                            "the upstream on CPU 1"
                            if bench.pin
                            else "none"
                        ),
                        "upstream": "benchmarks.zero_upstream (raw asyncio + uvloop)",
                        "load_generator": "benchmarks.loadgen (closed loop, keep-alive, distinct texts)",
                    },
                    "summary": rows,
                    "results": results,
                },
            )
            print()
            print(table(rows, bench.levels))
    finally:
        children.stop_all()
        if args.keep:
            print(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
