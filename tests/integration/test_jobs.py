"""Job control from any shell: --detach, status, cancel, clean, logs, wait, follow, watch.

Petitions that must stay alive for a while wait for a file named ``go`` in their working
directory (the test's ``tmp_path``), so the test decides when they end instead of sleeping.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Env, Service, wait_for
from tests.integration.clients import WAIT, Client, new_id, petition_processes, states

PATIENT_GRACE = 30  # the ``patient`` service's grace period
GATE = "while [ ! -e go ]; do sleep 0.02; done"
HEADER = ["ID", "KIND", "STATE", "PRIO", "SUBMITTED", "RUNTIME", "CODE", "COMMAND", "NOTE"]
ENVELOPE = {"event", "petition", "kind", "timestamp", "data"}
FIELDS = {"seq", "id", "kind", "state", "priority", "submitted", "started", "ended", "code",
          "message", "user", "host", "cwd", "params", "schedule", "attempt", "paused", "outcome",
          "notify_error", "machine", "parent", "leftovers", "log_truncated",
          "restart_of", "array", "array_index", "cpu_time", "peak_rss",
          "wall_time"}  # fmt: skip
NO_PETITION = 209
CANCELLED = 207


# -- helpers ---------------------------------------------------------------------------------
def one_error(stderr: str, *words: str) -> None:
    """``stderr`` is exactly one ``orcha: `` line (no traceback) mentioning ``words``."""
    assert stderr.startswith("orcha: ") and stderr.endswith("\n"), stderr
    assert stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    for word in words:
        assert word in stderr, stderr


def detach(env: Env, petition_id: str, script: str, cwd: Path, *options: str) -> None:
    """``orcha run ID --detach [OPTIONS] -- sh -c SCRIPT`` in ``cwd``; checks it returned."""
    result = env.run(
        "run", petition_id, "--detach", *options, "--", "sh", "-c", script, cwd=cwd, timeout=WAIT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{petition_id}\n"
    assert result.stderr == ""


def release(directory: Path) -> None:
    (directory / "go").touch()


def status_json(env: Env, *args: str, code: int = 0) -> dict[str, Any]:
    result = env.run("status", "--json", *args, timeout=WAIT)
    assert result.returncode == code, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def record(env: Env, petition_id: str) -> dict[str, Any]:
    rows = status_json(env, petition_id)["petitions"]
    assert [r["id"] for r in rows] == [petition_id]
    row: dict[str, Any] = rows[0]
    return row


def wait_running(env: Env, *ids: str) -> None:
    assert wait_for(lambda: all(states(env).get(i) == "RUNNING" for i in ids), WAIT), states(env)


def wait_ended(env: Env, *ids: str) -> None:
    result = env.run("wait", *ids, timeout=WAIT)
    assert result.returncode == 0, result.stderr


def table(stdout: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The lines of a plain status table, and each row's cells by column (the column
    starts where its header starts: the table is aligned)."""
    lines = stdout.splitlines()
    assert lines and lines[0].split() == HEADER, stdout
    starts = [lines[0].index(h) for h in HEADER]
    rows = {}
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], len(line)], strict=True)]
        for a in starts[1:]:
            if a < len(line):
                assert line[a - 1] == " ", (line, stdout)  # aligned columns
        rows[cells[0]] = dict(zip(HEADER, cells, strict=True))
    return lines, rows


