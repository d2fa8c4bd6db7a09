"""An attached client's input and output against one real service (shared by this module):
stdin forwarded with flow control, output on clean lines beside the live line (progress
bar, queued notice) on a real pseudo-terminal, the order of stdout and stderr kept in the
log, Ctrl+C printing what was in flight, and ``watch`` in words."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Env, Service, private_env
from tests.integration.clients import WAIT, Client, Stream, new_id

_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[Env, Service]]:
    """One service for the module: 2 slots, a short grace."""
    with private_env("orcha-io-") as env:
        yield env, env.serve("--max-running", "2", "--grace", "1")


def _client(env: Env, *args: str, stdin: object = subprocess.DEVNULL) -> Client:
    return Client(env.popen(*args, stdin=stdin))


def _blocker(env: Env) -> str:
    """A detached petition holding both slots until cancelled."""
    blocker = new_id("hold")
    result = env.run("run", "--detach", "--cpus", "2", blocker, "--", "sleep", "60")
    assert result.returncode == 0, result.stderr
    return blocker


# -- point 6: stdin ---------------------------------------------------------------------------
def test_run_forwards_piped_stdin_byte_exact_and_not_with_no_stdin(
    shared: tuple[Env, Service], tmp_path: Path
) -> None:
    env, _ = shared
    piped = subprocess.run(
        [sys.executable, "-m", "orcha", "run", new_id("cat"), "--", "cat"],
        input=b"hi\n", capture_output=True, env=env.vars, timeout=WAIT,
    )  # fmt: skip
    assert (piped.returncode, piped.stdout) == (0, b"hi\n"), piped.stderr
    off = subprocess.run(
        [sys.executable, "-m", "orcha", "run", "--no-stdin", new_id("cat"), "--", "cat"],
        input=b"hi\n", capture_output=True, env=env.vars, timeout=WAIT,
    )  # fmt: skip
    assert (off.returncode, off.stdout) == (0, b""), off.stderr
    # /dev/null is not forwarded (nothing to send): the petition reads /dev/null itself;
    # another character device is input like any other.
    where = env.run("run", new_id("null"), "--", "readlink", "/proc/self/fd/0")
    assert (where.returncode, where.stdout) == (0, "/dev/null\n"), where.stderr
    with open("/dev/zero", "rb") as zero:
        client = _client(env, "run", new_id("zero"), "--", "head", "-c", "5", stdin=zero)
        rc, out, err = client.finish()
    assert (rc, out) == (0, b"\0" * 5), err
    # Several windows' worth from a file (epoll cannot poll one: read as it comes), and
    # back through the petition's stdout: every byte, in order.
    data = tmp_path / "data"
    data.write_bytes(os.urandom(3 << 20))
    with open(data, "rb") as f:
        client = _client(env, "run", new_id("big"), "--", "cat", stdin=f)
        rc, out, err = client.finish()
    assert rc == 0, err
    assert out == data.read_bytes()


def test_a_petition_that_reads_no_stdin_does_not_hold_its_client(
    shared: tuple[Env, Service],
) -> None:
    env, _ = shared
    # An endless pipe: the client sends one window, then waits for credit that never
    # comes; the petition's output and end still reach it.
    yes = subprocess.Popen(["yes"], stdout=subprocess.PIPE)
    try:
        client = _client(env, "run", new_id("deaf"), "--", "echo", "done", stdin=yes.stdout)
        rc, out, err = client.finish()
    finally:
        yes.kill()
        yes.wait()
        assert yes.stdout is not None
        yes.stdout.close()
    assert (rc, out) == (0, b"done\n"), err
    # A petition that reads a little and closes its stdin: the client stops sending.
    with open("/dev/zero", "rb") as zero:
        client = _client(env, "run", new_id("head"), "--", "head", "-c", "5", stdin=zero)
        rc, out, err = client.finish()
    assert (rc, out) == (0, b"\0" * 5), err


def test_detach_does_not_forward_stdin(shared: tuple[Env, Service]) -> None:
    env, _ = shared
    petition = new_id("det")
    result = subprocess.run(
        [sys.executable, "-m", "orcha", "run", "--detach", petition, "--", "cat"],
        input=b"not sent\n", capture_output=True, env=env.vars, timeout=WAIT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    followed = env.run("follow", petition)  # until it ends: cat read /dev/null
    assert (followed.returncode, followed.stdout) == (0, ""), followed.stderr


# -- points 12, 13 and 6 on a terminal ------------------------------------------------------------
def _on_terminal(
    env: Env, *args: str, then: Callable[[Stream], None] | None = None
) -> tuple[int, bytes]:
    """Run ``orcha ARGS`` with stdin, stdout and stderr on one pseudo-terminal of 100
    columns (``then(what the terminal shows)`` once it runs); (exit code, what the
    terminal received, with CR LF as LF)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orcha", *args],
            env={**env.vars, "TERM": "xterm-256color"},
            stdin=slave, stdout=slave, stderr=slave,
        )  # fmt: skip
    finally:
        os.close(slave)
    terminal = os.fdopen(master, "rb", buffering=0)
    try:
        shown = Stream(terminal)  # ends (EIO) once the client, the pty's last user, is gone
        if then is not None:
            then(shown)
        rc = proc.wait(WAIT)
        return rc, shown.value().replace(b"\r\n", b"\n")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        terminal.close()


