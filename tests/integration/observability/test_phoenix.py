"""OTLP/HTTP export to a real collector: Arize Phoenix started by the test, read back over
its REST API. `make test` installs Phoenix in a venv of its own (`make phoenix`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cli import REPO, Env, make_env, tether

PHOENIX = Path(os.environ.get("TETHER_TEST_PHOENIX", REPO / ".cache/phoenix-venv/bin/phoenix"))
DOCS = REPO / "tests" / "fixtures" / "docs"
QUESTION = "Why does the nightly backup job fail on the replica? Reply to ops@example.com"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not PHOENIX.is_file():
        pytest.skip(f"{PHOENIX} missing: run `make phoenix` (make test does) to install Phoenix")
    work = tmp_path_factory.mktemp("phoenix")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))},
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(free_port()),
        "PHOENIX_WORKING_DIR": str(work),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = (work / "phoenix.log").open("wb")
    proc = subprocess.Popen(
        [str(PHOENIX), "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"phoenix exited with {proc.returncode}: {(work / 'phoenix.log').read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("phoenix did not become healthy in 120 s")
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def spans_of(base: str, trace_id: str) -> list[dict[str, object]]:
    """The trace's spans from Phoenix's REST API, waiting for the exporter's batch."""
    deadline = time.monotonic() + 30
    while True:
        response = httpx.get(
            f"{base}/v1/projects/default/spans", params={"limit": 1000}, timeout=10
        )
        response.raise_for_status()
        found = [s for s in response.json()["data"] if s["context"]["trace_id"] == trace_id]
        if len(found) >= 7 or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_a_request_trace_reaches_phoenix_with_token_counts_intact(
    phoenix: str, tmp_path: Path
) -> None:
    env: Env = make_env(
        tmp_path, TETHER_OTLP_ENDPOINT=f"{phoenix}/v1/traces", TETHER_TRACE_CONTENT="true"
    )
    assert tether(env, "ingest", str(DOCS)).code == 0
    run = tether(env, "ask", QUESTION, "--model", "fake", "--json")
    assert run.code == 0, run.err
    asked = json.loads(run.out)
    spans = {str(s["name"]): s for s in spans_of(phoenix, asked["trace_id"])}
    assert {"tether.answer", "tether.retrieve", "tether.pack", "chat fake"} <= set(spans)
    call = spans["chat fake"]["attributes"]
    assert isinstance(call, dict)
    assert call["gen_ai.usage.input_tokens"] == asked["usage"]["input_tokens"] > 0
    assert call["gen_ai.usage.output_tokens"] == asked["usage"]["output_tokens"] > 0
    assert call["gen_ai.system"] == "tether.fake"
    assert call["tether.prompt.id"] == "qa.answer@1"
    root = spans["tether.answer"]
    assert spans["chat fake"]["parent_id"] == root["context"]["span_id"]  # type: ignore[index]
    # Redacted before export: the collector never saw the address.
    assert "ops@example.com" not in json.dumps(list(spans.values()))
    assert "[EMAIL_ADDRESS]" in str(root["attributes"]["tether.question"])  # type: ignore[index]
