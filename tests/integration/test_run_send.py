"""``orcha send`` and ``orcha run`` as a user sees them: output, streams, exit codes, IDs."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Env, Service, wait_for
from tests.integration.clients import WAIT, Client, Stream, new_id, states, without_progress


# -- helpers ---------------------------------------------------------------------------------
def no_traceback(*streams: str | bytes) -> None:
    for s in streams:
        text = s.decode(errors="replace") if isinstance(s, bytes) else s
        assert "Traceback" not in text, text


def one_error_line(stderr: str) -> str:
    """Assert ``stderr`` is exactly one 'orcha: ' line and return it."""
    no_traceback(stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("orcha: "), stderr
    return lines[0]


def release_script(tmp_path: Path, name: str) -> tuple[list[str], Path]:
    """A command that prints 'started', waits (at most 25 s) for a file, prints 'done'."""
    flag = tmp_path / f"{name}.release"
    script = (
        f'echo started; i=0; while [ ! -e "{flag}" ] && [ $i -lt 500 ]; do '
        f'sleep 0.05; i=$((i+1)); done; [ -e "{flag}" ] || exit 9; echo done'
    )
    return ["sh", "-c", script], flag


def hello(n: int) -> str:
    return "".join(f"Hello world! {i}\n" for i in range(n))


# -- send ------------------------------------------------------------------------------------
@pytest.mark.parametrize("counter", [0, 1, 5])
def test_send_prints_exact_lines_and_nothing_else(env: Env, service: Service, counter: int) -> None:
    result = env.run("send", new_id("send"), "--counter", str(counter))
    assert result.returncode == 0, result.stderr
    assert result.stdout == hello(counter)
    assert without_progress(result.stderr) == ""


# -- send: progress ---------------------------------------------------------------------------
PROGRESS = re.compile(r"orcha: progress (\d+)/3 lines")


def test_send_reports_progress_as_plain_lines_when_stderr_is_not_a_terminal(
    env: Env, service: Service
) -> None:
    result = env.run(
        "send", new_id("progress"), "--counter", "3", "--sleep-time", "0.6", timeout=WAIT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == hello(3)
    lines = result.stderr.splitlines()
    assert lines, "no progress lines on stderr"
    values = []
    for line in lines:
        match = PROGRESS.fullmatch(line)
        assert match, f"not a progress line: {line!r} in {result.stderr!r}"
        values.append(int(match.group(1)))
    # Throttled (at most two a second, plus the last): a line may be skipped, never repeated.
    assert values == sorted(set(values)), values
    assert values[-1] == 3, values
    assert values[0] >= 1, values
    assert without_progress(result.stderr) == ""


def test_send_draws_a_progress_bar_on_a_terminal(env: Env, service: Service) -> None:
    """With stderr on a (pseudo-)terminal the client draws a bar instead of plain lines."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orcha", "send", new_id("bar"), "--counter", "3",
             "--sleep-time", "0.6"],
            env={**env.vars, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "24"},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
        )  # fmt: skip
    finally:
        os.close(slave)
    terminal = os.fdopen(master, "rb", buffering=0)
    try:
        assert proc.stdout is not None
        out = Stream(proc.stdout)
        tty = Stream(terminal)  # ends (EIO) once the client, the pty's last user, is gone
        rc = proc.wait(WAIT)
        stdout, shown = out.value(), tty.text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()
        terminal.close()
    assert rc == 0, shown
    assert stdout == hello(3).encode()
    assert "3/3 lines" in shown, repr(shown)
    assert "orcha: progress" not in shown, repr(shown)
    assert "Traceback" not in shown, shown


def _assert_streams_live(client: Client, first: bytes, full: bytes) -> None:
    """The first line reaches the client's stdout on its own, while the petition still
    works, not only at the end: decided by the order of events (the petition writes its
    next line a second after the first; the client has the first and not the next), not
    by a clock a loaded machine slows. Its stderr has nothing but progress lines
    (``send`` reports some; ``run`` none)."""
    assert client.out.wait_for(lambda d: d.startswith(first), WAIT), (
        f"first line not seen within {WAIT}s: {bytes(client.out.data)!r}"
    )
    assert client.proc.poll() is None, "the client had already ended: output was not live"
    assert bytes(client.out.data) == first, "the later lines came with the first one"
    rc, out, err = client.finish()
    assert (rc, out, without_progress(err)) == (0, full, b"")


