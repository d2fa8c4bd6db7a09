"""Point 1 of issue 12: a failed database write never wedges the service.

The state directory on a small tmpfs that really fills up, and a real SQLite lock held by
another process: submits are refused with one line and exit 212 (or wait a bounded time),
everything else keeps answering, ``orcha health`` says why (exit 1), nothing already
recorded is lost once the fault goes, and SIGTERM stops the service during an outage.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from orcha.errors import ExitCode
from tests.chaos.conftest import fill
from tests.conftest import Env, Service, wait_for

NOT_SAVED = int(ExitCode.NOT_SAVED)


def _on_disk(env: Env, tmpfs: Callable[[str], Path], size: str = "4m") -> Path:
    """Put ``env``'s state directory on a fresh tmpfs of ``size``; return the tmpfs."""
    disk = tmpfs(size)
    env.state = disk / "state"
    env.vars["ORCHA_STATE_DIR"] = str(env.state)
    return disk


def _refused_submit(env: Env, accepted: list[str]) -> subprocess.CompletedProcess[str]:
    """Submit until one is refused with 212 (a few may still fit in the database's
    journal: those are recorded, and kept in ``accepted``); return the refusal."""
    for n in range(30):
        done = env.run("run", "--detach", f"s{n}", "--", "true", timeout=30)
        if done.returncode == NOT_SAVED:
            return done
        assert done.returncode == 0, done.stderr
        accepted.append(f"s{n}")
    raise AssertionError("30 submits on a full disk were all accepted")


def _states(state_dir: Path) -> dict[str, str]:
    """Each petition's state as saved in the database (read by another connection)."""
    db = sqlite3.connect(state_dir / "orcha.db")
    try:
        return dict(db.execute("SELECT id, state FROM petitions ORDER BY seq").fetchall())
    finally:
        db.close()


def test_a_full_state_disk_refuses_submits_and_everything_else_answers(
    env: Env, tmpfs: Callable[[str], Path]
) -> None:
    disk = _on_disk(env, tmpfs)
    service = env.serve("--grace", "1")
    assert env.run("run", "--detach", "before", "--", "sleep", "1").returncode == 0
    filler = fill(disk)

    accepted: list[str] = []
    refused = _refused_submit(env, accepted)
    line = refused.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, refused.stderr
    assert "cannot save its state (disk full" in line and "nothing was submitted" in line
    print(f"refused after {len(accepted)} accepted submit(s): {line}")

    # Everything else answers: wait (its end is not saved yet), status, logs, cancel, clean.
    assert env.run("wait", "before", timeout=30).returncode == 0
    status = env.run("status", "--json", "before", timeout=10)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["petitions"][0]["state"] == "SUCCEEDED"
    assert env.run("logs", "before", timeout=10).returncode == 0
    assert env.run("cancel", "nope", timeout=10).returncode != 0  # answered, not hung
    clean = env.run("clean", timeout=10)
    # Refused (212), or it keeps 'before' (its end is not saved) and says so, with the
    # way out, 'orcha clean before' (209).
    assert clean.returncode in (0, ExitCode.NO_PETITION, NOT_SAVED), clean.stderr
    assert "Traceback" not in clean.stderr
    health = env.run("health", timeout=10)
    print(health.stdout.strip())
    assert health.returncode == 1, service.stderr
    assert "state: UNSAVED (disk full" in health.stdout

    filler.unlink()
    assert wait_for(lambda: env.run("health", timeout=10).returncode == 0, timeout=20)
    after = env.run("run", "after", "--", "echo", "back", timeout=30)
    assert (after.returncode, after.stdout) == (0, "back\n"), after.stderr
    assert service.stop(timeout=20) == 0
    saved = _states(env.state)
    print(f"saved: {saved}")
    assert saved["before"] == "SUCCEEDED" and saved["after"] == "SUCCEEDED"
    assert all(petition_id in saved for petition_id in accepted)
    assert f"s{len(accepted)}" not in saved  # the refused one was not taken
    # One line for the outage, one for its end: not one per retry.
    assert service.stderr.count("cannot save the petition records") <= 2, service.stderr
    assert "Traceback" not in service.stderr


