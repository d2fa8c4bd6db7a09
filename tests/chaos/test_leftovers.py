"""Issue 12, points 3(b) and 3(c): a petition ends when its main process exits, and no
process of its tree outlives it, however it hid (kept the pipe open, ``setsid``,
double fork, ``env -i``, ignoring SIGTERM). A real service, real processes.

Each leftover writes its PID to a file so the test can check it is gone, and kill it by
PID if it is not (the suite must leave nothing behind).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from orcha.service.cgroup_fs import unavailable
from tests.conftest import Env, Service, wait_for

#: A daemon that leaves every trace orcha could follow: it double-forks, calls setsid,
#: clears its environment (no token), and writes its PID to $1.
_DAEMON = (
    "(env -i /bin/sh -c 'setsid /bin/sh -c \"echo \\$\\$ > $0; exec sleep 30\" &' {pidfile} &)"
)
#: A leftover that ignores SIGTERM (only SIGKILL stops it).
_STUBBORN = (
    "(setsid /bin/sh -c 'trap \"\" TERM; echo $$ > {pidfile}; while :; do sleep 0.1; done' &)"
)


def _pid_from(path: Path, timeout: float = 10.0) -> int:
    assert wait_for(lambda: path.exists() and path.read_text().strip(), timeout), (
        f"{path} was never written"
    )
    return int(path.read_text().strip())


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _record(env: Env, petition_id: str) -> dict:  # type: ignore[type-arg]
    done = env.run("status", "--json", petition_id)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["petitions"][0]  # type: ignore[no-any-return]


@pytest.fixture(params=["none", "cgroup"])
def fast(env: Env, request: pytest.FixtureRequest) -> Service:
    """A service with a short grace period (the tests wait for it), once per isolation
    (a cgroup each where this machine allows it; subreaper and tracking otherwise)."""
    isolation = request.param
    if isolation == "cgroup" and (why := unavailable()):
        pytest.skip(why)
    config = env.root / "config.yaml"
    config.write_text(f"isolation: {isolation}\n")
    return env.serve("--max-running", "4", "--grace", "1", env={"ORCHA_CONFIG": str(config)})


def test_a_child_holding_the_pipe_does_not_hold_the_petition(env: Env, fast: Service) -> None:
    pidfile = env.root / "sleep.pid"
    script = f"(setsid sh -c 'echo $$ > {pidfile}; exec sleep 60' &); echo done"
    started = time.monotonic()
    done = env.run("run", "holder", "--", "sh", "-c", script, timeout=30)
    took = time.monotonic() - started
    pid = _pid_from(pidfile)
    try:
        assert done.returncode == 0, done.stderr
        assert done.stdout == "done\n"
        # (A poll deadline: the sleep would otherwise run 60 s.)
        assert wait_for(lambda: _gone(pid), 30), "the setsid'd sleep is still running"
        record = _record(env, "holder")
        assert record["state"] == "SUCCEEDED"
        assert record["leftovers"] == 1  # still running when its main process ended
        ran = record["ended"] - record["started"]
        # By the service's own records; held by its leftover, it would run 60 s: half of
        # that is far beyond what a loaded machine adds to running ``echo``.
        assert ran < 30, f"the petition ran {ran:.1f} s (its leftover sleeps 60 s)"
        note = env.run("status", "holder").stdout
        assert "stopped 1 process(es) it left running" in note
        print(f"ran {ran:.2f} s ({took:.2f} s for the client), leftovers {record['leftovers']}")
    finally:
        _kill(pid)


def test_an_env_clearing_double_forked_daemon_is_stopped_when_the_petition_ends(
    env: Env, fast: Service
) -> None:
    pidfile = env.root / "daemon.pid"
    done = env.run("run", "d1", "--", "sh", "-c", _DAEMON.format(pidfile=pidfile))
    pid = _pid_from(pidfile)
    try:
        assert done.returncode == 0, done.stderr
        assert wait_for(lambda: _gone(pid), 5), "the env -i daemon is still running"
        assert _record(env, "d1")["leftovers"] >= 1
    finally:
        _kill(pid)


def test_cancel_force_finds_an_env_clearing_daemon(env: Env, fast: Service) -> None:
    pidfile = env.root / "daemon.pid"
    script = _DAEMON.format(pidfile=pidfile) + "; exec sleep 30"
    client = env.popen("run", "d2", "--", "sh", "-c", script)
    pid = _pid_from(pidfile)
    try:
        done = env.run("cancel", "--force", "d2")
        assert done.returncode == 0, done.stderr
        assert wait_for(lambda: _gone(pid), 5), "cancel --force left the env -i daemon running"
        client.wait(10)
        assert _record(env, "d2")["state"] == "CANCELLED"
    finally:
        _kill(pid)
        client.kill()
        client.communicate()


def test_a_stopping_service_stops_an_env_clearing_daemon(env: Env, fast: Service) -> None:
    pidfile = env.root / "daemon.pid"
    script = _DAEMON.format(pidfile=pidfile) + "; exec sleep 30"
    client = env.popen("run", "d3", "--", "sh", "-c", script)
    pid = _pid_from(pidfile)
    try:
        assert fast.stop(timeout=15) == 0
        assert wait_for(lambda: _gone(pid), 5), "the stopped service left the daemon running"
    finally:
        _kill(pid)
        client.kill()
        client.communicate()


def test_a_leftover_ignoring_sigterm_is_killed_after_the_grace_period(
    env: Env, fast: Service
) -> None:
    pidfile = env.root / "stubborn.pid"
    script = _STUBBORN.format(pidfile=pidfile) + f"; while [ ! -s {pidfile} ]; do sleep 0.05; done"
    done = env.run("run", "s1", "--", "sh", "-c", script, timeout=30)
    pid = _pid_from(pidfile)
    try:
        assert done.returncode == 0, done.stderr
        assert _gone(pid), "the TERM-ignoring leftover outlived its petition"
        assert _record(env, "s1")["leftovers"] >= 1
    finally:
        _kill(pid)
