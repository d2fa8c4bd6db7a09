"""Plugins cannot hurt the service (issue 12, point 8), the hostile versions:
``tests/integration/test_plugin_faults.py`` shows one misbehaving petition of each sort
and 20 ``orcha health`` calls one after the other; here 20 calls come at once against a
health check that never returns, and 40 misbehaving petitions (``KeyboardInterrupt``,
exit codes -1, 300 and 2**63) run side by side with good ones. The service's threads stay
bounded (psutil, on the serving process), every bad petition is FAILED with its reason,
the records survive a restart, and the service keeps serving and stops on SIGTERM."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import psutil
import pytest

from tests.chaos.conftest import service_pid
from tests.conftest import Env, wait_for
from tests.integration.test_plugin_faults import FAULT_PLUGIN

pytestmark = pytest.mark.timeout(120)

MESSAGES = {
    "interrupt": "petition {id} failed: KeyboardInterrupt: a plugin typed ^C",
    "negative": "exit code -1 is out of range 0-255",
    "over": "exit code 300 is out of range 0-255",
    "huge": f"exit code {2**63} is out of range 0-255",
}


@pytest.fixture
def fenv(env: Env) -> Env:
    """The environment with the fault plugin (its kinds and its hung health check)."""
    env.add_plugin("orchatest_faults", FAULT_PLUGIN)
    return env


def test_twenty_health_calls_at_once_against_a_hung_check_cost_bounded_threads(
    fenv: Env, sweep: Callable[[], list[psutil.Process]]
) -> None:
    service = fenv.serve("--grace", "1")
    proc = psutil.Process(service_pid(service))
    # Warm up: what starts lazily (the writer, the first health check, which hangs) has
    # started before the count is taken.
    assert fenv.run("run", "warm", "--", "true", timeout=30).returncode == 0
    assert fenv.run("health", timeout=30).returncode == 1
    before = proc.num_threads()
    argv = [sys.executable, "-m", "orcha", "health"]
    pipes: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    calls = [subprocess.Popen(argv, env=fenv.vars, **pipes) for _ in range(20)]
    results = [(call.wait(60), *call.communicate()) for call in calls]
    for code, out, err in results:
        assert code == 1, (code, out, err)
        assert "plugin orchatest_faults: UNHEALTHY" in out, out
        assert "Traceback" not in err, err
    # Once the calls are answered, their sessions end: the one hung check stays, and no
    # call started another.
    assert wait_for(lambda: proc.num_threads() <= before + 1, 10), (before, proc.num_threads())
    print(f"service threads: {before} before, {proc.num_threads()} after 20 concurrent calls")
    ok = fenv.run("run", "still", "--", "echo", "still serving", timeout=30)
    assert (ok.returncode, ok.stdout) == (0, "still serving\n"), ok.stderr
    assert service.stop() == 0


def test_forty_misbehaving_petitions_at_once_fail_with_their_reasons_and_are_kept(
    fenv: Env, client: Callable[[], Any], sweep: Callable[[], list[psutil.Process]]
) -> None:
    service = fenv.serve("--max-running", "8", "--grace", "1")
    ids = {f"{what}{i}": what for what in MESSAGES for i in range(10)}
    good = [f"ok{i}" for i in range(10)]
    with client() as c:
        for petition_id, what in ids.items():
            c.submit(petition_id, kind="faulttest", params={"what": what}, detach=True)
        for petition_id in good:
            c.submit(petition_id, kind="faulttest", params={"what": "ok"}, detach=True)
        ended = c.wait_summaries([*ids, *good])
    for petition_id, what in ids.items():
        summary = ended[petition_id]
        expected = MESSAGES[what].format(id=petition_id)
        assert (summary["state"], summary["code"], summary["message"]) == (
            "FAILED", 1, expected,
        ), summary  # fmt: skip
    assert {ended[i]["state"] for i in good} == {"SUCCEEDED"}
    ok = fenv.run("run", "still", "--", "echo", "still serving", timeout=30)
    assert (ok.returncode, ok.stdout) == (0, "still serving\n"), ok.stderr
    assert service.stop(timeout=30) == 0  # the records' writer lived on: a clean stop
    # What was recorded survives the restart, codes mapped into what the records hold.
    fenv.serve("--grace", "1")
    with client() as c:
        rows = {r["id"]: r for r in c.status([*ids, *good])}
    assert {rows[i]["state"] for i in ids} == {"FAILED"}
    assert {rows[i]["code"] for i in ids} == {1}
    assert {rows[i]["state"] for i in good} == {"SUCCEEDED"}