def events(out: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def has_event(client: Client, petition_id: str, event: str) -> bool:
    def seen(data: bytes) -> bool:
        lines = data.decode(errors="replace").splitlines()
        return any(
            f'"event": "{event}"' in x and f'"petition": "{petition_id}"' in x for x in lines
        )

    return client.out.wait_for(seen)


def log_files(env: Env) -> set[Path]:
    logs = env.state / "logs"
    return set(logs.iterdir()) if logs.is_dir() else set()


@pytest.fixture
def single(env: Env) -> Service:
    """A service that runs one petition at a time (grace 2 s)."""
    return env.serve("--max-running", "1", "--grace", "2")


@pytest.fixture
def patient(env: Env) -> Service:
    """A service whose grace period (30 s) is far longer than any wait in these tests."""
    return env.serve("--max-running", "2", "--grace", str(PATIENT_GRACE))


# -- --detach --------------------------------------------------------------------------------
def test_run_detach_returns_at_once_and_the_petition_runs_on_its_own(
    env: Env, service: Service, tmp_path: Path
) -> None:
    pid = new_id("det")
    detach(env, pid, f"echo begun; {GATE}; echo finished", tmp_path)
    # It returned at once: before the petition, which runs until released, has ended
    # (an order of events: the gate is opened only below, so no load can reorder them).
    assert not (tmp_path / "go").exists()
    assert record(env, pid)["state"] in ("QUEUED", "RUNNING")
    wait_running(env, pid)  # the submitting client is gone; the petition goes on
    assert record(env, pid)["state"] == "RUNNING"
    release(tmp_path)
    result = env.run("wait", pid, "--status", "success", timeout=WAIT)
    assert result.returncode == 0, result.stderr
    row = record(env, pid)
    assert (row["state"], row["code"]) == ("SUCCEEDED", 0)
    assert row["cwd"] == str(tmp_path)
    logs = env.run("logs", pid, timeout=WAIT)
    assert (logs.returncode, logs.stdout, logs.stderr) == (0, "begun\nfinished\n", "")


def test_send_detach_prints_the_id_and_the_petition_completes(env: Env, service: Service) -> None:
    pid = new_id("sdet")
    result = env.run("send", pid, "--detach", "--counter", "2", timeout=WAIT)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{pid}\n", "")
    wait_ended(env, pid)
    assert record(env, pid)["state"] == "SUCCEEDED"
    logs = env.run("logs", pid, timeout=WAIT)
    assert logs.stdout == "Hello world! 0\nHello world! 1\n"


# -- status ----------------------------------------------------------------------------------
def test_status_table_json_state_filter_and_why_waiting(
    env: Env, single: Service, tmp_path: Path
) -> None:
    done, running, second, third = (new_id(n) for n in ("done", "run", "q2", "q3"))
    detach(env, done, "exit 3", tmp_path)
    wait_ended(env, done)
    detach(env, running, GATE, tmp_path)
    wait_running(env, running)
    detach(env, second, "true", tmp_path)
    detach(env, third, "true", tmp_path)

    result = env.run("status", timeout=WAIT)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines, rows = table(result.stdout)
    assert [line.split()[0] for line in lines[1:]] == [done, running, second, third]
    assert (rows[done]["KIND"], rows[done]["STATE"], rows[done]["CODE"]) == ("shell", "FAILED", "3")
    assert (rows[running]["STATE"], rows[running]["CODE"], rows[running]["NOTE"]) == (
        "RUNNING", "-", "")  # fmt: skip
    assert rows[running]["RUNTIME"].endswith("s")
    assert rows[second]["STATE"] == "QUEUED" and rows[second]["RUNTIME"] == "-"
    assert rows[second]["NOTE"] == "waiting for a free slot (1/1 CPUs in use)"
    assert rows[third]["NOTE"].endswith("; 1 ahead of it"), rows[third]
    assert rows[third]["PRIO"] == "0"

    answer = status_json(env)
    assert answer["missing"] == []
    by_id = {r["id"]: r for r in answer["petitions"]}
    assert list(by_id) == [done, running, second, third]
    for pid in (done, running):
        assert set(by_id[pid]) == FIELDS, by_id[pid]
    for pid in (second, third):
        assert set(by_id[pid]) == FIELDS | {"waiting", "effective_priority"}, by_id[pid]
    assert by_id[second]["waiting"] == "waiting for a free slot (1/1 CPUs in use)"
    assert by_id[done]["state"] == "FAILED" and by_id[done]["code"] == 3
    assert by_id[done]["started"] <= by_id[done]["ended"]
    assert by_id[running]["kind"] == "shell"
    assert by_id[running]["params"] == {"argv": ["sh", "-c", GATE]}
    assert by_id[running]["cwd"] == str(tmp_path)
    assert by_id[second]["started"] is None and by_id[second]["code"] is None
    assert [by_id[p]["seq"] for p in by_id] == sorted(by_id[p]["seq"] for p in by_id)

    queued = status_json(env, "--state", "queued")["petitions"]  # case-insensitive
    assert [r["id"] for r in queued] == [second, third]
    both = status_json(env, "--state", "Running", "--state", "FAILED")["petitions"]
    assert [r["id"] for r in both] == [done, running]
    plain = env.run("status", "--state", "running", timeout=WAIT)
    assert [line.split()[0] for line in plain.stdout.splitlines()] == ["ID", running]
    picked = status_json(env, third, done)["petitions"]
    assert {r["id"] for r in picked} == {done, third}

    release(tmp_path)
    wait_ended(env, running, second, third)
    assert {r["state"] for r in status_json(env, second, third)["petitions"]} == {"SUCCEEDED"}


def test_status_waiting_note_counts_the_petitions_ahead(
    env: Env, single: Service, tmp_path: Path
) -> None:
    blocker, low, high, urgent = (new_id(n) for n in ("blk", "low", "high", "urgent"))
    detach(env, blocker, GATE, tmp_path)
    wait_running(env, blocker)
    detach(env, low, "true", tmp_path, "--priority", "5")
    detach(env, high, "true", tmp_path, "--priority", "1")
    detach(env, urgent, "true", tmp_path, "--priority", "-1")
    waiting = {r["id"]: r["waiting"] for r in status_json(env, "--state", "QUEUED")["petitions"]}
    assert waiting[urgent] == "waiting for a free slot (1/1 CPUs in use)"
    assert waiting[high] == "waiting for a free slot (1/1 CPUs in use); 1 ahead of it"
    assert waiting[low] == "waiting for a free slot (1/1 CPUs in use); 2 ahead of it"
    release(tmp_path)
    wait_ended(env, blocker, low, high, urgent)


def test_status_of_an_unknown_id_exits_209(env: Env, service: Service, tmp_path: Path) -> None:
    known, unknown = new_id("known"), new_id("nope")
    detach(env, known, "true", tmp_path)
    wait_ended(env, known)
    result = env.run("status", unknown, timeout=WAIT)
    assert result.returncode == NO_PETITION and result.stdout == ""
    one_error(result.stderr, unknown)

    result = env.run("status", "--json", known, unknown, timeout=WAIT)
    assert result.returncode == NO_PETITION
    one_error(result.stderr, unknown)
    answer = json.loads(result.stdout)
    assert [r["id"] for r in answer["petitions"]] == [known] and answer["missing"] == [unknown]

    # Known but filtered out by --state is not "missing".
    result = env.run("status", "--json", "--state", "running", known, timeout=WAIT)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"petitions": [], "missing": [], "hidden": 0}

    result = env.run("status", "--state", "bogus", timeout=WAIT)
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr


# -- cancel ----------------------------------------------------------------------------------
def test_cancel_a_queued_petition_drops_it_and_it_never_runs(
    env: Env, single: Service, tmp_path: Path
) -> None:
    blocker, queued = new_id("blk"), new_id("queued")
    detach(env, blocker, GATE, tmp_path)
    wait_running(env, blocker)
    detach(env, queued, "touch ran", tmp_path)
    assert states(env)[queued] == "QUEUED"

    result = env.run("cancel", queued, timeout=WAIT)
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    assert result.stderr == f"orcha: cancelled {queued}\n"
    assert queued not in states(env)
    row = record(env, queued)
    assert row["state"] == "CANCELLED" and row["started"] is None
    release(tmp_path)
    wait_ended(env, blocker, queued)
    time.sleep(0.3)  # a slot is free: had it stayed queued, it would have run by now
    assert not (tmp_path / "ran").exists()
    assert states(env) == {}


def test_cancel_a_running_petition_stops_its_whole_tree(
    env: Env, service: Service, tmp_path: Path
) -> None:
    pid = new_id("tree")
    detach(env, pid, "sleep 300 & echo $! > child; echo ready; wait", tmp_path)
    assert wait_for(lambda: (tmp_path / "child").exists(), WAIT)
    child = int((tmp_path / "child").read_text())
    assert psutil.pid_exists(child) and petition_processes(pid)

    result = env.run("cancel", pid, timeout=WAIT)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", f"orcha: cancelled {pid}\n")
    wait_ended(env, pid)
    row = record(env, pid)
    assert row["state"] == "CANCELLED", row
    assert row["message"] == "cancelled with 'orcha cancel'"
    assert wait_for(lambda: not petition_processes(pid), WAIT), petition_processes(pid)
    assert wait_for(lambda: _gone(child), WAIT)


def assert_cut_short(row: dict[str, Any]) -> None:
    """The petition ended before a grace period begun after it started could be over: by
    the service's own records, so a loaded machine slowing the clients cannot fail it.
    (A cancel that waited the grace period out would end it at least PATIENT_GRACE after
    its start; the test sets that grace, far longer than its few steps take.)"""
    ran = row["ended"] - row["started"]
    assert ran < PATIENT_GRACE, f"it ran {ran:.1f}s: the grace period was waited out"


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_cancel_force_kills_at_once_without_the_grace_period(
    env: Env, patient: Service, tmp_path: Path
) -> None:
    pid = new_id("stubborn")
    detach(env, pid, f'trap "" TERM; echo ready; {GATE}', tmp_path)  # deaf to SIGTERM
    wait_running(env, pid)
    assert wait_for(lambda: bool(petition_processes(pid)), WAIT)
    result = env.run("cancel", pid, "--force", timeout=WAIT)
    assert (result.returncode, result.stderr) == (0, f"orcha: cancelled {pid}\n")
    wait_ended(env, pid)
    row = record(env, pid)
    assert row["state"] == "CANCELLED"
    assert_cut_short(row)
    assert wait_for(lambda: not petition_processes(pid), WAIT)


def test_cancel_waits_the_grace_period_then_force_cuts_it_short(
    env: Env, patient: Service, tmp_path: Path
) -> None:
    pid = new_id("stubborn")
    detach(env, pid, f'trap "" TERM; echo ready; {GATE}', tmp_path)
    wait_running(env, pid)
    assert wait_for(lambda: bool(petition_processes(pid)), WAIT)
    # The cancel returns once the petition has ended: here not before --force.
    first = env.popen("cancel", pid)
    try:
        time.sleep(1.0)
        assert states(env).get(pid) == "RUNNING"  # TERM ignored: within its grace period
        assert petition_processes(pid)
        assert first.poll() is None
        result = env.run("cancel", pid, "--force", timeout=WAIT)
        assert result.returncode == 0, result.stderr
        _, err = first.communicate(timeout=WAIT)
        assert (first.returncode, err) == (0, f"orcha: cancelled {pid}\n".encode())
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    wait_ended(env, pid)
    row = record(env, pid)
    assert row["state"] == "CANCELLED"
    assert_cut_short(row)
    assert wait_for(lambda: not petition_processes(pid), WAIT)


