"""A client that hangs up mid-answer: the upstream model request is closed within 100 ms
and the partial answer is persisted under its request id."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.cli import REPO, Env, make_env, tether
from tests.support.server import Server, serving
from tests.support.upstream import StallingUpstream, stalling_upstream

DOCS = REPO / "tests" / "fixtures" / "docs"
QUESTION = "Why does the nightly backup job fail on the replica?"
PIECES = ['{"answer": "The backup', " fails because", " the replica"]


@pytest.fixture(scope="module")
def upstream() -> Iterator[StallingUpstream]:
    with stalling_upstream(PIECES) as running:
        yield running


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, upstream: StallingUpstream
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("stream")
    env: Env = make_env(
        root,
        TETHER_MODEL=f"openai-compat:{upstream.base_url}#m",
    )
    assert tether(env, "ingest", str(DOCS / "guide.md"), "--tenant", "acme").code == 0
    with serving(env) as running:
        yield running


def test_disconnect_closes_the_upstream_within_100ms_and_keeps_the_partial_answer(
    server: Server, upstream: StallingUpstream
) -> None:
    key = server.key("acme", "reader", "--rps", "0")
    headers = {"Authorization": f"Bearer {key}"}
    tokens: list[str] = []
    request_id = None
    with (
        httpx.Client(base_url=server.url, headers=headers, timeout=30) as client,
        client.stream("POST", "/v1/answer", json={"question": QUESTION, "stream": True}) as r,
    ):
        request_id = r.headers["x-request-id"]
        name = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: ") and name == "token":
                tokens.append(json.loads(line.removeprefix("data: "))["text"])
                if "".join(tokens) == "The backup fails because the replica":
                    break
        # Leaving both blocks closes the socket: the client has gone.
    hung_up = time.monotonic()
    deadline = hung_up + 5
    while not upstream.closed_at and time.monotonic() < deadline:
        time.sleep(0.002)
    assert upstream.closed_at, "the upstream request was never closed"
    delay = upstream.closed_at[-1] - hung_up
    assert delay <= 0.1, f"upstream closed {delay * 1000:.0f} ms after the client hung up"
    stored = None
    while time.monotonic() < deadline:
        found = httpx.get(f"{server.url}/v1/answers/{request_id}", headers=headers)
        if found.status_code == 200:
            stored = found.json()
            break
        time.sleep(0.02)
    assert stored is not None
    assert stored["status"] == "cancelled"
    assert stored["partial"] == "The backup fails because the replica"
    assert stored["answer"] is None and stored["retrieved"]
    # The trace was kept too: the root span ended with the cancellation recorded.
    assert stored["trace_id"]
    while time.monotonic() < deadline:
        shown = tether(server.env, "traces", "show", stored["trace_id"], "--json")
        if shown.code == 0:
            break
        time.sleep(0.1)
    assert shown.code == 0, shown.err
    spans = {s["name"]: s for s in json.loads(shown.out)}
    assert spans["tether.answer"]["status"] == "error"
    assert spans["tether.answer"]["attributes"]["tether.cancelled"] is True
    assert "tether.retrieve" in spans
    print(f"upstream closed {delay * 1000:.1f} ms after the client hung up")
