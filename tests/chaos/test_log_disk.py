"""Point 7 of issue 12: a failed log write never kills a petition or cuts its client off.

The logs folder on a tmpfs that is full, or mounted read-only: the attached client still
gets every byte and the command's exit code; the log is marked incomplete with the reason
(``logs`` says so on stderr, ``status`` in its note and ``status --json`` in
``log_truncated``).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.chaos.conftest import fill
from tests.conftest import Env


def _logs_on(env: Env, disk: Path) -> None:
    """Make ``disk`` the logs folder of ``env``'s service (its state stays on the usual
    disk, so only the logs fail)."""
    env.state.mkdir(mode=0o700, parents=True)
    (env.state / "logs").symlink_to(disk)


def _record(env: Env, petition_id: str) -> dict[str, object]:
    status = env.run("status", "--json", petition_id, timeout=10)
    assert status.returncode == 0, status.stderr
    record: dict[str, object] = json.loads(status.stdout)["petitions"][0]
    return record


def test_a_full_log_disk_delivers_every_byte_and_marks_the_log(
    env: Env, tmpfs: Callable[[str], Path]
) -> None:
    disk = tmpfs("2m")  # the log fills it up part way through the output
    _logs_on(env, disk)
    env.serve("--grace", "1")
    done = env.run_bytes("run", "filler", "--", "head", "-c", "6000000", "/dev/zero", timeout=60)
    print(f"delivered {len(done.stdout)} bytes, exit {done.returncode}")
    assert (done.returncode, len(done.stdout)) == (0, 6_000_000), done.stderr
    assert done.stdout == b"\0" * 6_000_000
    record = _record(env, "filler")
    assert record["state"] == "SUCCEEDED"
    assert "No space left on device" in str(record["log_truncated"])
    logs = env.run_bytes("logs", "filler", timeout=10)
    assert logs.returncode == 0
    note = logs.stderr.decode().strip()
    assert note.startswith("orcha: the log of filler is incomplete: No space"), note
    assert "\n" not in note
    status = env.run("status", timeout=10)
    print(status.stdout.strip().splitlines()[-1])
    assert "log incomplete: No space left on device" in status.stdout
    kept = len(logs.stdout)
    print(f"log kept {kept} bytes: {record['log_truncated']}")
    assert 0 < kept < 6_000_000
    # With the logs' disk full from the start: nothing is kept, all is delivered.
    fill(disk)
    # Submits still work (the records are on another disk).
    again = env.run("run", "again", "--", "echo", "hello", timeout=30)
    assert (again.returncode, again.stdout) == (0, "hello\n"), again.stderr
    assert "No space left on device" in str(_record(env, "again")["log_truncated"])


def test_a_read_only_log_folder_still_delivers_the_output(
    env: Env, tmpfs: Callable[[str], Path]
) -> None:
    disk = tmpfs("1m")
    remount = subprocess.run(
        ["mount", "-o", "remount,ro", str(disk)], capture_output=True, text=True
    )
    if remount.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only: {remount.stderr.strip()}")
    _logs_on(env, disk)
    env.serve("--grace", "1")
    done = env.run("run", "x", "--", "echo", "hello", timeout=30)
    print(f"stdout {done.stdout!r}, exit {done.returncode}")
    assert (done.returncode, done.stdout) == (0, "hello\n"), done.stderr
    assert "Read-only file system" in str(_record(env, "x")["log_truncated"])
    logs = env.run("logs", "x", timeout=10)
    assert (logs.returncode, logs.stdout) == (0, "")
    assert "incomplete: Read-only file system" in logs.stderr
