"""Hold, delay and at; release; edit; restart; Slurm's durations; passing a petition that
waits for GPUs: against one real ``orcha serve`` (3 slots, 1 GPU) shared by the module's
tests, as a user types them."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orcha.client.api import Client
from orcha.errors import PetitionError
from orcha.units import clock_time
from tests.conftest import Env, wait_for
from tests.integration.clients import WAIT, Stream, new_id, orcha

REFUSED = 204
DUPLICATE = 202
NO_PETITION = 209


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    """One environment and service for the module (each test uses its own IDs)."""
    root = Path(tempfile.mkdtemp(prefix="orcha-t-", dir="/tmp"))
    e = Env(root)
    try:
        e.serve("--max-running", "3", "--gpus", "0", "--grace", "2")
        yield e
    finally:
        for service in e.services:
            service.stop(timeout=20)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[Client]:
    """The Python client of the module's service (cheaper than a command per look)."""
    with Client(str(env.socket), (env.state / "key").read_text().strip(), timeout=WAIT) as c:
        yield c


def ended(client: Client, *ids: str) -> dict[str, str]:
    return {i: s["state"] for i, s in client.wait_summaries(ids).items()}


def record(client: Client, petition_id: str) -> dict[str, Any]:
    (row,) = client.status([petition_id])
    return dict(row)


def detach(env: Env, petition_id: str, *options_and_command: str, cwd: Path | None = None) -> None:
    out, err = orcha(env, "run", petition_id, "--detach", *options_and_command, cwd=cwd)
    assert (out, err) == (f"{petition_id}\n", "")


def one_line(stderr: str, *words: str) -> None:
    assert stderr.startswith("orcha: ") and stderr.count("\n") == 1, stderr
    for word in words:
        assert word in stderr, stderr


def test_hold_delay_at_release_and_edit(env: Env, client: Client) -> None:
    held, later, at = new_id("held"), new_id("later"), new_id("at")
    detach(env, held, "--hold", "--", "echo", "held")
    # Slurm's MM:SS: one second; the service's timer starts it with nothing else happening
    detach(env, later, "--delay", "0:01", "--", "echo", "later")
    start = time.time() + 7200
    hhmm = time.strftime("%H:%M", time.localtime(start))
    detach(env, at, "--at", hhmm, "--timeout", "1h30m", "--", "true")
    assert record(client, held)["waiting"] == f"held ('orcha release {held}')"
    row = record(client, at)
    assert row["waiting"] == f"starts at {clock_time(start // 60 * 60, time.time())}", row
    assert row["schedule"]["timeout"] == 5400.0
    assert ended(client, later) == {later: "SUCCEEDED"}
    assert record(client, held)["state"] == "QUEUED"

    # edit: the change shows in status and is kept in the record
    _, err = orcha(env, "edit", held, "--priority", "-2", "--timeout", "2-00:00:00", "--cpus", "2")
    assert err == f"orcha: edited {held}: priority -2, cpus=2, held, timeout=172800.0\n"
    row = record(client, held)
    assert (row["priority"], row["schedule"]) == (
        -2,
        {"cpus": 2, "hold": True, "timeout": 172800.0},
    )
    result = env.run("edit", later, "--priority", "1", timeout=WAIT)
    assert result.returncode == NO_PETITION
    one_line(result.stderr, "has ended (SUCCEEDED)", "only a queued one can be edited")

    # release: both start now
    _, err = orcha(env, "release", held, at)
    assert err == f"orcha: released {held}\norcha: released {at}\n"
    assert ended(client, held, at) == {held: "SUCCEEDED", at: "SUCCEEDED"}
    assert list(client.logs(held)) == [("stdout", b"held\n")]


