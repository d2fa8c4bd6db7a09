"""Crash safety: what a service that dies (SIGKILL) or stops (SIGTERM) leaves, and what the
next ``orcha serve`` at the same address makes of it.

Every test runs real services in the Env's private directories and sends real signals.
Petition processes orphaned by a killed service are not children of pytest, so the
``sweep`` fixture kills, after each test, every process carrying this Env's state dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Env, Service, wait_for
from tests.integration.clients import WAIT, Client, describe, gone, new_id, read_pid

GRACE = "1"  # --grace of every service here: a TERM-ignoring grandchild costs 1 s
SERVE = ("--max-running", "1", "--grace", GRACE)
STOP_WAIT = 10.0  # bound for a stopped tree to be gone

# (name, priority) in arrival order; they must run lowest priority first, then by arrival.
QUEUED = [("p5a", 5), ("p1a", 1), ("p5b", 5), ("p0", 0), ("p1b", 1)]
EXPECTED_ORDER = ["p0", "p1a", "p1b", "p5a", "p5b"]


# -- helpers ---------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def sweep(env: Env) -> Iterator[None]:
    """After the test, kill every process (services, clients, petitions and their orphaned
    grandchildren) whose environment names this Env's state directory."""
    yield
    me = os.getpid()
    wanted = str(env.state)
    found = []
    for proc in psutil.process_iter(["uids"]):
        try:
            if proc.pid == me or proc.info["uids"].real != os.getuid():
                continue
            if proc.environ().get("ORCHA_STATE_DIR") == wanted:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(found, timeout=5)


def kill9(service: Service) -> None:
    """SIGKILL the service process alone and wait for ``orcha serve`` to exit: its guard,
    once it has stopped what the service left running, exits 128+9 (without a guard,
    ``ORCHA_NO_GUARD=1``, the petitions are left running)."""
    code = service.kill_service(WAIT)
    assert code == (128 + signal.SIGKILL if service.guarded else -signal.SIGKILL), code


def records(env: Env, *ids: str) -> list[dict[str, Any]]:
    """``orcha status --json`` rows (all records if no IDs are given)."""
    result = env.run("status", "--json", *ids, timeout=WAIT)
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)["petitions"]
    return rows


def saved_states(env: Env, *ids: str) -> list[str | None]:
    """The state each of ``ids`` has in the database as committed (what a crash keeps),
    read through a connection of the test's own."""
    uri = f"file:{env.state / 'orcha.db'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        query = "SELECT state FROM petitions WHERE id = ? ORDER BY seq DESC LIMIT 1"
        rows = [db.execute(query, (petition_id,)).fetchone() for petition_id in ids]
    return [row[0] if row else None for row in rows]


def by_id(env: Env, *ids: str) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in records(env, *ids)}


def wait_state(env: Env, petition_id: str, state: str, timeout: float = WAIT) -> None:
    ok = wait_for(lambda: by_id(env, petition_id)[petition_id]["state"] == state, timeout, 0.1)
    assert ok, f"{petition_id} not {state} within {timeout}s: {by_id(env, petition_id)}"


def petition_processes(env: Env, petition_id: str) -> list[psutil.Process]:
    """Live processes of petition ``petition_id`` of this Env (not of a concurrent suite)."""
    found = []
    for proc in psutil.process_iter(["uids", "status"]):
        try:
            if proc.info["uids"].real != os.getuid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            environ = proc.environ()
        except (psutil.Error, OSError):
            continue
        if (environ.get("ORCHA_PETITION_ID"), environ.get("ORCHA_STATE_DIR")) == (
            petition_id,
            str(env.state),
        ):
            found.append(proc)
    return found


def write_tree(directory: Path) -> list[str]:
    """argv of a petition whose tree is: the root shell (PID in root.pid), its ``sleep``, and
    a grandchild that ignores SIGTERM and called setsid from a subshell that then exited, so
    it has left the petition's session and its parent chain (PID in gc.pid)."""
    gc = directory / "gc.sh"
    gc.write_text(
        f'trap "" TERM\necho $$ > {directory}/gc.tmp\nmv {directory}/gc.tmp {directory}/gc.pid\n'
        "exec sleep 300\n"
    )
    tree = directory / "tree.sh"
    tree.write_text(
        f"(setsid sh {gc} &)\n"
        f"echo $$ > {directory}/root.tmp\nmv {directory}/root.tmp {directory}/root.pid\n"
        "echo started\nsleep 300\n"
    )
    return ["sh", str(tree)]


