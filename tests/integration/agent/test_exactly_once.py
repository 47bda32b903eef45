"""A write's side effect happens exactly once under duplicated and concurrent approvals,
retries, and a crash between the side effect and its bookkeeping."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from tests.support.agent import TASK, calls, final, rig

REPO = Path(__file__).resolve().parents[3]


async def test_concurrent_duplicate_approvals_in_one_process(tmp_path: Path) -> None:
    r = rig(tmp_path, [calls(("create_task", TASK)), final("created")], delay=0.01)
    paused = await r.agent.start("x", tenant="t", principal="p")
    results = await asyncio.gather(
        *(
            r.agent.decide("t", paused.run_id, "1.1", approve=True, principal=f"a{i}")
            for i in range(20)
        )
    )
    assert r.tasks.count() == 1
    assert sum(res.stop_reason == "done" for res in results) >= 1
    executed = r.audit.query(tool="create_task", outcome="ok")
    assert len(executed) == 1
    # every later approval is harmless and sees the finished run
    again = await r.agent.decide("t", paused.run_id, "1.1", approve=True, principal="late")
    assert again.stop_reason == "done" and r.tasks.count() == 1


def test_concurrent_approvals_from_separate_connections(tmp_path: Path) -> None:
    """Eight threads, each with its own SQLite connections and event loop, approve the
    same call at the same moment."""
    first = rig(tmp_path, [calls(("create_task", TASK))])
    paused = asyncio.run(first.agent.start("x", tenant="t", principal="p"))
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def approve(i: int) -> None:
        mine = rig(tmp_path, responder=lambda _: final("created"))
        try:
            barrier.wait()
            asyncio.run(
                mine.agent.decide("t", paused.run_id, "1.1", approve=True, principal=f"a{i}")
            )
        except BaseException as exc:  # collected: a thread's failure must fail the test
            errors.append(exc)
        finally:
            mine.close()

    threads = [threading.Thread(target=approve, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert first.tasks.count() == 1
    assert len(first.audit.query(tool="create_task", outcome="ok")) == 1
    state = first.runs.load("t", paused.run_id)
    assert state.stop_reason == "done"


_CRASH_IN_TOOL = """
import asyncio, sys
from pathlib import Path
from pydantic import BaseModel
from tests.support.agent import TASK, calls, final, rig, crash_now
from tether.tools.registry import ToolContext, tool
from tether.tools.tasks import ExtractedTask, TaskStore

root = Path(sys.argv[1])
tasks = TaskStore(root / "agent.db")

class Made(BaseModel):
    task_id: str

@tool(kind="write", requires_approval=True, name="make")
async def make(args: ExtractedTask, ctx: ToolContext) -> Made:
    '''Create a task, then die before the call is marked done.'''
    task, _ = tasks.create(ctx.tenant, args, idempotency_key=ctx.idempotency_key,
                           principal=ctx.principal, run_id=ctx.run_id)
    if not (root / "crashed-once").exists():
        (root / "crashed-once").write_text("x")
        crash_now()
    return Made(task_id=task.task_id)

script = [calls(("make", TASK))] if sys.argv[2] == "start" else [final("created")]
r = rig(root, script, extra_tools=[make], stale_after_s=0.2)
if sys.argv[2] == "start":
    print(asyncio.run(r.agent.start("x", tenant="t", principal="p")).run_id)
else:
    asyncio.run(r.agent.decide("t", sys.argv[3], "1.1", approve=True, principal="boss"))
"""


def _child(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(_CRASH_IN_TOOL))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )


def test_crash_after_the_side_effect_does_not_repeat_it(tmp_path: Path) -> None:
    started = _child(tmp_path, "start")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip().splitlines()[-1]

    crashed = _child(tmp_path, "approve", run_id)
    assert crashed.returncode == 17, crashed.stderr  # died inside the tool, after the insert

    r = rig(tmp_path, responder=lambda _: final("created"), stale_after_s=0.2)

    state = r.runs.load("t", run_id)
    assert (
        state.pending is not None and r.runs.call_status(run_id, state.pending.call_id) == "running"
    )
    # the dead worker's lease and claim go stale; a resume re-executes with the same key
    time.sleep(0.3)
    resumed = _child(tmp_path, "approve", run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert r.tasks.count() == 1
    assert r.runs.attempts(run_id, state.pending.call_id) == 2
    assert r.runs.load("t", run_id).stop_reason == "done"


async def test_model_crash_mid_run_resumes_without_redoing_steps(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, sys
            from pathlib import Path
            from tests.support.agent import calls, rig, crash_now

            def respond(request):
                if len(r.model.requests) == 3:
                    crash_now()
                return calls(("lookup", {"query": f"q{len(r.model.requests)}"}))

            r = rig(Path(sys.argv[1]), responder=respond, stale_after_s=0.2)
            asyncio.run(r.agent.start("x", tenant="t", principal="p", run_id="run-crash"))
            """
        )
    )
    child = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 17, child.stderr
    r = rig(tmp_path, responder=lambda _: final("finished"), stale_after_s=0.2)
    before = r.runs.load("t", "run-crash")
    assert before.steps == 2 and before.status == "running"
    await asyncio.sleep(0.3)
    result = await r.agent.resume("t", "run-crash")
    assert result.stop_reason == "done" and result.answer == "finished"
    assert result.steps == 3
    # the two lookups before the crash ran once each; the resumed run did not redo them
    assert [e.call_id for e in reversed(r.audit.query(tool="lookup"))] == ["1.1", "2.1"]


async def test_a_live_lease_keeps_a_second_worker_out(tmp_path: Path) -> None:
    from tether.errors import RunConflict

    r = rig(tmp_path, [calls(("create_task", TASK))])
    paused = await r.agent.start("x", tenant="t", principal="p")
    assert r.runs.acquire("t", paused.run_id, "someone-else")
    try:
        await r.agent.resume("t", paused.run_id)
    except RunConflict:
        pass
    else:
        raise AssertionError("a second worker drove a leased run")