def test_a_petition_in_the_wrong_state_is_one_documented_code(env: Env, client: Client) -> None:
    """release and edit of one not queued: 209 (as cancel of an ended one, clean of a
    live one); restart of one queued or running: 202 (its ID is taken); each --help says."""
    live, plain = new_id("live"), new_id("plain")
    detach(env, live, "--", "sleep", "30")
    assert wait_for(lambda: record(client, live)["state"] == "RUNNING", WAIT)
    detach(env, plain, "--after-any", live, "--", "true")  # waits, neither held nor delayed
    try:
        for args, code, words in (
            (("release", live), NO_PETITION, "only a queued one can be released"),
            (("release", plain), NO_PETITION, "neither held nor delayed"),
            (("edit", live, "--priority", "1"), NO_PETITION, "only a queued one can be edited"),
            (("restart", live), DUPLICATE, "is still running"),
        ):
            result = env.run(*args, timeout=WAIT)
            assert result.returncode == code, (args, result.stderr)
            one_line(result.stderr, f"petition '{args[1]}'", words)
    finally:
        client.cancel(live)
    for command, codes in (("release", "209"), ("edit", "209"), ("restart", "202")):
        text = " ".join(orcha(env, command, "--help")[0].split())
        assert "Exit 0 " in text and codes in text, (command, text)
    assert ended(client, plain) == {plain: "SUCCEEDED"}


def test_edit_of_an_array_name_edits_its_queued_members(env: Env, client: Client) -> None:
    name = new_id("sweep")
    orcha(env, "run", "--detach", "--hold", "--array", "1-3", name, "--", "true")
    _, err = orcha(env, "edit", name, "--priority", "4", "--timeout", "90")
    assert (
        err == f"orcha: edited array {name} (3 queued petitions): priority 4, held, timeout=90.0\n"
    )
    members = [f"{name}_{i}" for i in (1, 2, 3)]
    for member in members:
        row = record(client, member)
        assert (row["priority"], row["schedule"]) == (4, {"hold": True, "timeout": 90.0})
    # More CPUs than the service has: refused in one line, and no member is changed.
    result = env.run("edit", name, "--cpus", "64", timeout=WAIT)
    assert result.returncode == REFUSED
    one_line(result.stderr, "asks for 64 CPUs")
    assert all("cpus" not in record(client, m)["schedule"] for m in members)
    orcha(env, "release", name)
    assert ended(client, *members) == dict.fromkeys(members, "SUCCEEDED")
    result = env.run("edit", name, "--priority", "1", timeout=WAIT)
    assert result.returncode == NO_PETITION
    one_line(result.stderr, f"array '{name}' has no queued petition")


def test_edit_refuses_a_dependency_cycle_and_after_empty_drops_dependencies(
    env: Env, client: Client
) -> None:
    first, then = new_id("cy1"), new_id("cy2")
    detach(env, first, "--hold", "--", "true")
    detach(env, then, "--after", first, "--", "true")
    result = env.run("edit", first, "--after", then, timeout=WAIT)
    assert result.returncode == REFUSED
    one_line(result.stderr, f"({first} -> {then} -> {first})", "check --after")
    assert record(client, first)["schedule"] == {"hold": True}
    _, err = orcha(env, "edit", then, "--after", "")
    assert err == f"orcha: edited {then}: priority 0\n"
    assert ended(client, then) == {then: "SUCCEEDED"}  # it waited for nothing more
    orcha(env, "release", first)
    assert ended(client, first) == {first: "SUCCEEDED"}


def test_restart_of_an_array_name_runs_its_failed_members_again(
    env: Env, client: Client, tmp_path: Path
) -> None:
    name, flag = new_id("sweep"), tmp_path / "fixed"
    script = f'test "$ORCHA_ARRAY_INDEX" != 2 || test -e {flag}'  # member 2 fails until fixed
    orcha(env, "run", "--detach", "--array", "1-3", name, "--", "sh", "-c", script)
    members = [f"{name}_{i}" for i in (1, 2, 3)]
    assert ended(client, *members) == {members[0]: "SUCCEEDED", members[1]: "FAILED",
                                       members[2]: "SUCCEEDED"}  # fmt: skip
    flag.touch()
    _, err = orcha(env, "restart", name, "--failed")
    assert err == f"orcha: restarted {members[1]}\n"
    assert ended(client, *members) == dict.fromkeys(members, "SUCCEEDED")
    assert orcha(env, "wait", name) == ("", "")  # the array's newest runs all succeeded
    result = env.run("restart", name, "--failed", timeout=WAIT)
    assert result.returncode == 209
    one_line(result.stderr, f"array '{name}' has no failed petition to restart")