def start_tree(env: Env, tmp_path: Path, petition_id: str) -> tuple[int, int]:
    """Start the tree petition detached; wait until it runs; (root PID, grandchild PID)."""
    result = env.run("run", petition_id, "--detach", "--", *write_tree(tmp_path), timeout=WAIT)
    assert (result.returncode, result.stdout) == (0, f"{petition_id}\n"), result.stderr
    root, grandchild = read_pid(tmp_path / "root.pid"), read_pid(tmp_path / "gc.pid")
    wait_state(env, petition_id, "RUNNING")
    assert os.getsid(grandchild) != os.getsid(root)  # it left the petition's session
    assert grandchild not in [p.pid for p in psutil.Process(root).children(recursive=True)]
    return root, grandchild


def submit_queued(env: Env, order: Path, gate: Path | None = None) -> None:
    """Submit the QUEUED petitions, detached; each appends its name to ``order`` (once
    ``gate`` exists, if given)."""
    wait = f"while [ ! -e {gate} ]; do sleep 0.05; done; " if gate else ""
    for name, priority in QUEUED:
        argv = ["sh", "-c", f"{wait}echo {name} >> {order}"]
        result = env.run(
            "run", name, "--priority", str(priority), "--detach", "--", *argv, timeout=WAIT
        )
        assert (result.returncode, result.stdout) == (0, f"{name}\n"), result.stderr
    rows = by_id(env, *(name for name, _ in QUEUED))
    assert {n: r["state"] for n, r in rows.items()} == {n: "QUEUED" for n, _ in QUEUED}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_all(env: Env, *ids: str) -> None:
    result = env.run("wait", *ids, timeout=WAIT)
    assert result.returncode == 0, (result.returncode, result.stderr)


def assert_tree_gone(env: Env, petition_id: str, *pids: int) -> None:
    ok = wait_for(
        lambda: all(gone(p) for p in pids) and not petition_processes(env, petition_id),
        STOP_WAIT,
        0.1,
    )
    assert ok, f"{petition_id} left behind: {describe(petition_processes(env, petition_id))}"


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    got = stderr.splitlines()
    assert len(got) == 1 and got[0].startswith("orcha: "), stderr
    return got[0]


# -- 1. kill -9 with running and queued petitions --------------------------------------------
def test_sigkill_interrupts_running_kills_its_tree_and_requeues_in_priority_order(
    env: Env, tmp_path: Path
) -> None:
    # Without its guard (which would stop the tree at once: tests/chaos/test_service_death),
    # as when the guard and the service are killed together.
    first = env.serve(*SERVE, env={"ORCHA_NO_GUARD": "1"})
    assert not first.guarded
    order = tmp_path / "order"
    root, grandchild = start_tree(env, tmp_path, "r")
    submit_queued(env, order)

    kill9(first)
    # The petition outlives a killed service (nothing in the service can stop it).
    assert not gone(root) and not gone(grandchild)
    assert lines(order) == []

    second = env.serve(*SERVE)
    assert "listening on" in second.banner
    row = by_id(env, "r")["r"]
    assert row["state"] == "INTERRUPTED", row
    assert_tree_gone(env, "r", root, grandchild)

    names = [name for name, _ in QUEUED]
    wait_all(env, *names)
    assert lines(order) == EXPECTED_ORDER
    rows = by_id(env, *names)
    assert {n: r["state"] for n, r in rows.items()} == {n: "SUCCEEDED" for n in names}
    assert {n: r["priority"] for n, r in rows.items()} == dict(QUEUED)
    assert by_id(env, "r")["r"]["state"] == "INTERRUPTED"  # not run again


# -- 2. an attached client when its service dies -------------------------------------------
def test_attached_client_of_sigkilled_service_exits_206_with_one_line(
    env: Env, start: Callable[..., Client]
) -> None:
    service = env.serve(*SERVE)
    client = start("run", new_id("att"), "--", "sh", "-c", "echo up; exec sleep 300")
    assert client.out.wait_for(lambda d: d == b"up\n"), bytes(client.out.data)
    kill9(service)
    rc, out, err = client.finish_text(timeout=WAIT)
    assert rc == 206, (rc, err)
    assert out == "up\n"
    line = one_error_line(err)
    assert "lost" in line and "connection" in line, line


