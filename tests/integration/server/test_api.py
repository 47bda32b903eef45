"""The real `tether serve` over HTTP: auth and tenancy, answers (whole and streamed),
search, the OpenAI-compatible route through the official `openai` client, metrics and
the bad-input contract."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.cli import REPO, Env, make_env, tether
from tests.support.server import Server, serving
from tether.testing import MockProvider

DOCS = REPO / "tests" / "fixtures" / "docs"
QUESTION = "Why does the nightly backup job fail on the replica?"


@pytest.fixture(scope="module")
def mock() -> Iterator[MockProvider]:
    with MockProvider(default_text="pass-through reply", models=("m",)) as provider:
        yield provider


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, mock: MockProvider) -> Env:
    root = tmp_path_factory.mktemp("serve")
    env = make_env(
        root,
        TETHER_GATEWAY_MODELS=json.dumps({"m": f"openai-compat:{mock.base_url}#m"}),
        TETHER_OPENAI_API_KEY="sk-upstream-test",
        TETHER_TRACE_CONTENT="false",
    )
    for tenant, files in (("acme", ["guide.md", "tickets.jsonl"]), ("globex", ["page.html"])):
        run = tether(env, "ingest", *(str(DOCS / f) for f in files), "--tenant", tenant)
        assert run.code == 0, run.err
    return env


@pytest.fixture(scope="module")
def server(env: Env) -> Iterator[Server]:
    with serving(env) as running:
        yield running


@pytest.fixture(scope="module")
def acme(server: Server) -> str:
    return server.key("acme", "reader", "--rps", "0")


@pytest.fixture(scope="module")
def client(server: Server, acme: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {acme}"}, timeout=30
    ) as c:
        yield c


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, object]]]:
    events = []
    name = "message"
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((name, json.loads(line.removeprefix("data: "))))
            name = "message"
    return events


# -- ops ----------------------------------------------------------------------------------


def test_health_and_ready_need_no_key(server: Server) -> None:
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(server.url + "/readyz").json()
    assert ready["status"] == "ready" and "tether-rag" in ready["models"] and "m" in ready["models"]


def test_metrics_need_an_admin_key_and_count_requests(server: Server, client: httpx.Client) -> None:
    assert client.post("/v1/answer", json={"question": QUESTION}).status_code == 200
    assert client.get("/metrics").status_code == 403
    admin = server.key("acme", "admin")
    deadline = time.monotonic() + 5
    while True:
        text = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {admin}"}).text
        if 'tether_requests_total{name="tether.answer",outcome="ok"}' in text:
            break
        assert time.monotonic() < deadline, text[:2000]
        time.sleep(0.1)
    assert "tether_request_seconds_bucket" in text


# -- auth and tenancy ------------------------------------------------------------------------


def test_no_key_bad_key_and_wrong_role_get_json_errors(server: Server, acme: str) -> None:
    missing = httpx.post(server.url + "/v1/search", json={"query": "backup"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["type"] == "authentication_error"
    forged = acme[:-4] + ("AAAA" if not acme.endswith("AAAA") else "BBBB")
    bad = httpx.post(
        server.url + "/v1/search",
        json={"query": "backup"},
        headers={"Authorization": f"Bearer {forged}"},
    )
    assert bad.status_code == 401 and "unknown" in bad.json()["error"]["message"]
    upload = httpx.post(
        server.url + "/v1/documents",
        files={"file": ("a.md", b"# hi\n\nsome text here", "text/markdown")},
        headers={"Authorization": f"Bearer {acme}"},
    )
    assert upload.status_code == 403 and "writer" in upload.json()["error"]["message"]


def test_keys_are_stored_hashed(env: Env, acme: str) -> None:
    import sqlite3

    secret = acme.split("_", 2)[2]
    raw = (env.root / "keys.db").read_bytes()
    assert secret.encode() not in raw
    rows = (
        sqlite3.connect(env.root / "keys.db").execute("SELECT secret_hash FROM api_keys").fetchall()
    )
    assert rows and all(len(r[0]) == 64 for r in rows)


def test_tenant_comes_from_the_key_never_the_body(server: Server, client: httpx.Client) -> None:
    globex = server.key("globex", "reader")
    mine = client.post("/v1/search", json={"query": "nightly backup replica"}).json()["results"]
    assert mine and all("globex" not in h["source_id"] for h in mine)
    theirs = httpx.post(
        server.url + "/v1/search",
        json={"query": "nightly backup replica"},
        headers={"Authorization": f"Bearer {globex}"},
    ).json()["results"]
    acme_ids = {h["chunk_id"] for h in mine}
    assert not acme_ids & {h["chunk_id"] for h in theirs}
    smuggled = client.post("/v1/search", json={"query": "backup", "tenant": "globex"})
    assert smuggled.status_code == 422
    assert "tenant" in smuggled.json()["error"]["message"]


def test_rate_limit_answers_429_with_retry_after(server: Server) -> None:
    key = server.key("acme", "reader", "--rps", "0.5", "--burst", "2")
    headers = {"Authorization": f"Bearer {key}"}
    codes = [
        httpx.post(server.url + "/v1/search", json={"query": "backup"}, headers=headers)
        for _ in range(3)
    ]
    assert [r.status_code for r in codes] == [200, 200, 429]
    limited = codes[2]
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"


# -- answers ---------------------------------------------------------------------------------


def test_answer_cites_only_retrieved_chunks_and_is_fetchable_by_request_id(
    client: httpx.Client,
) -> None:
    response = client.post("/v1/answer", json={"question": QUESTION, "top_k": 5})
    assert response.status_code == 200
    body = response.json()
    assert not body["answer"]["declined"]
    retrieved = {r["chunk_id"] for r in body["retrieved"]}
    assert body["citations"] and {c["chunk_id"] for c in body["citations"]} <= retrieved
    assert all(c["snippet"] for c in body["citations"])
    assert response.headers["x-request-id"] == body["request_id"]
    stored = client.get(f"/v1/answers/{body['request_id']}").json()
    assert stored["status"] == "complete"
    assert stored["answer"]["summary"] == body["answer"]["summary"]


def test_request_ids_are_the_servers_never_the_clients(client: httpx.Client) -> None:
    # A chosen id could aim at someone else's stored answer.
    chosen = "my-own-request-id-0001"
    response = client.post(
        "/v1/answer", json={"question": QUESTION}, headers={"X-Request-ID": chosen}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] != chosen
    assert len(response.headers["x-request-id"]) == 32
    assert client.get(f"/v1/answers/{chosen}").status_code == 404


def test_streamed_answer_events_in_order(client: httpx.Client) -> None:
    with client.stream("POST", "/v1/answer", json={"question": QUESTION, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    names = [name for name, _ in events]
    assert names[0] == "tool_status" and "retrieval" in names
    assert names.index("retrieval") < names.index("token") < names.index("citation")
    assert names[-1] == "done"
    done = events[-1][1]
    tokens = "".join(str(d["text"]) for n, d in events if n == "token")
    assert tokens.strip() == done["answer"]["summary"]  # type: ignore[index]
    retrieval = next(d for n, d in events if n == "retrieval")
    retrieved = {c["chunk_id"] for c in retrieval["chunks"]}  # type: ignore[attr-defined]
    cited = {d["chunk_id"] for n, d in events if n == "citation"}
    assert cited and cited <= retrieved


def test_unknown_answer_id_is_404_and_other_tenants_cannot_read_it(
    server: Server, client: httpx.Client
) -> None:
    rid = client.post("/v1/answer", json={"question": QUESTION}).json()["request_id"]
    globex = server.key("globex", "reader")
    other = httpx.get(
        f"{server.url}/v1/answers/{rid}", headers={"Authorization": f"Bearer {globex}"}
    )
    assert other.status_code == 404
    assert client.get("/v1/answers/nope-nope-nope").status_code == 404


def test_search_returns_scores_and_metadata(client: httpx.Client) -> None:
    results = client.post("/v1/search", json={"query": "backup replica", "top_k": 3}).json()[
        "results"
    ]
    assert 0 < len(results) <= 3
    scores = [h["score"] for h in results]
    assert scores == sorted(scores, reverse=True)
    assert all({"chunk_id", "text", "metadata", "signals"} <= set(h) for h in results)


def test_filters_apply_and_bad_filters_are_400(client: httpx.Client) -> None:
    bad = client.post("/v1/search", json={"query": "backup", "filters": ["=x"]})
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"


# -- the OpenAI-compatible route, through the official client ----------------------------------


def openai_client(server: Server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def test_openai_client_rag_answer_carries_citations(server: Server, acme: str) -> None:
    completion = openai_client(server, acme).chat.completions.create(
        model="tether-rag", messages=[{"role": "user", "content": QUESTION}]
    )
    content = completion.choices[0].message.content
    assert content and completion.choices[0].finish_reason == "stop"
    citations = (completion.model_extra or {})["citations"]
    assert citations and all(c["chunk_id"] in content for c in citations)


def test_openai_client_rag_stream_ends_with_citations(server: Server, acme: str) -> None:
    stream = openai_client(server, acme).chat.completions.create(
        model="tether-rag", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    text, citations, finish = "", None, None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
            citations = (chunk.model_extra or {}).get("citations")
    assert finish == "stop" and text.strip()
    assert citations and all(c["chunk_id"] in text for c in citations)


def test_openai_client_passes_through_to_a_gateway_model(
    server: Server, acme: str, mock: MockProvider
) -> None:
    before = len(mock.chat_requests)
    client = openai_client(server, acme)
    completion = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hello there, unique 41"}],
        max_tokens=20,
    )
    assert completion.choices[0].message.content == "pass-through reply"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    sent = mock.chat_requests[before]
    assert sent.json["messages"][-1]["content"] == "hello there, unique 41"
    # The client's key stays with tether; the upstream gets the configured one.
    assert sent.header("authorization") == "Bearer sk-upstream-test"
    pieces = [
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "stream, unique 42"}], stream=True
        )
        if c.choices
    ]
    assert "".join(pieces) == "pass-through reply"


def test_openai_client_sees_typed_errors(server: Server, acme: str) -> None:
    client = openai_client(server, acme)
    with pytest.raises(openai.NotFoundError, match="unknown model"):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], n=2)
    with pytest.raises(openai.AuthenticationError):
        openai_client(server, "tk_nope_nope").models.list()
    assert {m.id for m in client.models.list()} == {"tether-rag", "m"}


# -- bad input ---------------------------------------------------------------------------------


def test_bad_input_gets_4xx_with_a_json_error(client: httpx.Client) -> None:
    cases = [
        (
            client.post(
                "/v1/answer", content=b"{not json", headers={"content-type": "application/json"}
            ),
            400,
        ),
        (
            client.post(
                "/v1/answer", content=b"question=x", headers={"content-type": "text/plain"}
            ),
            415,
        ),
        (client.post("/v1/answer", json={"question": "x", "surprise": 1}), 422),
        (client.post("/v1/answer", json={"question": ""}), 422),
        (client.post("/v1/answer", json={"question": "x" * 2_000_000}), 413),
        (client.post("/v1/answer", json={"question": "x", "top_k": 0}), 422),
        (client.get("/v1/nothing-here"), 404),
        (client.delete("/v1/answer"), 405),
    ]
    for response, status in cases:
        assert response.status_code == status, (response.request.url, response.text[:200])
        assert response.json()["error"]["message"], response.text


def test_chunked_body_over_the_limit_is_413(client: httpx.Client) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"question": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    response = client.post(
        "/v1/answer", content=body(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_openapi_documents_the_routes(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/v1/chat/completions", "/v1/answer", "/v1/search", "/v1/documents"):
        assert path in spec["paths"]


def test_agent_routes_say_when_agents_are_off(server: Server) -> None:
    writer = server.key("acme", "writer", "--rps", "0")
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {writer}"}, timeout=30
    ) as c:
        reply = c.post("/v1/runs", json={"goal": "make a task"})
    assert reply.status_code == 404
    assert reply.json()["error"]["type"] == "agent_unavailable"