def test_restart_runs_ended_petitions_again_as_new_records(
    env: Env, client: Client, tmp_path: Path
) -> None:
    job, bad, live = new_id("job"), new_id("bad"), new_id("live")
    out, _ = orcha(env, "run", job, "--env", "WHO=orcha", "--", "sh", "-c", 'echo "$WHO in $PWD"',
                   cwd=tmp_path)  # fmt: skip
    assert out == f"orcha in {tmp_path}\n"
    old = record(client, job)
    # the same command, directory and environment; --cpus overrides; --follow streams it
    out, err = orcha(env, "restart", job, "--cpus", "2", "--follow", cwd=Path("/"))
    assert (out, err) == (f"orcha in {tmp_path}\n", f"orcha: restarted {job}\n")
    new = record(client, job)
    assert new["seq"] != old["seq"] and new["restart_of"] == old["seq"]
    assert new["schedule"] == {"cpus": 2} and new["cwd"] == str(tmp_path)

    client.submit(bad, ["sh", "-c", "exit 3"], detach=True)
    assert ended(client, bad) == {bad: "FAILED"}
    answer = json.loads(orcha(env, "restart", "--failed", "--json")[0])
    assert answer["results"] == {bad: "restarted"}
    assert [r["restart_of"] for r in answer["restarted"]] == [record(client, bad)["restart_of"]]

    client.submit(live, ["sleep", "30"], detach=True)
    with pytest.raises(PetitionError) as refused:
        client.restart(live)
    assert refused.value.exit_code == DUPLICATE
    assert refused.value.message.startswith(f"petition '{live}' is still")
    client.cancel(live)


def test_a_numbered_petition_restarts_as_a_new_number_and_follow_streams_that(
    env: Env, client: Client
) -> None:
    out, _ = orcha(env, "run", "--detach", "--", "sh", "-c", "echo n; exit 3")
    first = out.strip()
    assert first.isdigit() and ended(client, first) == {first: "FAILED"}
    out, err = orcha(env, "restart", first, "--follow", code=3)
    (new,) = [r for r in client.status([]) if r.get("restart_of") == int(first)]
    assert new["id"] == str(new["seq"]) != first
    assert (out, err) == ("n\n", f"orcha: restarted {first} as {new['id']}\n")


def test_a_cpu_only_petition_passes_one_that_waits_for_the_gpu(
    env: Env, client: Client, tmp_path: Path
) -> None:
    g1, g5, cpu = new_id("g1"), new_id("g5"), new_id("cpu")
    gate = "while [ ! -e go ]; do sleep 0.05; done"
    client.submit(g1, ["sh", "-c", gate], gpus=1, cwd=str(tmp_path), detach=True)
    client.submit(g5, ["echo", "gpu"], gpus=1, detach=True)
    # no --timeout: it passes g5 because it takes no GPU and leaves g5 a CPU slot
    detach(env, cpu, "--", "echo", "cpu")
    assert ended(client, cpu) == {cpu: "SUCCEEDED"}
    row = record(client, g5)
    assert (row["state"], row["waiting"]) == ("QUEUED", "needs 1 GPU(s), 0 free")
    (tmp_path / "go").touch()
    assert ended(client, g1, g5) == {g1: "SUCCEEDED", g5: "SUCCEEDED"}


def test_a_start_time_is_said_in_the_clients_time_zone(env: Env, client: Client) -> None:
    # A user in New York types --at 08:00; the service may run in another zone (UTC, as
    # a systemd unit's often is): 'orcha run' attached, 'status' and 'top' say 08:00.
    import datetime
    from zoneinfo import ZoneInfo

    new_york = ZoneInfo("America/New_York")
    day = datetime.datetime.now(new_york).date() + datetime.timedelta(days=2)
    at = f"{day.isoformat()}T08:00"
    said = f"starts at {day.isoformat()} 08:00"
    there = {"TZ": "America/New_York"}
    pid = new_id("tz")
    proc = env.popen("run", pid, "--at", at, "--", "true", env=there)
    try:
        err = Stream(proc.stderr)  # type: ignore[arg-type]
        assert err.wait_for(lambda data: b")\n" in data), err.data
        assert bytes(err.data).decode() == f"orcha: queued ({said})\n"
        out, _ = orcha(env, "status", pid, extra=there)
        assert f"Note:      {said}\n" in out
        out, _ = orcha(env, "top", "--once", extra=there)
        assert said in next(line for line in out.splitlines() if pid in line)
    finally:
        orcha(env, "cancel", pid)
        proc.wait(timeout=WAIT)
