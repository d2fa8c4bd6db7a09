"""A petition never runs twice (issue 12, point 2): petitions that kill their own service
as soon as they start each ran exactly once and are INTERRUPTED after the restarts, never
queued again; a kind that calls ``os._exit`` (killing the service from inside) does not
put the service in a restart loop; and a petition that asked for ``--retries`` *is* run
again after a crash, the interrupted run counting as an attempt.

A petition's token starts with its service's PID (the guard, if any, is above the
service; the petition's parent is not always the service), so ``kill -9`` of it
in a ``shell`` petition is a crash of the service at the moment its petition has just
started; the first test checks that this still holds.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from orcha.errors import LostServiceError
from tests.chaos.conftest import crash, service_pid, start_unready
from tests.conftest import Env, Service, wait_for

pytestmark = pytest.mark.timeout(240)

SERVE = ("--max-running", "1", "--grace", "1")
#: In a petition's shell: its service's PID (the first part of its token).
SERVICE = "${ORCHA_PETITION_TOKEN%%.*}"
PETITIONS = 20  # each one service life: 20 restarts show it as well as 40, in half the time
LIFE = 30.0  # bound for one service life: start, restore, run a petition that kills it


def ran(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def rows(env: Env) -> dict[str, dict[str, Any]]:
    result = env.run("status", "--json", timeout=30)
    assert result.returncode == 0, result.stderr
    return {row["id"]: row for row in json.loads(result.stdout)["petitions"]}


def died(service: Service) -> None:
    """Wait for ``orcha serve`` to exit, having been killed by one of its petitions."""
    assert service.proc is not None
    assert wait_for(lambda: service.proc.poll() is not None, LIFE, 0.02), (  # type: ignore[union-attr]
        f"the service outlived its self-killing petition: {service.stderr}"
    )


def restart_until(env: Env, done: Callable[[], bool], lives: int) -> int:
    """Start services one after the other (each killed by the petition it runs) until
    ``done()``; returns how many were started."""
    for life in range(1, lives + 1):
        if done():
            return life - 1
        died(start_unready(env, *SERVE))
    assert done(), f"not done after {lives} restarts"
    return lives


def test_self_killing_petitions_each_ran_once_and_end_interrupted(
    env: Env, tmp_path: Path, sweep: Callable[[], list[psutil.Process]]
) -> None:
    out = tmp_path / "ran.txt"
    service = env.serve(*SERVE)
    probe = env.run("run", "probe", "--", "sh", "-c", f"echo {SERVICE}", timeout=30)
    assert probe.stdout.strip() == str(service_pid(service)), "a token's prefix changed"
    assert env.run("pause", "--all", timeout=30).returncode == 0  # queue them all first
    ids = [f"k{i:02d}" for i in range(PETITIONS)]
    for petition_id in ids:
        argv = ["sh", "-c", f"echo {petition_id} >> {out}; kill -9 {SERVICE}"]
        done = env.run("run", petition_id, "--detach", "--", *argv, timeout=30)
        assert done.returncode == 0, done.stderr
    # The first petition may kill the service before it answers (206).
    assert env.run("resume", "--all", timeout=30).returncode in (0, 206)
    died(service)  # the first one killed it

    started = time.monotonic()
    restart_until(env, lambda: len(ran(out)) >= PETITIONS, PETITIONS + 5)
    last = env.serve(*SERVE)  # nothing left to run: this one stays up
    records = rows(env)
    assert sorted(ran(out)) == ids  # each exactly once
    states = {i: records[i]["state"] for i in ids}
    assert states == dict.fromkeys(ids, "INTERRUPTED")
    assert all(records[i]["message"] for i in ids)
    assert last.proc is not None and last.proc.poll() is None
    ours = (last.pid, service_pid(last))  # its guard, itself and its process spawner:
    assert not [p for p in sweep() if p.pid not in ours and p.ppid() != ours[1]]
    print(f"{PETITIONS} self-killing petitions, restarts took {time.monotonic() - started:.1f}s")


def test_an_interrupted_petition_with_retries_runs_again_and_the_attempt_counts(
    env: Env, tmp_path: Path, sweep: Callable[[], list[psutil.Process]]
) -> None:
    out, first = tmp_path / "ran.txt", tmp_path / "first-attempt-done"
    service = env.serve(*SERVE)
    # Kills its service on its first attempt only; then succeeds.
    script = f"echo again >> {out}; [ -e {first} ] || {{ touch {first}; kill -9 {SERVICE}; }}"
    done = env.run("run", "again", "--retries", "1", "--detach", "--", "sh", "-c", script)
    assert done.returncode in (0, 206), done.stderr  # 206: it killed the service first
    # Kills its service on every attempt: three attempts, then INTERRUPTED for good.
    thrice = f"echo thrice >> {out}; kill -9 {SERVICE}"
    died(service)
    service = env.serve(*SERVE)
    assert wait_for(lambda: rows(env)["again"]["state"] == "SUCCEEDED", 30, 0.1), rows(env)
    row = rows(env)["again"]
    assert (row["attempt"], ran(out)) == (2, ["again", "again"]), row
    done = env.run("run", "thrice", "--retries", "2", "--detach", "--", "sh", "-c", thrice)
    assert done.returncode in (0, 206), done.stderr  # 206: it killed the service first
    died(service)
    restart_until(env, lambda: ran(out).count("thrice") >= 3, 5)
    env.serve(*SERVE)
    row = rows(env)["thrice"]
    assert (row["state"], row["attempt"]) == ("INTERRUPTED", 3), row
    assert ran(out).count("thrice") == 3


EXIT_PLUGIN = '''
"""A kind whose action ends the service's process (os._exit), as a broken plugin might."""
import os

from orcha.kinds import Kind
from orcha.plugins import BasePlugin


class ExitKind(Kind):
    name = "exittest"
    help = "Appends params.id to params.out, then calls os._exit(3)."

    def run(self, ctx):
        with open(ctx.params["out"], "a") as f:
            f.write(ctx.params["id"] + "\\n")
        os._exit(3)


class ExitPlugin(BasePlugin):
    name = "orchatest_exit"

    def kinds(self):
        return [ExitKind()]


plugin = ExitPlugin
'''


def test_a_kind_that_calls_os_exit_does_not_put_the_service_in_a_restart_loop(
    env: Env, tmp_path: Path, client: Callable[[], Any], sweep: Callable[[], list[psutil.Process]]
) -> None:
    env.add_plugin("orchatest_exit", EXIT_PLUGIN)
    out = tmp_path / "ran.txt"
    service = env.serve(*SERVE)
    with client() as c, contextlib.suppress(LostServiceError):
        # The service may die before it answers: the petition starts at once.
        c.submit("bye", kind="exittest", params={"id": "bye", "out": str(out)}, detach=True)
    died(service)
    assert ran(out) == ["bye"]
    for life in range(2):  # each restart stays up and does not run it again
        service = env.serve(*SERVE)
        assert rows(env)["bye"]["state"] == "INTERRUPTED"
        assert env.run("run", f"alive{life}", "--", "true", timeout=30).returncode == 0
        assert service.proc is not None and service.proc.poll() is None
        assert service.stop() == 0
    assert ran(out) == ["bye"]


def test_crash_helper_kills_the_service_not_only_its_guard(env: Env) -> None:
    """The helper the chaos tests use to emulate a crash leaves no orcha serve behind."""
    service = env.serve(*SERVE)
    pid = service_pid(service)
    crash(service)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