def _visible_lines(shown: bytes) -> list[bytes]:
    """Each line as the terminal leaves it: what follows its last carriage return (the
    live line is always erased with CR + erase-line before anything else is written)."""
    return [_ANSI.sub(b"", line.rsplit(b"\r", 1)[-1]) for line in shown.split(b"\n")]


def test_output_never_shares_a_line_with_the_live_line(shared: tuple[Env, Service]) -> None:
    env, _ = shared
    rc, shown = _on_terminal(env, "send", new_id("pb"), "--counter", "6", "--sleep-time", "0.05")
    assert rc == 0, shown
    assert b"6/6 lines" in shown or b"5/6 lines" in shown, shown  # a bar was drawn
    lines = _visible_lines(shown)
    hellos = [line for line in lines if b"Hello world!" in line]
    assert hellos == [f"Hello world! {i}".encode() for i in range(6)], shown
    for raw in shown.split(b"\n"):
        if b"Hello world!" in raw:  # anything before it on its line was erased first
            before = raw[: raw.index(b"Hello world!")]
            assert before == b"" or before.endswith(b"\r\x1b[K"), raw
    assert b"\x1b[?25h" in shown  # the cursor is given back

    # A terminal's stdin is not forwarded: cat reads /dev/null and ends at once. While
    # it waits, the live line says why; it is erased before the output comes.
    blocker = _blocker(env)

    def release(shown: Stream) -> None:
        try:
            assert shown.wait_for(lambda data: b"orcha: queued (waiting for a free slot" in data)
        finally:
            assert env.run("cancel", blocker).returncode == 0

    rc, shown = _on_terminal(env, "run", new_id("tty"), "--", "sh", "-c", "cat; echo ok",
                             then=release)  # fmt: skip
    assert rc == 0, shown
    assert _visible_lines(shown)[-2:] == [b"ok", b""], shown
    assert b"\rorcha: queued (waiting for a free slot (2/2 CPUs in use))\x1b[K" in shown


# -- point 14: the order between stdout and stderr ------------------------------------------------
_ECHO = (
    "import sys\n"
    "for line in sys.stdin:\n"
    "    stream, text = line.split()\n"
    "    out = sys.stdout if stream == 'o' else sys.stderr\n"
    "    out.write(text + '\\n')\n"
    "    out.flush()\n"
)


