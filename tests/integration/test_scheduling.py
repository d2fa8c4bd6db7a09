"""Scheduling as a user sees it: resources (CPU slots, memory, GPUs), dependencies,
timeouts, retries, environment and directory, groups, pause and resume.

Every test runs a real ``orcha serve`` and real processes. Petitions that must stay alive
for a while wait for a gate file in their working directory (the test's ``tmp_path``), so
the test decides when they end instead of sleeping.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from orcha.errors import PetitionError, wire_name
from orcha.protocol.messages import SubmitRequest
from orcha.protocol.transport import set_recv_timeout
from tests.conftest import Env, Service, wait_for
from tests.integration.clients import (
    WAIT,
    Client,
    gone,
    new_id,
    orcha,
    petition_processes,
    record,
    states,
    without_progress,
)

TIMEOUT = 124
REFUSED = 204
NO_PETITION = 209
DEPENDENCY_FAILED = 210
PROMPT = 3.0  # bound for what a user sees as "at once" (it takes well under a second)
MEMORY_WORDS = r"needs \d+\.\d GiB, \d+\.\d GiB free"


# -- helpers ---------------------------------------------------------------------------------
def gate(name: str = "go") -> str:
    """A shell loop that ends once the file ``name`` exists in the working directory."""
    return f"while [ ! -e {name} ]; do sleep 0.05; done"


def release(directory: Path, name: str = "go") -> None:
    (directory / name).touch()


def serve(env: Env, *args: str) -> Service:
    return env.serve("--grace", "2", *args)


def one_error(stderr: str, *words: str) -> None:
    """``stderr`` is exactly one ``orcha: `` line (no traceback) mentioning ``words``."""
    assert stderr.startswith("orcha: ") and stderr.endswith("\n"), stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    for word in words:
        assert word in stderr, stderr


def detach(env: Env, petition_id: str, script: str, cwd: Path, *options: str) -> None:
    """``orcha run ID --detach [OPTIONS] -- sh -c SCRIPT`` in ``cwd``; checks it was queued."""
    result = env.run(
        "run", petition_id, "--detach", *options, "--", "sh", "-c", script, cwd=cwd, timeout=WAIT
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{petition_id}\n", "")


def waiting(env: Env, petition_id: str) -> str:
    """Why a queued petition waits (``status --json``'s "waiting")."""
    row = record(env, petition_id)
    assert row["state"] == "QUEUED", row
    return str(row["waiting"])


def wait_running(env: Env, *ids: str) -> None:
    assert wait_for(lambda: all(states(env).get(i) == "RUNNING" for i in ids), WAIT), states(env)


def wait_ended(env: Env, *ids: str) -> None:
    orcha(env, "wait", *ids)


def ended(env: Env, petition_id: str) -> tuple[str, int | None]:
    """(state, code) once the petition has ended."""
    wait_ended(env, petition_id)
    row = record(env, petition_id)
    return row["state"], row["code"]


def logs(env: Env, petition_id: str) -> str:
    return orcha(env, "logs", petition_id)[0]


def groups(env: Env) -> dict[str, dict[str, Any]]:
    """``orcha group ls --json`` by group name."""
    answer = json.loads(orcha(env, "group", "ls", "--json")[0])
    return {g["name"]: g for g in answer["groups"]}


def group_table(stdout: str) -> dict[str, list[str]]:
    """The rows of the plain ``group ls`` table by group name (header checked)."""
    lines = stdout.splitlines()
    assert lines[0].split() == ["GROUP", "MAX", "RUNNING", "QUEUED", "STATE"], stdout
    return {line.split()[0]: line.split()[1:] for line in lines[1:]}


def pipelined(env: Env, *requests: dict[str, Any]) -> list[dict[str, Any]]:
    """Send ``requests`` over one session without waiting for replies (as requests of
    several clients arriving at the same moment); their replies, in order."""
    from orcha import settings
    from orcha.client.session import Session

    key = (env.state / "key").read_text().strip()
    session = Session.open(settings.resolve(address=str(env.socket), key=key))
    try:
        set_recv_timeout(session.fileno(), WAIT)  # a read past it raises
        for request in requests:
            fields = {k: v for k, v in request.items() if k != "op"}
            session.send(None, "call", request["op"], fields)
        replies: list[dict[str, Any]] = []
        for request in requests:
            try:
                replies.append({"re": request["op"], "ok": True, **session.recv()})
            except PetitionError as e:
                replies.append(
                    {
                        "re": request["op"],
                        "ok": False,
                        "error": wire_name(e.exit_code),
                        "message": e.message,
                    }
                )
        return replies
    finally:
        session.close()


def all_stopped(petition_id: str, stopped: bool) -> bool:
    """The petition has live processes, each stopped (``stopped``) or each not stopped."""
    procs = petition_processes(petition_id)
    try:
        return bool(procs) and all((p.status() == psutil.STATUS_STOPPED) == stopped for p in procs)
    except psutil.NoSuchProcess:
        return False


# -- memory ----------------------------------------------------------------------------------
def test_memory_gating_lets_pass_only_what_cannot_delay_the_blocked_one(
    env: Env, tmp_path: Path
) -> None:
    serve(env, "--max-running", "4")
    total = psutil.virtual_memory().total
    big, quick, held, free = new_id("big"), new_id("quick"), new_id("held"), new_id("free")
    detach(env, big, "echo big", tmp_path, "--mem", str(total))
    assert re.fullmatch(MEMORY_WORDS, waiting(env, big)), waiting(env, big)
    assert record(env, big)["schedule"]["mem"] == total

    # A later petition with a short --timeout cannot delay big much: it passes it.
    detach(env, quick, "echo quick", tmp_path, "--timeout", "5")
    assert ended(env, quick) == ("SUCCEEDED", 0)
    assert logs(env, quick) == "quick\n"
    # One without a timeout that takes memory could delay it without bound: it waits.
    detach(env, held, "echo held", tmp_path, "--mem", "1M")
    assert waiting(env, held).startswith(f"behind {big}, which waits for resources"), waiting(
        env, held
    )
    # One that takes no memory, and leaves a CPU slot for big, cannot delay it: it passes.
    detach(env, free, "echo free", tmp_path)
    assert ended(env, free) == ("SUCCEEDED", 0)
    assert record(env, big)["state"] == "QUEUED"

    orcha(env, "cancel", big)
    assert ended(env, held) == ("SUCCEEDED", 0)
    assert logs(env, held) == "held\n"
    assert ended(env, big) == ("CANCELLED", None)


def test_petitions_held_to_a_small_mem_are_never_charged_with_the_services_memory(
    env: Env, tmp_path: Path
) -> None:
    """Until it execs, a petition's new process shares the service's memory (clone3
    with CLONE_VM, orcha.service.native): a look at its memory then must not count the
    service's 100 MB against a --mem of 2 MiB. 400 short ones all succeed (before the
    fix, about 1 in 70 ended FAILED, code 211)."""
    serve(env, "--max-running", "2")
    name = new_id("small")
    result = env.run(
        "run", "--detach", "--array", "1-400", name, "--mem", "2M", "--", "true",
        cwd=tmp_path, timeout=WAIT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    done = env.run("wait", name, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    rows = json.loads(orcha(env, "status", "--json", name)[0])["petitions"]
    assert len(rows) == 400
    assert {(r["state"], r["code"]) for r in rows} == {("SUCCEEDED", 0)}


def test_memory_beyond_the_host_is_refused(env: Env, tmp_path: Path) -> None:
    serve(env)
    too_much = str(psutil.virtual_memory().total + (1 << 30))
    result = env.run("run", new_id("huge"), "--mem", too_much, "--", "true", timeout=WAIT)
    assert (result.returncode, result.stdout) == (REFUSED, ""), result.stderr
    one_error(result.stderr, "GiB", "--mem")
    assert states(env) == {}


# -- GPUs ------------------------------------------------------------------------------------
SHOW_GPUS = 'printf "[%s][%s]\\n" "${CUDA_VISIBLE_DEVICES-unset}" "${ORCHA_GPUS-unset}"'


def test_gpus_from_the_configured_inventory_are_handed_out_exclusively(
    env: Env, tmp_path: Path
) -> None:
    serve(env, "--gpus", "0,1", "--max-running", "4")
    # With GPUs in the inventory, a petition that asked for none sees none.
    stdout, _ = orcha(env, "run", new_id("nogpu"), "--", "sh", "-c", SHOW_GPUS)
    assert stdout == "[][]\n"

    first, second, third = new_id("g1"), new_id("g2"), new_id("g3")
    detach(env, first, f"{SHOW_GPUS}; {gate()}", tmp_path, "--gpus", "1")
    detach(env, second, f"{SHOW_GPUS}; {gate()}", tmp_path, "--gpus", "1")
    wait_running(env, first, second)
    detach(env, third, SHOW_GPUS, tmp_path, "--gpus", "1")
    assert waiting(env, third) == "needs 1 GPU(s), 0 free"

    given = {record(env, p)["gpus"][0] for p in (first, second)}
    assert given == {"0", "1"}
    assert wait_for(lambda: logs(env, first) != "" and logs(env, second) != "", WAIT)
    seen = {logs(env, first), logs(env, second)}
    assert seen == {"[0][0]\n", "[1][1]\n"}, seen

    result = env.run("run", new_id("g3x"), "--gpus", "3", "--", "true", timeout=WAIT)
    assert result.returncode == REFUSED, result.stderr
    one_error(result.stderr, "3 GPU(s)", "--gpus")

    release(tmp_path)
    assert ended(env, third) == ("SUCCEEDED", 0)
    assert logs(env, third) in ("[0][0]\n", "[1][1]\n")
    wait_ended(env, first, second)


def test_a_service_without_gpus_refuses_gpu_petitions(env: Env) -> None:
    serve(env, "--gpus", "none")
    result = env.run("run", new_id("gpu"), "--gpus", "1", "--", "true", timeout=WAIT)
    assert (result.returncode, result.stdout) == (REFUSED, ""), result.stderr
    one_error(result.stderr, "1 GPU(s)", "none")
    stdout, _ = orcha(env, "run", new_id("nogpu"), "--", "sh", "-c", SHOW_GPUS)
    # No inventory: nothing is hidden from it, and nothing added.
    assert stdout == f"[{env.vars.get('CUDA_VISIBLE_DEVICES', 'unset')}][unset]\n"


# -- CPU slots -------------------------------------------------------------------------------
def test_cpus_wait_for_enough_free_slots(env: Env, tmp_path: Path) -> None:
    serve(env, "--max-running", "2")
    (tmp_path / "one").mkdir()
    one, two, small = new_id("one"), new_id("two"), new_id("small")
    detach(env, one, gate(), tmp_path / "one")
    wait_running(env, one)
    detach(env, two, f"echo two; {gate()}", tmp_path, "--cpus", "2")
    assert waiting(env, two) == "needs 2 CPUs, 1 free"

    release(tmp_path / "one")
    wait_running(env, two)
    assert record(env, two)["schedule"]["cpus"] == 2
    detach(env, small, "echo small", tmp_path)
    assert waiting(env, small) == "waiting for a free slot (2/2 CPUs in use)"

    result = env.run("run", new_id("three"), "--cpus", "3", "--", "true", timeout=WAIT)
    assert (result.returncode, result.stdout) == (REFUSED, ""), result.stderr
    one_error(result.stderr, "3 CPUs", "--max-running")

    release(tmp_path)
    assert ended(env, small) == ("SUCCEEDED", 0)
    assert ended(env, two) == ("SUCCEEDED", 0)


# -- dependencies ----------------------------------------------------------------------------
def test_after_runs_each_once_the_one_before_succeeded(env: Env, tmp_path: Path) -> None:
    serve(env, "--max-running", "4")
    a, b, c = new_id("a"), new_id("b"), new_id("c")
    detach(env, a, f"{gate()}; echo a >> order", tmp_path)
    wait_running(env, a)
    detach(env, b, "echo b >> order", tmp_path, "--after", a)
    detach(env, c, "echo c >> order", tmp_path, "--after", b)
    assert waiting(env, b) == f"after {a} (running)"
    assert waiting(env, c) == f"after {b} (queued)"
    assert record(env, c)["schedule"]["after"] == [b]

    release(tmp_path)
    assert ended(env, c) == ("SUCCEEDED", 0)
    assert (tmp_path / "order").read_text() == "a\nb\nc\n"
    assert [ended(env, p) for p in (a, b)] == [("SUCCEEDED", 0)] * 2


def test_after_a_failure_fails_the_dependants_with_210(
    env: Env, tmp_path: Path, start: Callable[..., Client]
) -> None:
    serve(env, "--max-running", "4")
    a, b, c = new_id("a"), new_id("b"), new_id("c")
    detach(env, a, f"{gate()}; exit 3", tmp_path)
    wait_running(env, a)
    dependant = start("run", b, "--after", a, "--", "sh", "-c", "touch ran-b", cwd=tmp_path)
    assert wait_for(lambda: states(env).get(b) == "QUEUED", WAIT), states(env)
    detach(env, c, "touch ran-c", tmp_path, "--after", b)

    release(tmp_path)
    rc, out, err = dependant.finish_text()
    assert (rc, out) == (DEPENDENCY_FAILED, "")
    one_error(without_progress(err), a, "FAILED")  # it may say why it waits first
    row = record(env, b)
    assert (row["state"], row["code"], row["started"]) == ("FAILED", DEPENDENCY_FAILED, None)
    assert a in row["message"]
    # The failure cascades to what runs after b.
    assert ended(env, c) == ("FAILED", DEPENDENCY_FAILED)
    assert b in record(env, c)["message"]
    assert not (tmp_path / "ran-b").exists() and not (tmp_path / "ran-c").exists()


def test_after_any_runs_after_a_failure(env: Env, tmp_path: Path) -> None:
    serve(env)
    a = new_id("a")
    detach(env, a, "exit 3", tmp_path)
    assert ended(env, a) == ("FAILED", 3)
    stdout, stderr = orcha(env, "run", new_id("b"), "--after-any", a, "--", "echo", "after")
    assert (stdout, stderr) == ("after\n", "")


def test_after_an_unknown_id_is_refused_with_209(env: Env) -> None:
    serve(env)
    unknown = new_id("nope")
    result = env.run("run", new_id("b"), "--after", unknown, "--", "true", timeout=WAIT)
    assert (result.returncode, result.stdout) == (NO_PETITION, ""), result.stderr
    one_error(result.stderr, unknown)
    assert states(env) == {}


# -- timeouts --------------------------------------------------------------------------------
def test_timeout_stops_the_command_and_exits_124(
    env: Env, start: Callable[..., Client], tmp_path: Path
) -> None:
    serve(env)
    t = new_id("t")
    client = start("run", t, "--timeout", "1", "--", "sh", "-c", "sleep 300", cwd=tmp_path)
    assert wait_for(lambda: bool(petition_processes(t)), WAIT)
    procs = petition_processes(t)
    assert any(p.name() == "sleep" for p in procs), [p.cmdline() for p in procs]
    rc, out, err = client.finish_text()
    assert (rc, out) == (TIMEOUT, "")
    assert "timed out after 1s" in err, err
    row = record(env, t)
    assert (row["state"], row["code"], row["message"]) == ("FAILED", TIMEOUT, "timed out after 1s")
    # Stopped by the timeout, not by the end of its command (300 s): timed by the
    # service's own records, which a loaded machine slowing the client does not stretch;
    # the bound is a small fraction of the 300 s it discriminates from.
    ran = row["ended"] - row["started"]
    assert ran < 60, f"it ran {ran:.1f}s with a 1 s timeout"
    assert wait_for(lambda: all(gone(p.pid) for p in procs), WAIT)
    assert petition_processes(t) == []


def test_timeout_of_a_send_exits_124(env: Env) -> None:
    serve(env)
    s = new_id("s")
    result = env.run(
        "send", s, "--counter", "100", "--sleep-time", "0.1", "--timeout", "1", timeout=WAIT
    )
    assert result.returncode == TIMEOUT, (result.stdout, result.stderr)
    assert result.stdout.startswith("Hello world! 0\n")
    assert result.stdout.count("\n") < 100
    one_error(without_progress(result.stderr), "timed out after 1s")
    assert (record(env, s)["state"], record(env, s)["code"]) == ("FAILED", TIMEOUT)


def test_timeout_keeps_counting_while_paused(env: Env, tmp_path: Path) -> None:
    serve(env)
    t = new_id("tp")
    detach(env, t, "sleep 300", tmp_path, "--timeout", "3")
    assert wait_for(lambda: bool(petition_processes(t)), WAIT)
    orcha(env, "pause", t, "--running")
    assert wait_for(lambda: all_stopped(t, True), PROMPT)
    assert ended(env, t) == ("FAILED", TIMEOUT)
    row = record(env, t)
    # By the service's own times (a loaded machine slows the commands around it, not
    # these): it ended when its 3 s were up, paused or not.
    assert 3 <= row["ended"] - row["started"] < 3 + PROMPT, row
    assert row["message"] == "timed out after 3s"
    assert wait_for(lambda: not petition_processes(t), WAIT), petition_processes(t)


# -- retries ---------------------------------------------------------------------------------
def test_retries_run_again_and_report_each_failed_attempt(env: Env) -> None:
    serve(env)
    r = new_id("r")
    result = env.run(
        "run", r, "--retries", "2", "--retry-delay", "0.1", "--",
        "sh", "-c", "echo try $ORCHA_ATTEMPT; exit 3", timeout=WAIT,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert result.stdout == "try 1\ntry 2\ntry 3\n"
    assert result.stderr == (
        "orcha: attempt 1 of 3 failed (exit code 3); retrying in 0.1s\n"
        "orcha: attempt 2 of 3 failed (exit code 3); retrying in 0.1s\n"
        "orcha: failed after 3 attempts (the last: exit code 3)\n"
    )
    row = record(env, r)
    assert (row["state"], row["code"], row["attempt"]) == ("FAILED", 3, 3)
    assert row["message"] == "failed after 3 attempts (the last: exit code 3)"
    detail = orcha(env, "status", r)[0].splitlines()
    assert any(re.fullmatch(r"Attempt:\s+3/3", line) for line in detail), detail
    note = "attempt 3/3; failed after 3 attempts (the last: exit code 3)"
    assert any(re.fullmatch(r"Note:\s+" + re.escape(note), line) for line in detail), detail


def test_an_attempt_killed_by_its_timeout_leaves_the_next_attempts_and_petitions_whole(
    env: Env,
) -> None:
    """A timeout forced with SIGKILL (the cgroup's ``cgroup.kill``) once made every later
    process born in that cgroup die before it ran: the retry, then every petition."""
    serve(env, "--grace", "0.2")
    t = new_id("t")
    result = env.run(
        "run", t, "--timeout", "0.3", "--retries", "1", "--",
        "sh", "-c", "echo try $ORCHA_ATTEMPT; trap '' TERM; sleep 30", timeout=WAIT,
    )  # fmt: skip
    assert result.returncode == TIMEOUT, result.stderr
    assert result.stdout == "try 1\ntry 2\n"
    for n in range(3):  # more than the slots: every cgroup kept for later petitions
        assert orcha(env, "run", new_id("after"), "--", "echo", f"ran {n}")[0] == f"ran {n}\n"


def test_retries_stop_at_the_first_success(env: Env, tmp_path: Path) -> None:
    serve(env)
    r = new_id("r2")
    script = (
        "n=$(cat count 2>/dev/null || echo 0); n=$((n + 1)); echo $n > count; "
        'echo "attempt $ORCHA_ATTEMPT"; [ $n -ge 2 ]'
    )
    stdout, stderr = orcha(env, "run", r, "--retries", "3", "--", "sh", "-c", script, cwd=tmp_path)
    assert stdout == "attempt 1\nattempt 2\n"
    assert stderr == "orcha: attempt 1 of 4 failed (exit code 1); retrying\n"
    assert (tmp_path / "count").read_text() == "2\n"
    row = record(env, r)
    assert (row["state"], row["code"], row["attempt"]) == ("SUCCEEDED", 0, 2)


def test_ctrl_c_during_the_retry_delay_ends_promptly_with_130(
    env: Env, start: Callable[..., Client]
) -> None:
    service = serve(env)
    r = new_id("rint")
    client = start("run", r, "--retries", "1", "--retry-delay", "30", "--", "sh", "-c", "exit 3")
    try:
        assert client.err.wait_for(lambda d: b"retrying in 30s" in d), client.err.data
        client.proc.send_signal(signal.SIGINT)
        rc, out, err = client.finish_text(timeout=PROMPT)
        assert (rc, out) == (130, "")
        assert f"cancelling petition {r}" in err, err
        row = record(env, r)
        assert (row["state"], row["attempt"]) == ("CANCELLED", 1)
    finally:
        # A petition left in its retry delay would hold up the service's stop for 30 s.
        service.kill()


# -- environment and directory ---------------------------------------------------------------
def test_env_and_cwd_options(env: Env, tmp_path: Path) -> None:
    serve(env)
    (tmp_path / "sub").mkdir()
    pid = new_id("envcwd")
    script = 'printf "%s|%s|%s\\n" "$GREETING" "${EMPTY-unset}" "$(pwd -P)"'
    stdout, stderr = orcha(
        env, "run", pid, "--env", "GREETING=hi there", "--env", "EMPTY=", "--cwd", "sub",
        "--", "sh", "-c", script, cwd=tmp_path,
    )  # fmt: skip
    assert (stdout, stderr) == (f"hi there||{(tmp_path / 'sub').resolve()}\n", "")
    assert record(env, pid)["cwd"] == str(tmp_path / "sub")


def test_cwd_of_a_missing_directory_is_a_usage_error(env: Env, tmp_path: Path) -> None:
    # No service runs: a client that tried to reach one would exit 200, not 2.
    missing = tmp_path / "missing"
    result = env.run("run", new_id("nocwd"), "--cwd", str(missing), "--", "true", timeout=WAIT)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert "--cwd" in result.stderr and "does not exist" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# -- groups ----------------------------------------------------------------------------------
def test_group_limit_holds_its_petitions_and_rm_lifts_it(env: Env, tmp_path: Path) -> None:
    serve(env, "--max-running", "3")
    stdout, _ = orcha(env, "group", "set", "build", "--max-running", "1")
    assert group_table(stdout) == {"build": ["1", "0", "0", "admitting"]}

    (tmp_path / "b1").mkdir()
    b1, b2, other = new_id("b1"), new_id("b2"), new_id("other")
    detach(env, b1, gate(), tmp_path / "b1", "--group", "build")
    wait_running(env, b1)
    detach(env, b2, gate(), tmp_path, "--group", "build")
    assert waiting(env, b2) == "group build full (1/1)"
    assert record(env, b2)["schedule"]["group"] == "build"
    detach(env, other, gate(), tmp_path)  # the default group is not limited
    wait_running(env, other)

    table = group_table(orcha(env, "group", "ls")[0])
    assert table == {"build": ["1", "1", "1", "admitting"], "default": ["-", "1", "0", "admitting"]}
    assert group_table(orcha(env, "group")[0]) == table  # alone, it lists them (pueue's group)
    # The limit as a plain argument (pueue's 'parallel N'), the same as --max-running.
    assert group_table(orcha(env, "group", "set", "build", "1")[0])["build"][0] == "1"
    for args, words in (
        (("build",), "say how many may run at once: 'orcha group set build N'"),
        (("build", "1", "--max-running", "2"), "give the limit once"),
    ):
        _, err = orcha(env, "group", "set", *args, code=2)
        assert err.startswith("orcha group set: " + words) and err.count("\n") == 1, err
    assert groups(env) == {
        "build": {"name": "build", "max_running": 1, "running": 1, "queued": 1, "paused": False},
        "default": {"name": "default", "max_running": None, "running": 1, "queued": 0,
                    "paused": False},
    }  # fmt: skip

    _, stderr = orcha(env, "group", "rm", "build")
    assert stderr == "orcha: group build has no limit of its own now\n"
    # A notice goes in the JSON, not on stderr (docs/json-output.rst): a limit above the
    # capacity is a warning; a wait with nothing to wait for is an empty report.
    _, stderr = orcha(env, "group", "set", "wide", "9")
    assert "warning: group wide's limit of 9 running is above the service's capacity" in stderr
    out, stderr = orcha(env, "group", "set", "wide", "9", "--json")
    assert (
        stderr == "" and "above the service's capacity" in json.loads(out)["groups"][0]["warning"]
    ), (out, stderr)
    orcha(env, "group", "rm", "wide")
    assert orcha(env, "wait", "--group", "wide", "--json") == (
        '{"petitions": [], "failed": 0, "pending": [], "timed_out": false}\n',
        "",
    )
    wait_running(env, b2)
    assert states(env)[b1] == "RUNNING"
    assert groups(env)["build"]["max_running"] is None

    release(tmp_path / "b1")
    release(tmp_path)
    wait_ended(env, b1, b2, other)


def test_group_limits_and_pauses_survive_a_restart(env: Env) -> None:
    service = serve(env)
    orcha(env, "group", "set", "build", "--max-running", "2")
    orcha(env, "pause", "--group", "frozen")
    assert service.stop() == 0
    serve(env)
    saved = groups(env)
    assert saved["build"]["max_running"] == 2
    assert saved["frozen"]["paused"] is True
    assert saved["default"]["paused"] is False


# -- pause and resume ------------------------------------------------------------------------
def test_pause_and_resume_a_group(env: Env, tmp_path: Path) -> None:
    serve(env)
    _, stderr = orcha(env, "pause", "--group", "g")
    # Held for petitions to come (a pause is for now and later), with a note: nobody
    # uses the group yet.
    assert stderr == "orcha: paused group g (no petition is in it yet)\n"
    held, free = new_id("held"), new_id("free")
    detach(env, held, "echo held", tmp_path, "--group", "g")
    assert waiting(env, held) == "group g is paused ('orcha resume --group g')"
    detach(env, free, "echo free", tmp_path)
    assert ended(env, free) == ("SUCCEEDED", 0)
    assert states(env) == {held: "QUEUED"}
    assert groups(env)["g"]["paused"] is True

    _, stderr = orcha(env, "resume", "--group", "g")
    assert stderr == "orcha: resumed group g\n"
    assert ended(env, held) == ("SUCCEEDED", 0)
    assert logs(env, held) == "held\n"


def test_pausing_a_group_nobody_uses_names_the_close_one(env: Env, tmp_path: Path) -> None:
    """pueue refuses an unknown group; orcha's pause holds a group for petitions to come,
    so a slip ('biuld') is paused, but said so, with the group it may have meant."""
    serve(env)
    orcha(env, "group", "set", "build", "1")
    _, stderr = orcha(env, "pause", "--group", "biuld")
    assert stderr == "orcha: paused group biuld (no petition is in it yet; did you mean 'build'?)\n"
    _, stderr = orcha(env, "pause", "--group", "build")
    assert stderr == "orcha: paused group build\n"


def test_pause_running_stops_its_processes_and_resume_continues_them(
    env: Env, tmp_path: Path
) -> None:
    serve(env)
    p = new_id("stop")
    # A tree that forks nothing once started, so every one of its processes can be seen
    # stopped; paused once they all exist (a pause that comes sooner: the test below).
    detach(env, p, "sleep 300 & sleep 300 & echo started; wait", tmp_path)
    assert wait_for(lambda: logs(env, p) == "started\n" and len(petition_processes(p)) == 3, WAIT)
    assert all_stopped(p, False)

    _, stderr = orcha(env, "pause", p, "--running")
    assert stderr == f"orcha: paused {p}\n"
    assert wait_for(lambda: all_stopped(p, True), PROMPT), [
        (x.pid, x.status()) for x in petition_processes(p)
    ]
    row = record(env, p)
    assert (row["state"], row["paused"]) == ("RUNNING", True)
    assert row["waiting"] == f"stopped (SIGSTOP); 'orcha resume {p}' continues it"

    _, stderr = orcha(env, "resume", p)
    assert stderr == f"orcha: resumed {p}\n"
    assert wait_for(lambda: all_stopped(p, False), PROMPT)
    assert len(petition_processes(p)) == 3
    row = record(env, p)
    assert (row["state"], row["paused"]) == ("RUNNING", False)
    assert "waiting" not in row

    orcha(env, "cancel", p)
    assert ended(env, p)[0] == "CANCELLED"
    assert wait_for(lambda: not petition_processes(p), WAIT), petition_processes(p)


def test_pause_running_right_after_admission_still_stops_the_petition(
    env: Env, tmp_path: Path
) -> None:
    serve(env)
    p = new_id("early")
    # One session, two frames without waiting: a 'pause --running' that arrives the
    # moment the petition is admitted, as a script's 'run --detach' + 'pause' may.
    submit = SubmitRequest(
        "shell", p, {"argv": ["sleep", "300"]}, None, str(tmp_path), dict(env.vars),
        attach=False, user="test", host="test",
    )  # fmt: skip
    pause = {"op": "pause", "ids": [p], "groups": [], "all": False, "running": True}
    replies = pipelined(env, {"op": "submit", **submit.to_wire()}, pause)
    assert replies[1]["results"] == {p: "paused"}, replies
    try:
        assert wait_for(lambda: bool(petition_processes(p)), WAIT)
        row = record(env, p)
        assert (row["state"], row["paused"]) == ("RUNNING", True)
        assert wait_for(lambda: all_stopped(p, True), PROMPT), [
            (x.pid, x.status()) for x in petition_processes(p)
        ]
    finally:
        orcha(env, "cancel", p)
        wait_ended(env, p)


def test_a_stopped_petition_makes_no_progress_until_resumed(env: Env, tmp_path: Path) -> None:
    serve(env)
    p = new_id("frozen")
    detach(env, p, f"echo begun; {gate()}; echo done", tmp_path)
    assert wait_for(lambda: logs(env, p) == "begun\n", WAIT)
    orcha(env, "pause", p, "--running")
    release(tmp_path)  # a stopped petition cannot notice it
    time.sleep(0.5)
    assert states(env).get(p) == "RUNNING" and logs(env, p) == "begun\n"
    orcha(env, "resume", p)
    assert ended(env, p) == ("SUCCEEDED", 0)
    assert logs(env, p) == "begun\ndone\n"


def test_pause_everything_and_resume_all(env: Env, tmp_path: Path) -> None:
    serve(env)
    _, stderr = orcha(env, "pause")
    assert stderr == "orcha: paused everything\n"
    p = new_id("all")
    detach(env, p, "echo ran", tmp_path)
    assert waiting(env, p) == "all petitions are paused ('orcha resume --all')"
    assert all(g["paused"] for g in groups(env).values())

    _, stderr = orcha(env, "resume", "--all")
    assert stderr == "orcha: resumed everything\n"
    assert ended(env, p) == ("SUCCEEDED", 0)
    assert not any(g["paused"] for g in groups(env).values())


def test_pause_a_queued_petition_by_id(env: Env, tmp_path: Path) -> None:
    serve(env, "--max-running", "1")
    blocker, q = new_id("blk"), new_id("q")
    detach(env, blocker, gate(), tmp_path)
    wait_running(env, blocker)
    detach(env, q, "echo q", tmp_path)
    orcha(env, "pause", q)
    assert waiting(env, q) == f"paused ('orcha resume {q}')"
    assert record(env, q)["paused"] is True
    release(tmp_path)
    assert ended(env, blocker) == ("SUCCEEDED", 0)
    time.sleep(0.3)  # a slot is free: had it not been paused, it would have started
    assert states(env) == {q: "QUEUED"}
    orcha(env, "resume", q)
    assert ended(env, q) == ("SUCCEEDED", 0)


def test_pause_or_resume_of_an_unknown_id_exits_209(env: Env) -> None:
    serve(env)
    unknown = new_id("nope")
    for command in ("pause", "resume"):
        stdout, stderr = orcha(env, command, unknown, code=NO_PETITION)
        assert stdout == ""
        one_error(stderr, unknown)


# -- predicates from plugins -----------------------------------------------------------------
GATE_PLUGIN = '''
"""A plugin found by its module name (orcha_*): two predicates for every petition."""
import os

from orcha.plugins import BasePlugin


def door_open(petition):
    return os.path.exists(os.environ["ORCHA_TEST_DOOR"])


def broken_for_boom(petition):
    if str(petition.id).startswith("boom"):
        raise RuntimeError("plugin bug")
    return True


class GatePlugin(BasePlugin):
    name = "gatetest"

    def predicates(self):
        return [door_open, broken_for_boom]


plugin = GatePlugin
'''


def test_plugin_predicates_compose_with_resources_and_a_raising_one_is_contained(
    env: Env, tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "orcha_gatetest.py").write_text(GATE_PLUGIN)
    door = tmp_path / "door"
    service = env.serve(
        "--grace", "2", env={"PYTHONPATH": str(plugins), "ORCHA_TEST_DOOR": str(door)}
    )
    p1, boom, p2 = new_id("pred"), new_id("boom"), new_id("pred2")
    detach(env, p1, "true", tmp_path)
    assert waiting(env, p1) == "waiting for a plugin's predicate to hold"
    door.touch()  # nothing tells orcha: its recheck (once a second) notices
    assert ended(env, p1) == ("SUCCEEDED", 0)

    detach(env, boom, "true", tmp_path)
    detach(env, p2, "true", tmp_path)
    assert ended(env, p2) == ("SUCCEEDED", 0)  # the raising predicate holds back no one
    time.sleep(2.5)  # a few rechecks
    assert waiting(env, boom) == "waiting for a plugin's predicate to hold"
    raised = [line for line in service.stderr_lines if f"condition of petition {boom}" in line]
    assert len(raised) == 1, service.stderr_lines  # logged once, not at every recheck
    orcha(env, "cancel", boom)
    assert service.proc is not None and service.proc.poll() is None  # still serving
