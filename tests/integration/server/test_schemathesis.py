"""schemathesis against the live server's OpenAPI spec: whatever it generates, valid or
not, no request gets a 5xx, and every 4xx has a JSON error body."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agent_upstream import agent_upstream
from tests.support.cli import REPO, make_env, tether
from tests.support.server import Server, serving
from tether.testing import MockProvider

DOCS = REPO / "tests" / "fixtures" / "docs"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("fuzz")
    with MockProvider(models=("m",)) as mock, agent_upstream() as agent:
        env = make_env(
            root,
            TETHER_GATEWAY_MODELS=json.dumps({"m": f"openai-compat:{mock.base_url}#m"}),
            # Agent runs are fuzzed for real, against a scripted tool-calling upstream.
            TETHER_AGENT_MODEL=f"openai-compat:{agent.base_url}#scripted",
            TETHER_AGENT_MAX_COST_USD="0",
            # Small limits keep generated uploads quick to reject.
            TETHER_PARSE_SECONDS="10",
        )
        assert tether(env, "ingest", str(DOCS / "guide.md"), "--tenant", "acme").code == 0
        with serving(env) as running:
            yield running


@pytest.fixture(scope="module")
def admin_key(server: Server) -> str:
    return server.key("acme", "admin", "--rps", "0")


def test_no_server_errors_and_json_error_bodies(server: Server, admin_key: str) -> None:
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            server.url + "/openapi.json",
            "--header",
            f"Authorization: Bearer {admin_key}",
            "--checks",
            "not_a_server_error,json_error_body",
            "--max-examples",
            "30",
            "--seed",
            "7",
            "--request-timeout",
            "30",
            # Path parameters with `:path` converters make hypothesis discard many
            # candidates; that is the generator's limit, not a finding about the API.
            "--suppress-health-check",
            "filter_too_much",
        ],
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.support.st_hooks"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    # It really exercised the API: every documented operation was tested.
    assert "/v1/chat/completions" in run.stdout and "/v1/documents" in run.stdout
    assert "Tested: 19" in run.stdout, run.stdout[-3000:]
