"""Agent runs over HTTP against a real `tether serve` (two worker processes sharing the
run store) whose agent model is a scripted OpenAI-compatible upstream."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.agent_upstream import AgentUpstream, agent_upstream
from tests.support.cli import Env, make_env, tether
from tests.support.server import Server, serving

REPO = Path(__file__).resolve().parents[3]
DOCS = REPO / "tests" / "fixtures" / "docs"


@pytest.fixture(scope="module")
def upstream() -> Iterator[AgentUpstream]:
    with agent_upstream() as running:
        yield running


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, upstream: AgentUpstream) -> Env:
    root = tmp_path_factory.mktemp("runs")
    env = make_env(
        root,
        TETHER_AGENT_MODEL=f"openai-compat:{upstream.base_url}#scripted",
        TETHER_AGENT_MAX_COST_USD="0",
        TETHER_AGENT_SECRETS='["sk-live-do-not-leak-4242"]',
    )
    run = tether(env, "ingest", str(DOCS / "guide.md"), "--tenant", "acme")
    assert run.code == 0, run.err
    return env


@pytest.fixture(scope="module")
def server(env: Env) -> Iterator[Server]:
    with serving(env, workers=2) as running:
        yield running


def _client(server: Server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _tasks(env: Env) -> int:
    with sqlite3.connect(env.root / "agent.db") as db:
        return int(db.execute("SELECT count(*) FROM tasks").fetchone()[0])


def test_run_pauses_then_concurrent_approvals_write_once(server: Server, env: Env) -> None:
    writer = server.key("acme", "writer", "--rps", "0")
    with _client(server, writer) as c:
        started = c.post("/v1/runs", json={"goal": "Track the certificate renewal"})
        assert started.status_code == 200, started.text
        run = started.json()
        assert run["status"] == "paused" and run["stop_reason"] == "need_approval"
        assert run["pending"]["tool"] == "create_task"
        assert run["pending"]["safe_args"]["title"] == "Renew the TLS certificate"
        # search_docs ran first: its result is untrusted and in the context
        assert run["tainted"] and run["observations"][0]["tool"] == "search_docs"
        assert "guide.md" in run["observations"][0]["content"]
        assert _tasks(env) == 0
        run_id, call_id = run["run_id"], run["pending"]["call_id"]

    # Sixteen approvals of the same call at once, spread over both worker processes.
    barrier = threading.Barrier(16)
    statuses: list[int] = []

    def approve() -> None:
        with _client(server, writer) as c:
            barrier.wait()
            reply = c.post(f"/v1/runs/{run_id}/approve", json={"call_id": call_id})
            statuses.append(reply.status_code)

    threads = [threading.Thread(target=approve) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 16
    assert _tasks(env) == 1

    with _client(server, writer) as c:
        done = c.get(f"/v1/runs/{run_id}").json()
        assert done["stop_reason"] == "done" and done["answer"] == "Done: the task was created."
        again = c.post(f"/v1/runs/{run_id}/approve", json={"call_id": call_id})
        assert again.status_code == 200 and _tasks(env) == 1
        late = c.post(f"/v1/runs/{run_id}/reject", json={"call_id": call_id})
        assert late.status_code == 409
        # the call must be named: an approval that does not say what it approves is refused
        assert c.post(f"/v1/runs/{run_id}/approve").status_code == 422
        assert c.post(f"/v1/runs/{run_id}/resume").json()["stop_reason"] == "done"

    admin = server.key("acme", "admin", "--rps", "0")
    with _client(server, admin) as c:
        rows = c.get("/v1/audit", params={"run_id": run_id}).json()["entries"]
    outcomes = sorted((r["tool"], r["outcome"], r["approval"]) for r in rows)
    assert outcomes == [
        ("create_task", "need_approval", "pending"),
        ("create_task", "ok", "approved"),
        ("search_docs", "ok", "not_required"),
    ]
    approved = next(r for r in rows if r["outcome"] == "ok" and r["tool"] == "create_task")
    assert approved["approver"].startswith("key:")


def test_roles_and_tenants_guard_runs(server: Server, env: Env) -> None:
    writer = server.key("acme", "writer", "--rps", "0")
    with _client(server, writer) as c:
        started = c.post("/v1/runs", json={"goal": "Track it"}).json()
        run_id, call = started["run_id"], {"call_id": started["pending"]["call_id"]}
    reader = server.key("acme", "reader", "--rps", "0")
    with _client(server, reader) as c:
        assert c.post("/v1/runs", json={"goal": "x"}).status_code == 403
        assert c.post(f"/v1/runs/{run_id}/approve", json=call).status_code == 403
        assert c.get(f"/v1/runs/{run_id}").status_code == 200
        assert c.get("/v1/audit").status_code == 403
    other = server.key("globex", "writer", "--rps", "0")
    with _client(server, other) as c:
        assert c.get(f"/v1/runs/{run_id}").status_code == 404
        assert c.post(f"/v1/runs/{run_id}/approve", json=call).status_code == 404
        body = c.post("/v1/runs", json={"goal": "x", "tenant": "acme"})
        assert body.status_code == 422
    with _client(server, writer) as c:
        rejected = c.post(f"/v1/runs/{run_id}/reject", json=call).json()
        assert rejected["stop_reason"] == "done"
        assert rejected["answer"] == "Done: the task was rejected."


def test_cli_audit_and_runs(server: Server, env: Env) -> None:
    audit = tether(env, "audit", "--tool", "create_task", "--json")
    assert audit.code == 0, audit.err
    lines = [line for line in audit.out.splitlines() if line.strip()]
    assert lines and all('"tool":"create_task"' in line for line in lines)
    table = tether(env, "audit", "--tenant", "acme", "--outcome", "need_approval", "--since", "1h")
    assert table.code == 0 and "need_approval" in table.out
    bad = tether(env, "audit", "--since", "yesterday-ish")
    assert bad.code != 0 and "--since" in bad.out + bad.err

    listed = tether(env, "runs", "list", "--tenant", "acme")
    assert listed.code == 0 and "done" in listed.out
    run_id = listed.out.split("run_")[1].split()[0]
    shown = tether(env, "runs", "show", f"run_{run_id}", "--tenant", "acme")
    assert shown.code == 0 and "stop" not in shown.err
    missing = tether(env, "runs", "show", "run_nope", "--tenant", "acme")
    assert missing.code != 0 and "no run" in missing.out + missing.err


def test_cli_start_and_approve_a_run(server: Server, env: Env) -> None:
    before = _tasks(env)
    started = tether(env, "runs", "start", "Track the renewal", "--tenant", "acme")
    assert started.code == 0, started.err
    assert "waiting for approval: create_task" in started.out
    run_id = started.out.split("run ", 1)[1].split(":", 1)[0]
    call_id = started.out.split(f"tether runs approve {run_id} ", 1)[1].split()[0]
    approved = tether(env, "runs", "approve", run_id, call_id, "--tenant", "acme", "--as", "lead")
    assert approved.code == 0, approved.err
    assert "the task was created" in approved.out
    twice = tether(env, "runs", "approve", run_id, call_id, "--tenant", "acme", "--as", "lead")
    assert twice.code == 0 and _tasks(env) == before + 1
    rows = tether(
        env, "audit", "--run", run_id, "--outcome", "ok", "--tool", "create_task", "--json"
    )
    assert rows.out.count('"approver":"lead"') == 1
