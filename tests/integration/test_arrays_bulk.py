"""Arrays (run --array, run --each) and bulk operations (cancel/wait/clean by
selection, cancel --signal, logs of several IDs, follow --lines) against one real
service shared by the module's tests (each test uses its own names)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Env, private_env, wait_for


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with private_env() as e:
        e.serve("--max-running", "3", "--grace", "1")
        yield e


def _records(env: Env, *ids: str) -> list[dict]:  # type: ignore[type-arg]
    result = env.run("status", "--json", *ids)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout)["petitions"])


def test_an_array_keeps_its_limit_and_its_name_stands_for_its_members(env: Env) -> None:
    script = 'echo "$ORCHA_ARRAY_INDEX:{}"; sleep 0.1; [ {} -ne 4 ]'
    run = env.run("run", "arr", "--array", "1-6%2", "--", "sh", "-c", script)
    assert run.returncode == 1, run.stderr
    assert sorted(run.stdout.splitlines()) == [f"[arr_{i}] {i}:{i}" for i in range(1, 7)]
    assert "orcha: array arr: 6 petition(s) queued (arr_1 to arr_6), at most 2 at once" in (
        run.stderr
    )
    assert "orcha: array arr: 1 of 6 failed: arr_4 (FAILED, code 1)" in run.stderr
    members = _records(env, "arr")
    assert [m["id"] for m in members] == [f"arr_{i}" for i in range(1, 7)]
    # Never more than 2 at once: at each start, fewer than 2 others had started and
    # not yet ended.
    for m in members:
        overlapping = [o for o in members if o is not m
                       and o["started"] <= m["started"] < o["ended"]]  # fmt: skip
        assert len(overlapping) < 2, (m["id"], [o["id"] for o in overlapping])
    waited = env.run("wait", "arr")
    assert waited.returncode == 1
    assert "orcha: 1 of 6 failed: arr_4 (FAILED, code 1)" in waited.stderr
    logs = env.run("logs", "arr")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.splitlines()[:2] == ["[arr_1] 1:1", "[arr_2] 2:2"]
    cancelled = env.run("cancel", "arr")
    assert cancelled.returncode == 209
    assert cancelled.stderr == (
        "orcha: array 'arr' has no queued or running petition; nothing to cancel\n"
    )


def test_each_line_of_stdin_is_a_petition(env: Env, tmp_path: Path) -> None:
    run = env.run("run", "ea", "--each", "-", "--detach", "--", "sh", "-c", "echo [{}] >&2",
                  input=b"one two\n\nthree\n")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout == "ea\n"
    assert env.run("wait", "ea").returncode == 0
    logs = env.run("logs", "ea")
    assert logs.stderr.splitlines() == ["[ea_1] [one two]", "[ea_3] [three]"]
    refused = env.run("run", "eb", "--each", str(tmp_path / "none"), "--", "true")
    assert refused.returncode == 2 and "cannot read" in refused.stderr


def test_an_attached_array_says_that_a_piped_stdin_was_not_sent(env: Env) -> None:
    """B15: the members read /dev/null; a piped stdin was dropped without a word."""
    script = 'echo "m{} got $(wc -l) lines"'
    run = env.run("run", "ain", "--array", "1-2", "--", "sh", "-c", script, input=b"1\n2\n3\n")
    assert run.returncode == 0, run.stderr
    assert sorted(run.stdout.splitlines()) == [f"[ain_{i}] m{i} got 0 lines" for i in (1, 2)]
    notice = [line for line in run.stderr.splitlines() if "stdin" in line]
    assert notice == [
        "orcha: array ain: its members do not read this stdin (they read /dev/null); it "
        "was not sent (--no-stdin: no such line)"
    ], run.stderr
    # Not with --no-stdin, --detach, a stdin that is /dev/null, or --each - (it is the list).
    for args, given in (
        (["ain2", "--array", "1", "--no-stdin"], b"x\n"),
        (["ain3", "--array", "1", "--detach"], b"x\n"),
        (["ain4", "--array", "1"], None),
        (["ain5", "--each", "-"], b"x\n"),
    ):
        quiet = env.run("run", *args, "--", "true", input=given)
        assert quiet.returncode == 0, quiet.stderr
        assert "stdin" not in quiet.stderr, (args, quiet.stderr)
    assert env.run("wait", "ain3").returncode == 0


def test_a_detached_array_with_json_prints_its_name_and_members_as_json(env: Env) -> None:
    run = env.run("run", "aj", "--array", "1-2", "--detach", "--json", "--", "true")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"name": "aj", "ids": ["aj_1", "aj_2"]}
    assert run.stderr == ""  # the notice is left out, as with every --json
    run = env.run("run", "--each", "-", "--detach", "--json", "--", "echo", input=b"a\nb\n")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["ids"] == [f"{doc['name']}_1", f"{doc['name']}_2"]
    attached = env.run("run", "ak", "--array", "1-2", "--json", "--", "true")
    assert attached.returncode == 2 and attached.stdout == ""
    assert "--json goes with --detach" in attached.stderr
    assert env.run("wait", "aj", doc["name"]).returncode == 0


def test_a_missing_id_among_several_exits_209_after_the_others(env: Env) -> None:
    """follow, as logs and status: the others' output, one line about the missing ID,
    then 209 (README: follow is among the commands that exit 209)."""
    assert env.run("run", "fm1", "--", "echo", "hello").returncode == 0
    for command in ("follow", "logs", "status"):
        result = env.run(command, "fm1", "nonexist")
        assert result.returncode == 209, (command, result)
        assert "hello" in result.stdout or "fm1" in result.stdout, (command, result)
        assert result.stderr.count("\n") == 1 and "'nonexist'" in result.stderr, result
    for command in ("wait", "watch"):  # these refuse at once: nothing to wait for
        result = env.run(command, "fm1", "nonexist", timeout=30)
        assert (result.returncode, result.stderr) == (
            209, "orcha: no petition has ID 'nonexist'\n"), result  # fmt: skip


def test_bulk_signal_wait_cancel_clean_follow(env: Env) -> None:
    trap = 'trap "echo got usr1; exit 0" USR1; echo ready; while :; do sleep 0.05; done'
    for name in ("b1", "b2"):
        assert env.run("run", name, "--group", "bulk", "--detach", "--", "sh", "-c",
                       trap).returncode == 0  # fmt: skip
    assert env.run("run", "b3", "--group", "bulk", "--detach", "--", "sleep", "30").returncode == 0
    # Both traps are set once both said so (their logs, prefixed [b1] and [b2]).
    assert wait_for(lambda: env.run("logs", "b1", "b2").stdout.count("ready") == 2)
    signalled = env.run("cancel", "b1", "--signal", "USR1")
    assert signalled.returncode == 0, signalled.stderr
    assert "orcha: sent SIGUSR1 to 1 running petition(s): b1" in signalled.stderr
    timed_out = env.run("wait", "--group", "bulk", "--timeout", "0.5s")
    assert timed_out.returncode == 124, timed_out.stderr
    assert "timed out after 0.5s: 2 of 2 have not ended: b2, b3" in timed_out.stderr
    follow = env.run("follow", "b1", "--lines", "1")
    assert (follow.returncode, follow.stdout) == (0, "got usr1\n")
    cancelled = env.run("cancel", "--group", "bulk")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "orcha: cancelled 2 petition(s): b2, b3" in cancelled.stderr
    assert env.run("wait", "b2", "b3").returncode == 0
    # b1 succeeded (its trap exited 0): only the two cancelled ones go, and 'nope' is said.
    cleaned = env.run("clean", "b1", "b2", "b3", "nope", "--state", "cancelled")
    assert cleaned.returncode == 209, cleaned.stderr
    assert cleaned.stderr == (
        "orcha: removed 2 ended petition(s)\norcha: no petition has ID 'nope'; not cleaned\n"
    )


def test_ctrl_c_in_an_attached_array_cancels_the_members_left(env: Env) -> None:
    proc = env.popen("run", "cc", "--array", "1-3%1", "--", "sh", "-c", "echo up; sleep 30")
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline() == b"[cc_1] up\n"  # the first member runs
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        err = proc.stderr.read().decode()
        assert "orcha: cancelled 3 petition(s) of array cc that had not ended" in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert wait_for(lambda: {r["state"] for r in _records(env, "cc")} == {"CANCELLED"})


def test_a_detached_array_is_queued_by_the_fast_path_with_its_name_printed(env: Env) -> None:
    """'run --detach --array SPEC ID' (the fast path: no click imported) prints the
    array's name on stdout and what was queued on stderr; its members run with their
    indices; a nameless one gets the service's name; a wrong SPEC is click's error."""
    # The fast path serves the commands click last found (its note, which is keyed by
    # sys.path: written here by the same kind of interpreter line, through click). Then
    # click cannot be imported: only the fast path can queue the array.
    main = "from orcha.cli.main import main; sys.exit(main(sys.argv[1:]))"
    quiet = env.root / "fast-path-cwd"  # sys.path[0] of 'python -c': nothing changes it
    quiet.mkdir(exist_ok=True)

    def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code, *args], env=env.vars, capture_output=True, text=True,
            timeout=60, stdin=subprocess.DEVNULL, cwd=quiet,
        )  # fmt: skip

    assert python(f"import sys; {main}", "ls").returncode == 0
    probe = f"import sys; sys.modules['click'] = None; {main}"
    script = 'echo "$ORCHA_ARRAY_INDEX {}"'
    args = ["run", "--detach", "--array", "1-4%2", "fa", "--", "sh", "-c", script]
    done = python(probe, *args)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "fa\n"
    queued = "orcha: array fa: 4 petition(s) queued (fa_1 to fa_4), at most 2 at once"
    assert done.stderr == queued + "\n"
    assert env.run("wait", "fa").returncode == 0
    for i in range(1, 5):
        assert env.run("logs", f"fa_{i}").stdout == f"{i} {i}\n"
    nameless = env.run("run", "--detach", "--array", "1-2", "--", "true")
    assert nameless.returncode == 0 and nameless.stdout.startswith("array"), nameless.stderr
    wrong = env.run("run", "--detach", "--array", "2-1", "fb", "--", "true")
    assert wrong.returncode == 2 and "invalid value for '--array'" in wrong.stderr