def test_send_streams_output_live(env: Env, service: Service, start: Callable[..., Client]) -> None:
    client = start("send", new_id("live"), "--counter", "3", "--sleep-time", "1")
    _assert_streams_live(client, b"Hello world! 0\n", hello(3).encode())


def test_run_streams_output_live(
    env: Env, service: Service, start: Callable[..., Client], tmp_path: Path
) -> None:
    # The command writes its first line, then waits for a gate the test opens only once
    # that line has reached the client: live output is shown by the order of events (the
    # client has the line while the command cannot have written more), which a loaded
    # machine cannot reverse, rather than by how long before the end the line arrived.
    gate = tmp_path / "gate"
    script = f'echo one; while [ ! -e "{gate}" ]; do sleep 0.02; done; echo two; echo three'
    client = start("run", new_id("live"), "--", "sh", "-c", script)
    assert client.out.wait_for(lambda d: d.startswith(b"one\n"), WAIT), (
        f"first line not seen within {WAIT}s: {bytes(client.out.data)!r}"
    )
    assert client.proc.poll() is None, "the client had already ended: output was not live"
    assert bytes(client.out.data) == b"one\n"
    gate.touch()
    rc, out, err = client.finish()
    assert (rc, out, without_progress(err)) == (0, b"one\ntwo\nthree\n", b"")


# -- run: streams, bytes, exit codes ---------------------------------------------------------
def test_run_keeps_stdout_and_stderr_apart(env: Env, service: Service) -> None:
    result = env.run(
        "run", new_id("split"), "--", "sh", "-c", "echo out; echo err >&2; echo out2; echo err2 >&2"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "out\nout2\n"
    assert result.stderr == "err\nerr2\n"


def test_run_output_is_byte_exact(env: Env, service: Service, tmp_path: Path) -> None:
    special = b"\r\n\0\r\r\n\xff\xfe\xc3\x28\xed\xa0\x80\x00\x1b[31m\x80no newline at end"
    data = special + os.urandom(3 << 20) + special
    blob = tmp_path / "blob.bin"
    blob.write_bytes(data)
    result = env.run_bytes(
        "run",
        new_id("bytes"),
        "--",
        "sh",
        "-c",
        'cat "$1"; cat "$1" >&2',
        "sh",
        str(blob),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout) == len(data)
    assert result.stdout == data
    assert result.stderr == data


@pytest.mark.parametrize("code", [0, 1, 3, 125])
def test_run_passes_the_exit_code_through(env: Env, service: Service, code: int) -> None:
    result = env.run("run", new_id("code"), "--", "sh", "-c", f"echo before; exit {code}")
    assert result.returncode == code, result.stderr
    assert result.stdout == "before\n"
    assert result.stderr == ""


@pytest.mark.parametrize(("sig", "code"), [("KILL", 137), ("TERM", 143), ("SEGV", 139)])
def test_run_killed_by_signal_exits_128_plus_n(
    env: Env, service: Service, sig: str, code: int
) -> None:
    result = env.run("run", new_id("sig"), "--", "sh", "-c", f"echo x; kill -{sig} $$; echo no")
    assert result.returncode == code, result.stderr
    assert result.stdout == "x\n"
    assert result.stderr == ""


def test_run_command_not_found_exits_127(env: Env, service: Service) -> None:
    result = env.run("run", new_id("nf"), "--", "orcha-no-such-command-xyz", "arg")
    assert result.returncode == 127, result.stderr
    assert result.stdout == ""
    assert one_error_line(result.stderr) == "orcha: command not found: orcha-no-such-command-xyz"


def test_a_message_quoting_the_argv_is_shown_escaped(env: Env, service: Service) -> None:
    # The message names the command as given: its escape sequences (an OSC that sets
    # the terminal's title) are shown escaped, by the attached run as by follow.
    pid = new_id("nfesc")
    result = env.run("run", pid, "--", "\x1b]0;T\x07orcha-no-such", "arg")
    assert result.returncode == 127, result.stderr
    expected = "orcha: command not found: \\x1b]0;T\\x07orcha-no-such"
    assert one_error_line(result.stderr) == expected
    result = env.run("follow", pid)
    assert result.returncode == 127, result.stderr
    assert one_error_line(result.stderr) == expected


def test_run_not_executable_exits_126(env: Env, service: Service, tmp_path: Path) -> None:
    script = tmp_path / "plain.sh"
    script.write_text("#!/bin/sh\necho should not run\n")
    script.chmod(0o644)
    result = env.run("run", new_id("nx"), "--", str(script))
    assert result.returncode == 126, result.stderr
    assert result.stdout == ""
    one_error_line(result.stderr)


def test_a_script_without_a_shebang_line_runs_under_sh_as_execvp_runs_it(
    env: Env, service: Service, tmp_path: Path
) -> None:
    script = tmp_path / "plain.sh"
    script.write_text('echo "no #! line, got $1"\n')
    script.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "plain-on-path").symlink_to(script)
    path = {"PATH": f"{bin_dir}:{env.vars.get('PATH', os.defpath)}"}
    for command, where in (("./plain.sh", tmp_path), ("plain-on-path", None)):
        result = env.run("run", new_id("ns"), "--", command, "arg", cwd=where, env=path)
        assert (result.returncode, result.stdout) == (0, "no #! line, got arg\n"), result.stderr


