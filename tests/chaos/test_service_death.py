"""Point 3a: when the service dies, its petitions' trees die with it.

A real ``orcha serve`` (grace 1 s) runs petitions whose trees hold every kind of process
that escapes a naive stop: a ``setsid``'d daemon, a double-forked daemon that cleared its
environment with ``env -i`` (so no petition token finds it), and a child that ignores
SIGTERM. Then the service is killed (``kill -9``), or its guard is, or the guard gets a
plain SIGTERM; every process of those trees must be gone within the grace period plus a
few seconds, found with psutil and polled against deadlines.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import Env, Service, wait_for
from tests.integration.clients import WAIT, describe, gone, read_pid

GRACE = 1.0
#: Bound for the trees to be gone once the service has died: the grace period, the
#: guard's noticing, and slack for a loaded machine. A poll deadline: what it tells
#: apart is trees left to run their 300 s sleeps, so the slack can be generous.
GONE_WITHIN = GRACE + WAIT

#: Each process writes its PID to ``<dir>/<name>.pid`` (atomically) and sleeps.
ROLES = ("root", "setsid", "envi", "noterm")


def tree_script(d: Path, with_envi: bool = True, quiet: bool = False) -> str:
    def record(name: str) -> str:
        return f"echo $$ > {d}/{name}.tmp; mv {d}/{name}.tmp {d}/{name}.pid"

    # The daemons keep the petition's output pipes open, unless ``quiet``.
    away = " >/dev/null 2>&1" if quiet else ""
    # The env -i daemon: a subshell that exits at once (a double fork), whose child clears
    # its whole environment (the petition's token with it) and runs on.
    envi = f"(env -i /bin/sh -c '{record('envi')}; exec sleep 300'{away} &)\n"
    return (
        f"(setsid /bin/sh -c '{record('setsid')}; exec sleep 300'{away} &)\n"
        + (envi if with_envi else "")
        + f"/bin/sh -c 'trap \"\" TERM; {record('noterm')}; exec sleep 300' &\n"
        + f"{record('root')}\nsleep 300\n"
    )


def start_trees(
    env: Env, root: Path, count: int, with_envi: bool = True, quiet: bool = False
) -> list[int]:
    """Run ``count`` tree petitions, detached; once every process of them is up, their
    PIDs."""
    pids = []
    for n in range(count):
        d = root / f"t{n}"
        d.mkdir()
        script = tree_script(d, with_envi, quiet)
        done = env.run("run", f"tree{n}", "--detach", "--", "sh", "-c", script, timeout=WAIT)
        assert done.returncode == 0, done.stderr
        roles = ROLES if with_envi else tuple(r for r in ROLES if r != "envi")
        pids += [read_pid(d / f"{role}.pid") for role in roles]
    assert not [p for p in pids if gone(p)]
    return pids


@pytest.fixture
def pids() -> Iterator[list[int]]:
    """PIDs the test started (through its petitions); any left at the end are killed."""
    started: list[int] = []
    yield started
    for pid in started:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def all_gone(pids: list[int]) -> bool:
    return all(gone(p) for p in pids)


def left(pids: list[int]) -> list[tuple[int, object]]:
    procs = []
    for p in pids:
        with contextlib.suppress(psutil.Error):
            if not gone(p):
                procs.append(psutil.Process(p))
    return describe(procs)


def serve(env: Env) -> Service:
    service = env.serve("--max-running", "4", "--grace", str(GRACE))
    assert service.guarded, service.banner
    return service


def test_kill_9_of_the_service_stops_every_tree_within_the_grace_period(
    env: Env, tmp_path: Path, pids: list[int]
) -> None:
    service = serve(env)
    pids += start_trees(env, tmp_path, 2)
    guard = psutil.Process(service.pid)
    # The escaped daemons are the guard's now (it is their subreaper), not init's.
    orphans = {c.pid for c in guard.children()}
    assert orphans >= {read_pid(tmp_path / f"t{n}" / "envi.pid") for n in range(2)}

    start = time.monotonic()
    os.kill(service.service_pid, signal.SIGKILL)
    assert wait_for(lambda: all_gone(pids), GONE_WITHIN), f"left running: {left(pids)}"
    took = time.monotonic() - start
    assert service.proc is not None
    assert service.proc.wait(WAIT) == 128 + signal.SIGKILL  # the guard exits, as a killed service
    print(f"\n{len(pids)} processes of 2 trees gone {took:.2f} s after kill -9 (grace {GRACE} s)")
    assert "was killed by signal 9" in service.stderr, service.stderr
    # (Each root shell has its own ``sleep`` too.)
    stopped = re.search(r"stopped (\d+) process\(es\) the service left running", service.stderr)
    assert stopped and int(stopped.group(1)) >= len(pids), service.stderr

    # The next service finds them INTERRUPTED, with nothing left to stop.
    env.serve("--grace", str(GRACE))
    states = env.run("status", "--json", timeout=WAIT)
    assert states.stdout.count('"INTERRUPTED"') == 2, states.stdout


def test_kill_9_of_the_guard_stops_the_service_and_its_trees(
    env: Env, tmp_path: Path, pids: list[int]
) -> None:
    # No env -i daemon here: the guard dies, and with it the only holder of that one (a
    # documented limit; its siblings are found by the petition's token).
    service = serve(env)
    pids += start_trees(env, tmp_path, 2, with_envi=False)
    service_pid = service.service_pid

    start = time.monotonic()
    assert service.proc is not None
    service.proc.kill()
    assert service.proc.wait(WAIT) == -signal.SIGKILL
    # PR_SET_PDEATHSIG: the service gets SIGTERM and stops as on ``orcha stop``.
    assert wait_for(lambda: gone(service_pid), GONE_WITHIN + 2), "the service outlived its guard"
    assert wait_for(lambda: all_gone(pids), GONE_WITHIN), f"left running: {left(pids)}"
    took = time.monotonic() - start
    print(f"\nservice and {len(pids)} processes gone {took:.2f} s after kill -9 of the guard")
    assert "stopped (exit code 0)" in service.stderr, service.stderr


def test_sigterm_to_the_guard_stops_everything_and_exits_0(
    env: Env, tmp_path: Path, pids: list[int]
) -> None:
    # Quiet daemons: one that holds the petition's output pipe keeps the petition (and so
    # a clean stop) waiting for it until point 3b's change; then the guard kills the
    # service grace + GUARD_STOP_MARGIN after the signal, and sweeps.
    service = serve(env)
    pids += start_trees(env, tmp_path, 2, quiet=True)
    start = time.monotonic()
    service.signal(signal.SIGTERM)
    assert service.proc is not None
    assert service.proc.wait(WAIT) == 0, service.stderr
    took = time.monotonic() - start
    assert all_gone(pids), f"left running: {left(pids)}"
    print(f"\nclean stop with {len(pids)} processes in 2 trees took {took:.2f} s")
    states = env.run("status", "--json", timeout=WAIT)
    assert states.returncode == 200  # no service: the guard went with it


def test_ctrl_c_in_a_terminal_reaches_the_service_once(env: Env, pids: list[int]) -> None:
    # A terminal sends SIGINT to its foreground process group: here the guard's (setsid
    # gives it one of its own, as a shell's job has). The service has a group of its own,
    # so it gets the signal once, forwarded, and stops cleanly; twice would force (exit 1).
    service = Service(env, ["--grace", str(GRACE)], {}, ("serve",))
    service.prefix = ("setsid",)
    env.services.append(service)
    service.start()
    assert service.guarded and os.getpgid(service.pid) == service.pid
    assert os.getpgid(service.service_pid) == service.service_pid
    done = env.run("run", "sleeper", "--detach", "--", "sleep", "300", timeout=WAIT)
    assert done.returncode == 0, done.stderr
    os.killpg(service.pid, signal.SIGINT)
    assert service.proc is not None
    assert service.proc.wait(WAIT) == 0, service.stderr
    assert service.stderr.count("stopping: cancelling 1 running") == 1, service.stderr