def test_cancel_of_an_ended_or_unknown_petition_exits_209(
    env: Env, service: Service, tmp_path: Path
) -> None:
    ended, unknown, live = new_id("ended"), new_id("nope"), new_id("live")
    detach(env, ended, "true", tmp_path)
    wait_ended(env, ended)

    result = env.run("cancel", ended, timeout=WAIT)
    assert result.returncode == NO_PETITION and result.stdout == ""
    one_error(result.stderr, ended, "SUCCEEDED")
    result = env.run("cancel", unknown, timeout=WAIT)
    assert result.returncode == NO_PETITION and result.stdout == ""
    one_error(result.stderr, unknown)
    assert record(env, ended)["state"] == "SUCCEEDED"

    # A live one among them is still cancelled; each failure gets its own line.
    detach(env, live, GATE, tmp_path)
    wait_running(env, live)
    result = env.run("cancel", live, unknown, timeout=WAIT)
    assert result.returncode == NO_PETITION
    lines = result.stderr.splitlines()
    assert lines[0] == f"orcha: cancelled {live}" and len(lines) == 2, lines
    assert lines[1].startswith("orcha: ") and unknown in lines[1]
    wait_ended(env, live)
    assert record(env, live)["state"] == "CANCELLED"


def test_foreground_client_of_a_petition_cancelled_by_someone_else_exits_207(
    env: Env, service: Service, start: Callable[..., Client], tmp_path: Path
) -> None:
    pid = new_id("fg")
    client = start("run", pid, "--", "sh", "-c", f"echo ready; {GATE}", cwd=tmp_path)
    assert client.out.wait_for(lambda d: d == b"ready\n"), bytes(client.out.data)
    result = env.run("cancel", pid, timeout=WAIT)
    assert result.returncode == 0, result.stderr
    rc, out, err = client.finish_text()
    assert rc == CANCELLED, (rc, out, err)
    assert out == "ready\n"
    one_error(err, pid, "cancelled")


def test_foreground_client_of_a_queued_petition_cancelled_by_someone_else_exits_207(
    env: Env, single: Service, start: Callable[..., Client], tmp_path: Path
) -> None:
    blocker, pid = new_id("blk"), new_id("fgq")
    detach(env, blocker, GATE, tmp_path)
    wait_running(env, blocker)
    client = start("send", pid, "--counter", "2", cwd=tmp_path)
    assert wait_for(lambda: states(env).get(pid) == "QUEUED", WAIT)
    result = env.run("cancel", pid, timeout=WAIT)
    assert result.returncode == 0, result.stderr
    rc, out, err = client.finish_text()
    assert (rc, out) == (CANCELLED, ""), (rc, out, err)
    assert all(line.startswith("orcha: ") for line in err.splitlines()), err
    release(tmp_path)
    wait_ended(env, blocker)


# -- clean -----------------------------------------------------------------------------------
def test_clean_removes_ended_records_and_logs_and_keeps_live_ones(
    env: Env, single: Service, tmp_path: Path
) -> None:
    talker, failer, running, queued = (new_id(n) for n in ("talk", "fail", "run", "queued"))
    before = log_files(env)
    detach(env, talker, "echo some output; echo more >&2", tmp_path)
    wait_ended(env, talker)
    talker_logs = log_files(env) - before
    assert len(talker_logs) == 1, talker_logs  # the ended petition's output log
    (log_path,) = talker_logs
    path_in_status = record(env, talker).get("log_path")
    if path_in_status is not None:
        assert path_in_status == str(log_path)
    detach(env, failer, "exit 1", tmp_path)
    wait_ended(env, failer)
    detach(env, running, f"{GATE}; echo late", tmp_path)
    wait_running(env, running)
    detach(env, queued, "echo queued-ran", tmp_path)

    result = env.run("clean", timeout=WAIT)
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    assert result.stderr == "orcha: removed 2 ended petition(s)\n"
    assert not log_path.exists()
    answer = status_json(env)
    assert {r["id"]: r["state"] for r in answer["petitions"]} == {
        running: "RUNNING", queued: "QUEUED"}  # fmt: skip
    for gone in (talker, failer):
        assert env.run("status", gone, timeout=WAIT).returncode == NO_PETITION
        assert env.run("logs", gone, timeout=WAIT).returncode == NO_PETITION

    release(tmp_path)
    wait_ended(env, running, queued)
    assert env.run("logs", queued, timeout=WAIT).stdout == "queued-ran\n"
    assert env.run("logs", running, timeout=WAIT).stdout == "late\n"
    assert len(log_files(env)) == 2
    result = env.run("clean", timeout=WAIT)
    assert result.stderr == "orcha: removed 2 ended petition(s)\n"
    assert log_files(env) == set()
    assert status_json(env)["petitions"] == []


