"""Shared bits for the benchmark scripts: data location, machine description, output."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TETHER_SHARED_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "benchmarks" / "out"


def require(path: Path) -> Path:
    if not path.exists():
        sys.exit(f"skipped: {path} is absent (public evaluation data lives in ../shared/data)")
    return path


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write(name: str, payload: dict[str, object]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def tether_env(work: Path, **extra: str) -> dict[str, str]:
    """The environment of a `tether` process whose every state file lives under `work`
    (no TETHER_* setting inherited from the caller, no config file)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("TETHER_") and k != "VIRTUAL_ENV"
    }
    env.update(
        TETHER_STORE=f"sqlite:///{work / 't.db'}",
        TETHER_KEYS_DB=str(work / "keys.db"),
        TETHER_ANSWERS_DB=str(work / "answers.db"),
        TETHER_UPLOADS_DB=str(work / "uploads.db"),
        TETHER_AGENT_DB=str(work / "agent.db"),
        TETHER_MEMORY_DB=str(work / "memory.db"),
        TETHER_TRACES_DB=str(work / "traces.db"),
        TETHER_USAGE_DB=str(work / "usage.db"),
        TETHER_RESPONSE_CACHE=str(work / "cache.db"),
        TETHER_EMBED_CACHE="off",
        TETHER_CONFIG=str(work / "none.toml"),
    )
    env.update(extra)
    return env


def gateway_env(work: Path, upstream_port: int, model: str = "m") -> dict[str, str]:
    """`tether_env` for the gateway in front of a mock upstream, with the response cache
    and a budget on (the mock's model has no price, so the limit is in tokens: every
    call is still reserved and settled in the usage ledger)."""
    return tether_env(
        work,
        TETHER_GATEWAY_MODELS=json.dumps(
            {model: f"openai-compat:http://127.0.0.1:{upstream_port}/v1#{model}"}
        ),
        TETHER_RESPONSE_CACHE_TTL="3600",
        TETHER_BUDGET_REQUEST_TOKENS="100000",
    )


def create_key(env: dict[str, str], tenant: str) -> str:
    """A new reader key without a rate limit, from `tether keys create`."""
    made = subprocess.run(
        ["uv", "run", "tether", "keys", "create", "--tenant", tenant, "--rps", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    key = made.stdout.strip()
    if made.returncode != 0 or not key or len(key.split()) != 1:
        raise RuntimeError(f"`tether keys create` failed ({made.returncode}): {made.stderr[-500:]}")
    return key
