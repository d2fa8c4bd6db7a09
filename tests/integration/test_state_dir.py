"""The state directory: one service per state directory, and what ``orcha serve`` says
of a state directory it cannot use.

A second ``orcha serve`` on the same state directory is refused (208) whatever address
it listens at, also when the first one's runtime directory (its socket and address
lock) was deleted, as logind does to ``$XDG_RUNTIME_DIR`` at a user's last logout: its
database's queue is run by one service only.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
from pathlib import Path

from orcha.defaults import SOCKET_CHECK_SECONDS
from tests.conftest import Env, Service, wait_for
from tests.integration.clients import WAIT, gone, read_pid

SERVE = ("--max-running", "1", "--grace", "1")


def refused(env: Env, *args: str) -> str:
    """Start ``orcha serve ARGS``, expect it refused with 208; return its one line."""
    second = Service(env, list(args), {})
    env.services.append(second)  # stopped by the fixture if it did start (the bug)
    second.start(expect_ready=False)
    assert second.proc is not None
    try:
        code = second.proc.wait(WAIT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"a second service started: {second.stderr}") from None
    wait_for(lambda: second.stderr != "", 5)
    lines = second.stderr.splitlines()
    assert code == 208, (code, second.stderr)
    assert len(lines) == 1 and lines[0].startswith("orcha: "), second.stderr
    return lines[0]


def test_a_second_service_after_the_runtime_directory_was_deleted_is_refused(
    env: Env, tmp_path: Path
) -> None:
    first = env.serve(*SERVE)
    pidfile, ran = tmp_path / "pid", tmp_path / "ran"
    busy = env.run("run", "--detach", "busy", "--", "sh", "-c", f"echo $$ > {pidfile}; sleep 60")
    assert busy.returncode == 0, busy.stderr
    busy_pid = read_pid(pidfile)
    queued = env.run("run", "--detach", "q", "--", "sh", "-c", f"echo q >> {ran}")
    assert queued.returncode == 0, queued.stderr
    subprocess.run(["rm", "-rf", str(env.runtime)], check=True)

    line = refused(env, *SERVE)
    pid = first.service_pid
    assert line in (
        f"orcha: an orcha service (pid {pid}) is still running, but its socket {env.socket} "
        f"is gone (deleted with its directory?), so no client can reach it; stop it with "
        f"'kill {pid}' (it stops cleanly on SIGTERM and keeps its queued petitions), then "
        "start again",
        # The first one made its socket again meanwhile (every SOCKET_CHECK_SECONDS).
        f"orcha: another orcha service (pid {pid}) is already listening at {env.socket}; stop "
        "it first ('orcha shutdown', or Ctrl+C in its terminal) or use --address",
    )
    # Refused before it took anything: the first one's petition runs on, the queued one
    # has not run.
    assert not gone(busy_pid)
    assert not ran.exists()

    # What the line says works: the first stops cleanly; the next start runs 'q' once.
    assert first.stop() == 0
    env.serve(*SERVE)
    assert env.run("wait", "q", timeout=WAIT).returncode == 0
    assert ran.read_text() == "q\n"


def test_a_service_whose_socket_was_deleted_makes_it_again(env: Env) -> None:
    first = env.serve(*SERVE)
    subprocess.run(["rm", "-rf", str(env.runtime)], check=True)
    assert wait_for(lambda: env.run("status").returncode == 0, SOCKET_CHECK_SECONDS + WAIT)
    assert env.info()["pid"] == first.service_pid
    assert first.stop() == 0
    assert not env.socket.exists()  # removed at the end, as before


def test_a_second_service_at_another_address_on_the_same_state_is_refused(env: Env) -> None:
    first = env.serve(*SERVE)
    other = env.root / "other.sock"
    line = refused(env, "--address", str(other), *SERVE)
    assert re.fullmatch(
        rf"orcha: another orcha service \(pid {first.service_pid}, listening at \S+\) already "
        rf"uses the state directory {env.state}; stop it first \('orcha shutdown --address "
        r"\S+'\) or give this one another ORCHA_STATE_DIR",
        line,
    ), line
    assert not other.exists()  # it never listened
    assert env.run("status").returncode == 0  # the first one is unaffected


def test_a_file_in_place_of_the_logs_folder_is_one_line_and_exit_2(env: Env) -> None:
    env.state.mkdir(mode=0o700)
    (env.state / "logs").write_text("keep")
    result = env.run("serve", timeout=WAIT)
    assert (result.returncode, result.stderr) == (
        2,
        f"orcha: cannot create directory {env.state / 'logs'}: a file of that name is there; "
        "move it aside\n",
    )


def test_a_database_damaged_while_serving_is_212_with_advice_and_health_unhealthy(
    env: Env,
) -> None:
    env.serve(*SERVE)
    filled = env.run("run", "cx", "--detach", "--array", "1-2000", "--", "true")
    assert filled.returncode == 0, filled.stderr
    assert env.run("wait", "cx", timeout=120).returncode == 0
    db = env.state / "orcha.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db.stat().st_size
    with open(db, "r+b") as f:
        for offset in range(4096 * 3, size, 4096 * 7):
            f.seek(offset)
            f.write(os.urandom(4096))
    advice = (
        f"orcha: the petition database {db} is damaged (database disk image is malformed); "
        "stop the service ('orcha shutdown'), then move it aside to start afresh, or restore "
        "it from a backup"
    )
    for command in (("health",), ("status", "--all"), ("logs", "cx_7"), ("wait", "cx")):
        result = env.run(*command, timeout=WAIT)
        if command == ("health",):
            assert result.returncode == 1, (command, result.stdout, result.stderr)
            assert f"state: DAMAGED: {advice.removeprefix('orcha: ')}" in result.stdout
        else:
            assert (result.returncode, result.stderr) == (212, advice + "\n"), command