def test_clean_older_than_keeps_recent_records(env: Env, service: Service, tmp_path: Path) -> None:
    old, new = new_id("old"), new_id("new")
    detach(env, old, "echo old", tmp_path)
    wait_ended(env, old)
    old_end = record(env, old)["ended"]
    # Four seconds between the two ends, and a cut just under the older one's age when
    # `clean` is typed: ages only grow, so the older one is past the cut whenever the
    # service looks, and the newer one stays short of it unless the command takes nearly
    # four seconds to get there (a cut half-way allowed two; a fixed '2s' after a fixed
    # sleep failed when the box was busy).
    assert wait_for(lambda: time.time() - old_end >= 4, WAIT)
    detach(env, new, "echo new", tmp_path)
    wait_ended(env, new)
    new_end = record(env, new)["ended"]
    assert new_end - old_end >= 4, (old_end, new_end)  # the margin the cut relies on

    result = env.run("clean", "--older-than", "1h", timeout=WAIT)
    assert (result.returncode, result.stderr) == (0, "orcha: removed 0 ended petition(s)\n")
    cut = time.time() - old_end - 0.1  # (printed with 2 decimals: rounding is < 0.01)
    result = env.run("clean", "--older-than", f"{cut:.2f}s", timeout=WAIT)
    assert (result.returncode, result.stderr) == (0, "orcha: removed 1 ended petition(s)\n")
    assert [r["id"] for r in status_json(env)["petitions"]] == [new]
    assert env.run("logs", new, timeout=WAIT).stdout == "new\n"
    assert len(log_files(env)) == 1


@pytest.mark.parametrize("bad", ["7x", "soon", "-1d", "", "1.5.2h"])
def test_clean_with_a_bad_duration_is_a_usage_error(
    env: Env, service: Service, tmp_path: Path, bad: str
) -> None:
    pid = new_id("kept")
    detach(env, pid, "true", tmp_path)
    wait_ended(env, pid)
    result = env.run("clean", "--older-than", bad, timeout=WAIT)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert record(env, pid)["state"] == "SUCCEEDED"  # nothing was removed


