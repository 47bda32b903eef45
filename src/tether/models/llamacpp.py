"""`local:` models: a GGUF file the user names, served by PyPI `xllamacpp` (prebuilt CPU
llama.cpp) through its OpenAI-compatible server on 127.0.0.1 in a child process.

A child process, not an in-process binding: llama.cpp owns threads and memory of its
own, and a crash or a hang in it must not take the caller down with it.

    python -m tether.models.llamacpp --model path.gguf --port 8089   # serve until SIGTERM
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tether.errors import ConfigError, ProviderUnavailable


@dataclass
class LocalServer:
    model_path: Path
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerTokenCounter:
    """Counts tokens with the served model's own tokenizer (llama.cpp `/tokenize`), so a
    local model's budget estimates are in its tokens, not an OpenAI encoding's."""

    def __init__(self, server_url: str, *, timeout: float = 5.0) -> None:
        self._client = httpx.Client(base_url=server_url.removesuffix("/v1"), timeout=timeout)

    def count(self, text: str) -> int:
        try:
            response = self._client.post("/tokenize", json={"content": text})
            response.raise_for_status()
            return len(response.json()["tokens"])
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
            raise ProviderUnavailable(f"local tokenizer unavailable: {exc}") from exc

    def close(self) -> None:
        self._client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_local_server(
    model_path: str | Path,
    *,
    port: int | None = None,
    n_ctx: int = 4096,
    threads: int | None = None,
    startup_timeout: float = 120.0,
) -> LocalServer:
    """Start the server and wait until /health answers 200."""
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"local model file not found: {path}")
    port = port or free_port()
    log_path = Path(tempfile.mkstemp(prefix="tether-llamacpp-", suffix=".log")[1])
    command = [
        sys.executable,
        "-m",
        "tether.models.llamacpp",
        "--model",
        str(path),
        "--port",
        str(port),
        "--ctx",
        str(n_ctx),
        "--threads",
        str(threads or os.cpu_count() or 1),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = LocalServer(path, port, process, log_path)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ProviderUnavailable(
                f"local model server exited with {process.returncode}:\n{server.log_tail()}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise ProviderUnavailable(f"local model server not ready in {startup_timeout}s")


def _serve(model: str, port: int, n_ctx: int, threads: int) -> None:
    try:
        import xllamacpp
    except ImportError:
        sys.exit("xllamacpp is not installed: pip install 'tether[local]'")
    params = xllamacpp.CommonParams()
    params.model.path = model
    params.port = port
    params.hostnames = ["127.0.0.1"]
    params.n_ctx = n_ctx
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.warmup = False
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = xllamacpp.Server(params)
    print(f"serving {model} on http://127.0.0.1:{port}/v1", flush=True)
    stop.wait()
    del server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    _serve(args.model, args.port, args.ctx, args.threads)


if __name__ == "__main__":
    main()