def test_sigterm_stops_the_service_during_an_outage(env: Env, tmpfs: Callable[[str], Path]) -> None:
    disk = _on_disk(env, tmpfs)
    service = env.serve("--grace", "1")
    assert env.run("run", "--detach", "long", "--", "sleep", "60").returncode == 0
    assert wait_for(lambda: _running(env, "long"))
    fill(disk)
    _refused_submit(env, [])
    signalled = time.monotonic()
    service.signal(signal.SIGTERM)
    # Grace 1 s for 'long', then at most STORE_CLOSE_WAIT for what is unsaved: well
    # within this bound (which is only there so that a hang fails the test).
    assert service.proc is not None
    assert service.proc.wait(timeout=30) == 0
    print(f"stopped {time.monotonic() - signalled:.1f}s after SIGTERM")
    print(service.stderr.strip().splitlines()[-2:])
    assert "not saved" in service.stderr
    assert "Traceback" not in service.stderr


def _running(env: Env, petition_id: str) -> bool:
    status = env.run("status", "--json", petition_id, timeout=10)
    return status.returncode == 0 and json.loads(status.stdout)["petitions"][0]["state"] == (
        "RUNNING"
    )


_HOLD = (
    "import sqlite3, sys, time\n"
    "d = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "d.execute('BEGIN EXCLUSIVE')\n"
    "print('locked', flush=True)\n"
    "time.sleep(7)\n"
    "d.execute('COMMIT')\n"
)


def test_another_process_holding_the_database_never_wedges_the_service(env: Env) -> None:
    service: Service = env.serve("--grace", "1")
    assert env.run("run", "--detach", "short", "--", "sleep", "1").returncode == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(env.state / "orcha.db")], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        # A submit, one with --after and a run either wait a bounded time or are refused.
        outcomes = {}
        for args in (("during",), ("dependent", "--after", "short")):
            done = env.run("run", "--detach", *args, "--", "true", timeout=30)
            assert done.returncode in (0, NOT_SAVED), done.stderr
            if done.returncode == NOT_SAVED:
                assert "\n" not in done.stderr.strip()
                assert "database is locked" in done.stderr
            outcomes[args[0]] = done.returncode
        # 'short' ends while the lock is held: its end waits in memory, seen at once.
        assert env.run("wait", "short", timeout=20).returncode == 0
        assert env.run("status", "short", timeout=10).returncode == 0
        assert env.run("logs", "short", timeout=10).returncode == 0
        assert env.run("health", timeout=10).returncode in (0, 1)
        cancel = env.run("cancel", "nope", timeout=10)
        assert "Traceback" not in cancel.stderr
        print(f"while locked: {outcomes}")
    finally:
        try:
            holder.wait(timeout=20)
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()
            if holder.stdout is not None:
                holder.stdout.close()
    # Once the lock is gone, everything is saved and submits work again.
    assert wait_for(lambda: env.run("health", timeout=10).returncode == 0, timeout=20)
    after = env.run("run", "after", "--", "echo", "ok", timeout=30)
    assert (after.returncode, after.stdout) == (0, "ok\n"), after.stderr
    for petition_id, code in outcomes.items():
        if code == 0:
            assert env.run("wait", petition_id, timeout=20).returncode == 0
    assert service.stop(timeout=20) == 0
    saved = _states(env.state)
    print(f"saved: {saved}")
    assert saved["short"] == "SUCCEEDED" and saved["after"] == "SUCCEEDED"
    for petition_id, code in outcomes.items():
        assert (petition_id in saved) == (code == 0)
        if code == 0:
            assert saved[petition_id] == "SUCCEEDED"
    assert "Traceback" not in service.stderr