# -- 3. follow and logs of an interrupted petition -------------------------------------------
def test_follow_and_logs_show_output_recorded_before_the_crash(
    env: Env, start: Callable[..., Client]
) -> None:
    service = env.serve(*SERVE)
    script = "echo out-1; echo err-1 >&2; echo out-2; exec sleep 300"
    talk = new_id("talk")
    client = start("run", talk, "--", "sh", "-c", script)
    assert client.out.wait_for(lambda d: d == b"out-1\nout-2\n"), bytes(client.out.data)
    assert client.err.wait_for(lambda d: d == b"err-1\n"), bytes(client.err.data)
    kill9(service)
    rc, _, err = client.finish_text(timeout=WAIT)
    assert rc == 206, (rc, err)

    env.serve(*SERVE)
    assert by_id(env, talk)[talk]["state"] == "INTERRUPTED"
    assert_tree_gone(env, talk)
    followed = env.run("follow", talk, timeout=WAIT)
    assert followed.returncode == 206, (followed.returncode, followed.stderr)
    assert followed.stdout == "out-1\nout-2\n"
    # Its own stderr, then orcha's word on how it ended.
    assert followed.stderr == "err-1\norcha: the service stopped while it was running\n"
    logs = env.run("logs", talk, timeout=WAIT)
    assert logs.returncode == 0, logs.stderr
    assert (logs.stdout, logs.stderr) == ("out-1\nout-2\n", "err-1\n")


# -- 4. graceful stop ------------------------------------------------------------------------
def test_sigterm_keeps_queued_petitions_and_cancels_running_ones(env: Env, tmp_path: Path) -> None:
    first = env.serve(*SERVE)
    order, gate = tmp_path / "order", tmp_path / "gate"
    root, grandchild = start_tree(env, tmp_path, "r")
    submit_queued(env, order, gate)

    assert first.proc is not None
    first.signal(signal.SIGTERM)
    assert first.proc.wait(WAIT) == 0, first.stderr
    assert_tree_gone(env, "r", root, grandchild)

    env.serve(*SERVE)
    names = [name for name, _ in QUEUED]
    rows = by_id(env, "r", *names)
    assert rows["r"]["state"] == "CANCELLED", rows["r"]
    # The gate holds the first of them RUNNING; the others are still QUEUED.
    assert rows[EXPECTED_ORDER[0]]["state"] in ("QUEUED", "RUNNING"), rows
    assert {n: rows[n]["state"] for n in EXPECTED_ORDER[1:]} == {
        n: "QUEUED" for n in EXPECTED_ORDER[1:]
    }
    assert {n: rows[n]["priority"] for n in names} == dict(QUEUED)
    assert lines(order) == []

    gate.touch()
    wait_all(env, *names)
    assert lines(order) == EXPECTED_ORDER
    rows = by_id(env, "r", *names)
    assert {n: rows[n]["state"] for n in names} == {n: "SUCCEEDED" for n in names}
    assert rows["r"]["state"] == "CANCELLED"


# -- 5. ended records and the files that hold them -----------------------------------------
def test_ended_records_survive_a_crash_in_private_files(env: Env) -> None:
    service = env.serve(*SERVE)
    ok = env.run("run", "ok", "--", "sh", "-c", "echo fine", timeout=WAIT)
    assert (ok.returncode, ok.stdout) == (0, "fine\n"), ok.stderr
    bad = env.run("run", "bad", "--", "sh", "-c", "exit 3", timeout=WAIT)
    assert bad.returncode == 3, bad.stderr
    # An end may reach its client a few milliseconds before it is committed (the
    # record writer's batch, docs/reliability.rst): the crash comes once both are.
    wait_for(lambda: saved_states(env, "ok", "bad") == ["SUCCEEDED", "FAILED"])
    kill9(service)

    env.serve(*SERVE)
    rows = by_id(env, "ok", "bad")
    assert (rows["ok"]["state"], rows["ok"]["code"]) == ("SUCCEEDED", 0), rows["ok"]
    assert (rows["bad"]["state"], rows["bad"]["code"]) == ("FAILED", 3), rows["bad"]
    assert env.run("logs", "ok", timeout=WAIT).stdout == "fine\n"

    database = env.state / "orcha.db"
    assert database.is_file()
    logs_dir = env.state / "logs"
    assert stat.S_IMODE(logs_dir.stat().st_mode) == 0o700
    logs = list(logs_dir.iterdir())
    assert logs, "no output log was written"
    files = [database, *env.state.glob("orcha.db-*"), *logs]
    modes = {f.name: f"{stat.S_IMODE(f.stat().st_mode):04o}" for f in files}
    assert all(int(m, 8) & 0o077 == 0 for m in modes.values()), (
        f"files others may read (expected 0600 or stricter): {modes}"
    )