# -- logs ------------------------------------------------------------------------------------
def test_logs_keep_stdout_and_stderr_apart_byte_for_byte(
    env: Env, service: Service, tmp_path: Path
) -> None:
    pid = new_id("bytes")
    script = (
        r"printf 'out one\n\000\377\376 raw\r\n'; printf 'err one\n' >&2; "
        r"printf 'out two (no newline)'; printf '\033[31mred\033[0m' >&2"
    )
    detach(env, pid, script, tmp_path)
    wait_ended(env, pid)
    result = env.run_bytes("logs", pid, timeout=WAIT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"out one\n\x00\xff\xfe raw\r\nout two (no newline)"
    assert result.stderr == b"err one\n\x1b[31mred\x1b[0m"


def test_logs_tail_gives_the_last_lines(env: Env, service: Service, tmp_path: Path) -> None:
    pid, ragged = new_id("tail"), new_id("ragged")
    detach(env, pid, "echo early-err >&2; sleep 0.2; seq 1 10", tmp_path)
    detach(env, ragged, "printf 'a\\nb\\nc'", tmp_path)
    wait_ended(env, pid, ragged)

    def logs(*args: str) -> tuple[int, str, str]:
        result = env.run("logs", *args, timeout=WAIT)
        return result.returncode, result.stdout, result.stderr

    assert logs(pid, "--tail", "3") == (0, "8\n9\n10\n", "")
    assert logs(pid, "--tail", "1") == (0, "10\n", "")
    # tail's -n and follow's --lines say the same
    assert logs(pid, "-n", "1") == logs(pid, "--lines", "1") == (0, "10\n", "")
    assert logs(pid, "--tail", "0") == (0, "", "")
    assert logs(pid, "--tail", "11") == (0, "".join(f"{i}\n" for i in range(1, 11)), "early-err\n")
    assert logs(pid, "--tail", "100") == logs(pid)
    assert logs(ragged, "--tail", "2") == (0, "b\nc", "")
    bad = env.run("logs", pid, "--tail", "-1", timeout=WAIT)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_logs_of_a_running_petition_give_the_output_so_far(
    env: Env, service: Service, tmp_path: Path
) -> None:
    pid = new_id("partial")
    detach(env, pid, f"echo part one; echo warn >&2; {GATE}; echo part two", tmp_path)

    def so_far() -> tuple[str, str]:
        result = env.run("logs", pid, timeout=WAIT)
        assert result.returncode == 0, result.stderr
        return result.stdout, result.stderr

    assert wait_for(lambda: so_far() == ("part one\n", "warn\n"), WAIT), so_far()
    assert states(env)[pid] == "RUNNING"
    release(tmp_path)
    wait_ended(env, pid)
    assert so_far() == ("part one\npart two\n", "warn\n")


def test_logs_of_a_silent_or_unknown_petition(env: Env, service: Service, tmp_path: Path) -> None:
    silent, unknown = new_id("silent"), new_id("nope")
    detach(env, silent, "true", tmp_path)
    wait_ended(env, silent)
    result = env.run("logs", silent, timeout=WAIT)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    result = env.run("logs", unknown, timeout=WAIT)
    assert result.returncode == NO_PETITION and result.stdout == ""
    one_error(result.stderr, unknown)


# -- wait ------------------------------------------------------------------------------------
def test_wait_exit_codes(env: Env, service: Service, tmp_path: Path) -> None:
    good, bad, unknown = new_id("good"), new_id("bad"), new_id("nope")
    detach(env, good, "true", tmp_path)
    detach(env, bad, "exit 3", tmp_path)

    result = env.run("wait", good, bad, timeout=WAIT)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    result = env.run("wait", good, "--status", "success", timeout=WAIT)
    assert (result.returncode, result.stderr) == (0, "")
    result = env.run("wait", good, bad, "--status", "success", timeout=WAIT)
    assert result.returncode == 1
    one_error(result.stderr, bad, "FAILED", "3")
    result = env.run("wait", unknown, timeout=WAIT)
    assert result.returncode == NO_PETITION
    one_error(result.stderr, unknown)
    result = env.run("wait", good, unknown, timeout=WAIT)
    assert result.returncode == NO_PETITION
    one_error(result.stderr, unknown)


def test_wait_blocks_until_all_have_ended(
    env: Env, service: Service, start: Callable[..., Client], tmp_path: Path
) -> None:
    first, second = new_id("w1"), new_id("w2")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    detach(env, first, GATE, tmp_path / "a")
    detach(env, second, f"{GATE}; exit 4", tmp_path / "b")
    wait_running(env, first, second)
    waiter = start("wait", first, second, "--status", "success")
    time.sleep(0.5)
    assert waiter.proc.poll() is None
    release(tmp_path / "a")
    wait_ended(env, first)
    time.sleep(0.3)
    assert waiter.proc.poll() is None  # the second is still running
    release(tmp_path / "b")
    rc, out, err = waiter.finish_text()
    assert (rc, out) == (1, "")
    one_error(err, second, "FAILED")


def test_wait_counts_a_cancelled_petition_as_not_succeeded(
    env: Env, service: Service, tmp_path: Path
) -> None:
    pid = new_id("cw")
    detach(env, pid, GATE, tmp_path)
    wait_running(env, pid)
    assert env.run("cancel", pid, timeout=WAIT).returncode == 0
    assert env.run("wait", pid, timeout=WAIT).returncode == 0
    result = env.run("wait", pid, "--status", "success", timeout=WAIT)
    assert result.returncode == 1
    one_error(result.stderr, pid, "CANCELLED")


# -- follow ----------------------------------------------------------------------------------
def test_follow_two_at_once_prefixes_lines_and_exits_with_the_failure(
    env: Env, service: Service, start: Callable[..., Client], tmp_path: Path
) -> None:
    first, second = new_id("fa"), new_id("fb")
    detach(env, first, f"echo a1; {GATE}; echo a2; printf 'a-partial'", tmp_path)
    detach(env, second, f"echo b1 >&2; {GATE}; echo b2; exit 4", tmp_path)
    wait_running(env, first, second)
    follower = start("follow", first, second)
    assert follower.out.wait_for(lambda d: f"[{first}] a1\n".encode() in d), follower.out.data
    assert follower.err.wait_for(lambda d: d == f"[{second}] b1\n".encode()), follower.err.data
    assert follower.proc.poll() is None
    release(tmp_path)
    rc, out, err = follower.finish_text()
    assert rc == 4, (rc, out, err)
    lines = out.splitlines(keepends=True)
    assert sorted(lines) == sorted(
        [f"[{first}] a1\n", f"[{first}] a2\n", f"[{first}] a-partial\n", f"[{second}] b2\n"]
    ), out
    assert [x for x in lines if x.startswith(f"[{first}]")] == [
        f"[{first}] a1\n", f"[{first}] a2\n", f"[{first}] a-partial\n"]  # fmt: skip
    assert err == f"[{second}] b1\n"


def test_follow_of_ended_petitions_replays_and_exits_with_their_code(
    env: Env, service: Service, tmp_path: Path
) -> None:
    ok, three, four = new_id("ok"), new_id("three"), new_id("four")
    detach(env, ok, "echo fine", tmp_path)
    detach(env, three, "printf 'o1\\no2'; printf 'e1\\n' >&2; exit 3", tmp_path)
    detach(env, four, "exit 4", tmp_path)
    wait_ended(env, ok, three, four)

    result = env.run_bytes("follow", three, timeout=WAIT)
    assert (result.returncode, result.stdout, result.stderr) == (3, b"o1\no2", b"e1\n")
    result = env.run("follow", ok, timeout=WAIT)
    assert (result.returncode, result.stdout, result.stderr) == (0, "fine\n", "")
    # Several: the first non-zero code, in the order given.
    assert env.run("follow", ok, three, four, timeout=WAIT).returncode == 3
    assert env.run("follow", four, three, timeout=WAIT).returncode == 4
    assert env.run("follow", ok, ok, timeout=WAIT).returncode == 0


def test_follow_of_a_cancelled_petition_exits_207(
    env: Env, service: Service, tmp_path: Path
) -> None:
    pid = new_id("fc")
    detach(env, pid, f"echo before; {GATE}", tmp_path)
    wait_running(env, pid)
    assert env.run("cancel", pid, timeout=WAIT).returncode == 0
    wait_ended(env, pid)
    result = env.run("follow", pid, timeout=WAIT)
    assert (result.returncode, result.stdout) == (CANCELLED, "before\n"), result.stderr


def test_follow_says_why_a_petition_failed_without_running(env: Env, service: Service) -> None:
    first, second = new_id("ff"), new_id("fg")
    assert env.run("run", first, "--detach", "--", "sh", "-c", "exit 3").returncode == 0
    wait_ended(env, first)
    assert env.run("run", second, "--detach", "--after", first, "--", "true").returncode == 0
    result = env.run("follow", second, timeout=WAIT)
    assert result.returncode == 210, result.stderr
    assert result.stderr == f"orcha: dependency {first} ended FAILED (code 3)\n"


def test_follow_of_an_unknown_petition_exits_209(env: Env, service: Service) -> None:
    unknown = new_id("nope")
    result = env.run("follow", unknown, timeout=WAIT)
    assert result.returncode == NO_PETITION and result.stdout == ""
    one_error(result.stderr, unknown)


def test_follow_started_before_any_output(
    env: Env, single: Service, start: Callable[..., Client], tmp_path: Path
) -> None:
    silent, queued = new_id("silent"), new_id("queued")
    (tmp_path / "q").mkdir()
    detach(env, silent, f"{GATE}; echo late; echo late-err >&2; exit 2", tmp_path)
    wait_running(env, silent)
    detach(env, queued, "echo from-the-queue", tmp_path / "q")
    assert states(env)[queued] == "QUEUED"
    on_running = start("follow", silent)
    on_queued = start("follow", queued)
    time.sleep(0.5)
    assert on_running.proc.poll() is None and on_queued.proc.poll() is None
    assert bytes(on_running.out.data) == b"" and bytes(on_queued.out.data) == b""
    release(tmp_path)
    assert on_running.finish_text() == (2, "late\n", "late-err\n")
    assert on_queued.finish_text() == (0, "from-the-queue\n", "")


def test_ctrl_c_on_follow_only_detaches(
    env: Env, service: Service, start: Callable[..., Client], tmp_path: Path
) -> None:
    pid = new_id("fint")
    detach(env, pid, f"echo ready; {GATE}; echo finished", tmp_path)
    follower = start("follow", pid)
    assert follower.out.wait_for(lambda d: d == b"ready\n"), follower.out.data
    follower.proc.send_signal(signal.SIGINT)
    rc, out, err = follower.finish_text()
    assert (rc, out) == (130, "ready\n")
    assert err == "orcha: stopped following; the petitions keep running\n"
    time.sleep(0.3)
    assert states(env).get(pid) == "RUNNING"
    release(tmp_path)
    result = env.run("wait", pid, "--status", "success", timeout=WAIT)
    assert result.returncode == 0, result.stderr
    assert env.run("logs", pid, timeout=WAIT).stdout == "ready\nfinished\n"


# -- watch -----------------------------------------------------------------------------------
def test_watch_started_before_the_petition_finishes(
    env: Env, service: Service, start: Callable[..., Client], tmp_path: Path
) -> None:
    pid = new_id("wb")
    detach(env, pid, f"{GATE}; echo hello", tmp_path)
    wait_running(env, pid)
    watcher = start("watch", pid)
    assert watcher.out.wait_for(lambda d: f" {pid} state RUNNING\n".encode() in d), watcher.out.data
    release(tmp_path)
    rc, out, err = watcher.finish_text()
    assert (rc, err) == (0, "")
    lines = [line.split(" ", 3)[1:] for line in out.splitlines()]
    assert lines[0] == [pid, "state", "RUNNING"]
    assert [pid, "output", "hello"] in lines
    assert lines[-1] == [pid, "finished", "SUCCEEDED (code 0)"]


def test_watch_started_after_the_petition_finished(
    env: Env, service: Service, tmp_path: Path
) -> None:
    pid, failed = new_id("wa"), new_id("wf")
    detach(env, pid, "echo hello", tmp_path)
    detach(env, failed, "exit 5", tmp_path)
    wait_ended(env, pid, failed)
    result = env.run("watch", pid, timeout=WAIT)
    assert (result.returncode, result.stderr) == (0, "")
    assert [line.split(" ", 1)[1] for line in result.stdout.splitlines()] == [
        f"{pid} finished SUCCEEDED (code 0)"]  # fmt: skip

    result = env.run("watch", "--json", failed, pid, timeout=WAIT)
    assert result.returncode == 0, result.stderr
    got = events(result.stdout.encode())
    assert {e["petition"] for e in got} == {pid, failed} and len(got) == 2
    for e in got:
        assert set(e) == ENVELOPE and e["event"] == "finished" and e["kind"] == "shell"
        assert isinstance(e["timestamp"], float)
    data = {e["petition"]: e["data"] for e in got}
    assert (data[failed]["state"], data[failed]["code"]) == ("FAILED", 5)
    assert (data[pid]["state"], data[pid]["code"]) == ("SUCCEEDED", 0)


def test_watch_json_envelopes_of_a_whole_lifecycle(
    env: Env, service: Service, start: Callable[..., Client], tmp_path: Path
) -> None:
    blocker, pid = new_id("blk"), new_id("life")
    (tmp_path / "b").mkdir()
    detach(env, blocker, GATE, tmp_path / "b")
    wait_running(env, blocker)
    watcher = start("watch", "--json")
    assert has_event(watcher, blocker, "state"), watcher.out.data  # subscribed now
    began = time.time()
    detach(env, pid, "echo hi; echo oops >&2; exit 3", tmp_path)
    assert has_event(watcher, pid, "finished"), watcher.out.data
    got = events(bytes(watcher.out.data))
    for e in got:
        assert set(e) == ENVELOPE, e
        assert isinstance(e["timestamp"], float) and e["kind"] == "shell"
    assert got[0]["event"] == "state" and got[0]["petition"] == blocker
    assert got[0]["data"]["state"] == "RUNNING"
    mine = [e for e in got if e["petition"] == pid]
    names = [e["event"] for e in mine]
    assert names[:2] == ["submitted", "started"] and names[-1] == "finished", names
    assert set(names[2:-1]) == {"output"}, names
    assert all(began - 1 <= e["timestamp"] <= time.time() for e in mine)
    assert [e["timestamp"] for e in mine] == sorted(e["timestamp"] for e in mine)
    assert mine[0]["data"] == {"priority": 0}
    out = {"stdout": "", "stderr": ""}
    for e in mine[2:-1]:
        out[e["data"]["stream"]] += e["data"]["text"]
    assert out == {"stdout": "hi\n", "stderr": "oops\n"}
    assert mine[-1]["data"]["state"] == "FAILED" and mine[-1]["data"]["code"] == 3
    assert watcher.proc.poll() is None  # without IDs it watches until stopped
    release(tmp_path / "b")
    assert has_event(watcher, blocker, "finished")


def test_watch_several_ids_exits_once_all_have_finished(
    env: Env, service: Service, start: Callable[..., Client], tmp_path: Path
) -> None:
    ended, live = new_id("we"), new_id("wl")
    detach(env, ended, "true", tmp_path)
    wait_ended(env, ended)
    detach(env, live, GATE, tmp_path)
    wait_running(env, live)
    watcher = start("watch", live, ended, "--json")
    assert has_event(watcher, ended, "finished")
    assert has_event(watcher, live, "state")
    time.sleep(0.3)
    assert watcher.proc.poll() is None
    release(tmp_path)
    rc, out, err = watcher.finish_text()
    assert (rc, err) == (0, "")
    got = events(out.encode())
    assert [(e["petition"], e["event"]) for e in got if e["event"] != "output"][-1] == (
        live, "finished")  # fmt: skip


def test_watch_of_an_unknown_petition_exits_209(env: Env, service: Service) -> None:
    unknown = new_id("nope")
    result = env.run("watch", unknown, timeout=WAIT)
    assert result.returncode == NO_PETITION and result.stdout == ""
    one_error(result.stderr, unknown)


def test_watch_of_an_array_exits_once_every_member_has_finished(
    env: Env, service: Service, start: Callable[..., Client], tmp_path: Path
) -> None:
    name = new_id("wa")
    # The first member ends at once, the second when released.
    script = f'[ "$ORCHA_ARRAY_INDEX" = 1 ] || {{ {GATE}; }}'
    result = env.run("run", name, "--detach", "--array", "1-2", "--", "sh", "-c", script,
                     cwd=tmp_path, timeout=WAIT)  # fmt: skip
    assert result.returncode == 0, result.stderr
    wait_ended(env, f"{name}_1")
    wait_running(env, f"{name}_2")
    watcher = start("watch", name, "--json")
    assert has_event(watcher, f"{name}_1", "finished")
    assert has_event(watcher, f"{name}_2", "state")
    assert watcher.proc.poll() is None  # it used to exit at the first member's end
    release(tmp_path)
    rc, out, err = watcher.finish_text()
    assert (rc, err) == (0, "")
    got = [(e["petition"], e["event"]) for e in events(out.encode()) if e["event"] != "output"]
    assert got[-1] == (f"{name}_2", "finished")