def test_logs_and_follow_keep_the_order_between_stdout_and_stderr(
    shared: tuple[Env, Service],
) -> None:
    """Each write is read by the service before the next is made (the test waits for it
    to come back), so the log holds them in the order they were written."""
    env, _ = shared
    petition = new_id("order")
    proc = env.popen("run", petition, "--", sys.executable, "-c", _ECHO, stdin=subprocess.PIPE)
    client = Client(proc)
    assert proc.stdin is not None
    try:
        for stream, text in (("o", "1"), ("e", "2"), ("o", "3"), ("e", "4")):
            proc.stdin.write(f"{stream} {text}\n".encode())
            proc.stdin.flush()
            pipe = client.out if stream == "o" else client.err
            assert pipe.wait_for(lambda data, t=text: f"{t}\n".encode() in data)
        proc.stdin.close()
        rc, out, err = client.finish()
    finally:
        client.reap()
    assert (rc, out, err) == (0, b"1\n3\n", b"2\n4\n")
    for args in (("logs", petition), ("follow", petition), ("logs", "--tail", "2", petition)):
        merged = subprocess.run(
            [sys.executable, "-m", "orcha", *args], env=env.vars, timeout=WAIT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        want = b"3\n4\n" if "--tail" in args else b"1\n2\n3\n4\n"
        assert (merged.returncode, merged.stdout) == (0, want), args


# -- point 15: Ctrl+C prints what was in flight -------------------------------------------------
def test_ctrl_c_prints_what_the_petition_wrote_while_stopping(
    shared: tuple[Env, Service],
) -> None:
    env, _ = shared
    script = (
        "trap 'echo cleaning; echo cleaned; exit 3' TERM; echo ready; while :; do sleep 0.05; done"
    )
    client = _client(env, "run", new_id("int"), "--", "sh", "-c", script)
    try:
        assert client.out.wait_for(lambda data: b"ready\n" in data)
        client.proc.send_signal(signal.SIGINT)  # at its default disposition (conftest)
        rc, out, err = client.finish()
    finally:
        client.reap()
    assert rc == 130, err
    assert out == b"ready\ncleaning\ncleaned\n", err
    assert b"orcha: cancelling petition" in err

    # A second Ctrl+C stops waiting for a petition that ignores SIGTERM: what had arrived
    # is printed, whole, and the client exits 130 (the service kills it after the grace).
    script = "trap '' TERM; echo ready; while :; do echo tick; sleep 0.02; done"
    client = _client(env, "run", new_id("int2"), "--", "sh", "-c", script)
    try:
        assert client.out.wait_for(lambda data: b"ready\n" in data)
        client.proc.send_signal(signal.SIGINT)
        assert client.err.wait_for(lambda data: b"orcha: cancelling petition" in data)
        client.proc.send_signal(signal.SIGINT)
        rc, out, err = client.finish()
    finally:
        client.reap()
    assert rc == 130, err
    assert err.endswith(b" is being cancelled\n") and b"orcha: stopped waiting" in err, err
    assert out.startswith(b"ready\ntick\n") and out.endswith(b"tick\n"), out


# -- points 13 and 16: a queued client says why it waits; watch in words ----------------------
def test_a_queued_run_says_why_once_when_piped_and_watch_reads_in_words(
    shared: tuple[Env, Service],
) -> None:
    env, _ = shared
    blocker = _blocker(env)
    petition = new_id("w")
    sent = env.run("send", "--detach", petition, "--counter", "3")
    assert sent.returncode == 0, sent.stderr
    watcher = _client(env, "watch", petition)
    client = _client(env, "run", new_id("waits"), "--", "echo", "ran")
    try:
        assert watcher.out.wait_for(lambda data: b"state QUEUED\n" in data)  # subscribed
        assert client.err.wait_for(lambda data: b"\n" in data)
    finally:
        assert env.run("cancel", blocker).returncode == 0
    try:
        rc, out, err = client.finish_text()
        assert (rc, out) == (0, "ran\n"), err
        # One line, the words of 'orcha status' (here: w is queued ahead of it).
        assert err == "orcha: queued (waiting for a free slot (2/2 CPUs in use); 1 ahead of it)\n"
        rc, out, err = watcher.finish_text()
    finally:
        watcher.reap()
        client.reap()
    assert rc == 0, err
    lines = out.splitlines()
    assert all(line == line.rstrip() for line in lines), lines
    words = [line.split(" ", 2)[2] for line in lines]  # without the time and the ID
    assert "progress 3/3 lines" in words, lines
    assert "output Hello world! 2" in words, lines
    assert words[-1] == "finished SUCCEEDED (code 0)", lines