def test_a_met_dependency_stays_met_after_a_crash_though_its_record_was_cleaned(
    env: Env,
) -> None:
    # Held (or waiting for CPUs) after what they run after ended, then that is cleaned
    # (a cron 'clean --older-than'): a crash must not turn them into 210 'unknown'.
    service = env.serve(*SERVE)
    assert env.run("run", "a", "--", "true", timeout=WAIT).returncode == 0
    assert env.run("run", "b", "--", "false", timeout=WAIT).returncode == 1
    for name, option, dep in (("dep", "--after", "a"), ("any", "--after-any", "b")):
        queued = env.run("run", name, "--detach", "--hold", option, dep, "--", "echo", name)
        assert queued.returncode == 0, queued.stderr
    cleaned = env.run("clean", "a", "b", timeout=WAIT)  # commits what was queued first
    assert cleaned.returncode == 0, cleaned.stderr
    kill9(service)

    env.serve(*SERVE)
    released = env.run("release", "dep", "any", timeout=WAIT)
    assert released.returncode == 0, released.stderr
    waited = env.run("wait", "dep", "any", "--status", "success", timeout=WAIT)
    assert waited.returncode == 0, waited.stderr
    assert env.run("logs", "dep", "any", timeout=WAIT).stdout == "[dep] dep\n[any] any\n"


# -- 6. restarts do not run anything twice -------------------------------------------------
def test_two_restarts_run_each_queued_petition_exactly_once(env: Env, tmp_path: Path) -> None:
    first = env.serve(*SERVE)
    order = tmp_path / "order"
    blocker = ["sh", "-c", f"echo blocker >> {order}; exec sleep 300"]
    result = env.run("run", "blocker", "--detach", "--", *blocker, timeout=WAIT)
    assert result.returncode == 0, result.stderr
    # Its line is written, so its start is committed (RUNNING alone is shown a moment
    # before: a crash in between would queue it again, as it never ran).
    assert wait_for(lambda: lines(order) == ["blocker"], WAIT)
    submit_queued(env, order)
    kill9(first)

    second = env.serve(*SERVE)
    names = [name for name, _ in QUEUED]
    wait_all(env, "blocker", *names)
    assert_tree_gone(env, "blocker")
    # An end may reach its client a few milliseconds before it is committed (the record
    # writer's batch, docs/reliability.rst): the crash comes once the ends are.
    assert wait_for(lambda: saved_states(env, *names) == ["SUCCEEDED"] * len(names), WAIT)
    kill9(second)

    env.serve(*SERVE)
    assert env.info()["petitions"] == []  # nothing queued or running again
    assert not wait_for(lambda: len(lines(order)) > 1 + len(QUEUED), 1.0)
    assert lines(order) == ["blocker", *EXPECTED_ORDER]
    rows = records(env)
    assert sorted(r["id"] for r in rows) == sorted(["blocker", *names]), rows
    states = {r["id"]: r["state"] for r in rows}
    assert states == {"blocker": "INTERRUPTED", **{n: "SUCCEEDED" for n in names}}


# -- 7. the stale socket of a killed service -------------------------------------------------
def test_stale_socket_of_sigkilled_service_does_not_prevent_restart(env: Env) -> None:
    first = env.serve(*SERVE)
    kill9(first)
    assert env.socket.exists()  # kill -9 leaves the socket behind
    nobody = env.run("status", timeout=WAIT)
    assert nobody.returncode == 200, nobody.stderr

    second = env.serve(*SERVE)
    assert f"listening on {env.socket} (pid {second.service_pid}, guard {second.pid}," in (
        second.banner
    )
    result = env.run("run", "after", "--", "echo", "ok", timeout=WAIT)
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr


# -- 8. a petition that kills the service -----------------------------------------------------
def test_a_petition_that_kills_its_service_is_interrupted_not_run_again(
    env: Env, tmp_path: Path
) -> None:
    # Its RUNNING state is committed before it starts, so the next service does not take
    # it for a queued petition (it would run again, and kill that service too).
    first = env.serve(*SERVE)
    ran = tmp_path / "ran"
    # The service's PID: its token's first part (not always the petition's parent).
    killer = ["sh", "-c", f"echo ran >> {ran}; kill -9 ${{ORCHA_PETITION_TOKEN%%.*}}"]
    result = env.run("run", "killer", "--detach", "--", *killer, timeout=WAIT)
    assert result.returncode == 0, result.stderr
    assert first.proc is not None
    assert first.proc.wait(WAIT) == 128 + signal.SIGKILL  # the guard's word for it

    env.serve(*SERVE)
    assert env.info()["petitions"] == []  # nothing queued or running again
    (row,) = records(env, "killer")
    assert (row["state"], row["message"]) == (
        "INTERRUPTED",
        "the service stopped while it was running",
    )
    assert lines(ran) == ["ran"]
