"""A real `tether serve` in a subprocess on a free port, with its state under a temp dir."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from tests.support.cli import REPO, Env, tether


@dataclass(frozen=True)
class Server:
    url: str
    env: Env
    process: subprocess.Popen[bytes]

    def key(self, tenant: str, role: str = "reader", *extra: str) -> str:
        run = tether(self.env, "keys", "create", "--tenant", tenant, "--role", role, *extra)
        assert run.code == 0, run.err
        return run.out.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serving(env: Env, *, timeout: float = 60.0, workers: int = 1) -> Iterator[Server]:
    port = free_port()
    log = open(env.root / f"serve-{port}.log", "wb")  # noqa: SIM115  # closed below
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tether.cli import main; main()",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "info",
            "--workers",
            str(workers),
        ],
        env=dict(env.vars),
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"tether serve exited: {(env.root / f'serve-{port}.log').read_text()}"
                )
            try:
                if httpx.get(url + "/readyz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("tether serve did not become ready")
            time.sleep(0.1)
        yield Server(url, env, process)
        if process.poll() is not None:
            # Died while the tests ran (a worker that failed to start stops them all):
            # say why here, or the tests only show "connection refused".
            raise RuntimeError(
                f"tether serve exited with {process.returncode} during the tests: "
                f"{(env.root / f'serve-{port}.log').read_text(errors='replace')[-4000:]}"
            )
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


def server_log(server: Server) -> str:
    port = server.url.rsplit(":", 1)[1]
    return (server.env.root / f"serve-{port}.log").read_text(errors="replace")