def test_what_cannot_be_executed_is_said_as_a_shell_says_it(
    env: Env, service: Service, tmp_path: Path
) -> None:
    result = env.run("run", new_id("dir"), "--", str(tmp_path))
    assert result.returncode == 126, result.stderr
    assert one_error_line(result.stderr) == f"orcha: cannot execute {tmp_path}: it is a directory"
    script = tmp_path / "lost.sh"
    script.write_text("#!/no/such/interpreter\necho never\n")
    script.chmod(0o755)
    result = env.run("run", new_id("lost"), "--", "./lost.sh", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (127, ""), result.stderr
    assert one_error_line(result.stderr) == (
        "orcha: cannot execute ./lost.sh: the interpreter its '#!' line names is missing"
    )


# -- run: the client's cwd and environment ---------------------------------------------------
def test_run_uses_the_clients_working_directory(env: Env, service: Service, tmp_path: Path) -> None:
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    (workdir / "marker.txt").write_text("here\n")
    result = env.run(
        "run",
        new_id("cwd"),
        "--",
        sys.executable,
        "-c",
        "import os; print(os.getcwd()); print(open('marker.txt').read(), end='')",
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{os.path.realpath(workdir)}\nhere\n"
    assert result.stderr == ""


def test_run_uses_the_clients_environment(env: Env, tmp_path: Path) -> None:
    env.serve("--max-running", "2", "--grace", "2", env={"ORCHA_T_SERVICE_ONLY": "leak"})
    result = env.run(
        "run",
        new_id("env"),
        "--",
        "sh",
        "-c",
        'printf "%s|%s|%s\\n" "$FOO" "$SPACED" "${ORCHA_T_SERVICE_ONLY-unset}"',
        env={"FOO": "bar", "SPACED": "a b\tc"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "bar|a b\tc|unset\n"
    assert result.stderr == ""


def test_run_sets_petition_id_and_token(env: Env, service: Service) -> None:
    petition_id = new_id("pid")
    result = env.run(
        "run",
        petition_id,
        "--",
        "sh",
        "-c",
        'echo "$ORCHA_PETITION_ID"; test -n "$ORCHA_PETITION_TOKEN" && echo token',
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{petition_id}\ntoken\n"
    assert result.stderr == ""


# -- usage errors ----------------------------------------------------------------------------
USAGE_ERRORS = [
    ["send", "u1", "--counter", "-1"],
    ["send", "u1", "--counter", "abc"],
    ["send", "u1", "--priority", "abc"],
    ["send", "7"],  # a number names a record: not a new petition's ID
    ["send", "a b"],
    ["run"],
    ["run", "u1", "u2", "--", "true"],  # one ID at most before '--'
    ["run", "--id", "u1~2", "--", "true"],  # NAME~N names an older record
    ["run", "u1", "--"],
    ["run", "u1", "--priority", "abc", "--", "true"],
    ["run", "a b", "--", "true"],
    # A priority beyond what the records hold (it used to reach the service, exit 206).
    ["run", "u1", "--priority", "99999999999999999999", "--", "true"],
    ["send", "u1", "--priority", "-1000000001"],
]


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=" ".join)
def test_usage_errors_exit_2(env: Env, service: Service, args: list[str]) -> None:
    result = env.run(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.strip() != ""
    no_traceback(result.stderr)
    assert states(env) == {}


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=" ".join)
def test_usage_errors_send_nothing(env: Env, args: list[str]) -> None:
    """Without a service, sending would fail with 200: usage errors are found first."""
    result = env.run(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    no_traceback(result.stderr)


# -- duplicate IDs ---------------------------------------------------------------------------
def test_duplicate_of_running_id_is_refused_and_first_completes(
    env: Env, service: Service, start: Callable[..., Client], tmp_path: Path
) -> None:
    petition_id = new_id("dup")
    argv, release = release_script(tmp_path, "first")
    first = start("run", petition_id, "--", *argv)
    assert first.out.wait_for(lambda d: d == b"started\n"), bytes(first.out.data)

    for args in (["send", petition_id, "--counter", "1"], ["run", petition_id, "--", "true"]):
        dup = env.run(*args)
        assert dup.returncode == 202, (dup.stdout, dup.stderr)
        assert dup.stdout == ""
        one_error_line(dup.stderr)

    assert first.proc.poll() is None
    release.touch()
    assert first.finish() == (0, b"started\ndone\n", b"")
    # The ID is free again once its petition has ended.
    again = env.run("send", petition_id, "--counter", "1")
    assert (again.returncode, again.stdout, without_progress(again.stderr)) == (0, hello(1), "")


def test_duplicate_of_queued_id_is_refused(
    env: Env, start: Callable[..., Client], tmp_path: Path
) -> None:
    env.serve("--max-running", "1", "--grace", "2")
    blocker_id, queued_id = new_id("blocker"), new_id("queued")
    argv, release = release_script(tmp_path, "blocker")
    blocker = start("run", blocker_id, "--", *argv)
    assert blocker.out.wait_for(lambda d: d == b"started\n"), bytes(blocker.out.data)
    queued = start("send", queued_id, "--counter", "2")
    assert wait_for(lambda: states(env).get(queued_id) == "QUEUED", WAIT), states(env)

    dup = env.run("send", queued_id, "--counter", "1")
    assert dup.returncode == 202, (dup.stdout, dup.stderr)
    assert dup.stdout == ""
    one_error_line(dup.stderr)

    release.touch()
    assert blocker.finish() == (0, b"started\ndone\n", b"")
    rc, out, err = queued.finish()
    assert (rc, out, without_progress(err)) == (0, hello(2).encode(), b"")


def test_service_log_has_no_traceback(env: Env, service: Service) -> None:
    """A failing command, a missing one and a refusal leave no traceback in the service."""
    env.run("run", new_id("t"), "--", "sh", "-c", "exit 4")
    env.run("run", new_id("t"), "--", "orcha-no-such-command-xyz")
    env.run("send", new_id("t"), "--counter", "1")
    assert service.stop() == 0
    no_traceback(service.stderr)


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_non_finite_sleep_time_is_a_usage_error(env, value: str) -> None:
    # No service is running: exit 2 (not 200) shows nothing was sent.
    result = env.run("send", "x", "--sleep-time", value)
    assert result.returncode == 2, result.stderr
    assert "--sleep-time" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_working_directory_fails_to_start_with_205(env, service) -> None:
    """The cwd is the client's; if it is gone on the service host the petition cannot
    start (exit 205, one line saying why)."""
    code = (
        "import sys\n"
        "from orcha import settings\n"
        "from orcha.client.attach import run_attached\n"
        "from orcha.client.session import Session\n"
        "from orcha.protocol.messages import SubmitRequest\n"
        "s = Session.open(settings.resolve())\n"
        "req = SubmitRequest('shell', 'nocwd', {'argv': ['true']}, None, '/nonexistent/dir', {})\n"
        "sys.exit(run_attached(s, req))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env.vars, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 205, result.stderr
    assert result.stderr.strip() == (
        "orcha: working directory /nonexistent/dir does not exist on the service host"
    )
