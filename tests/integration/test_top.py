"""``orcha top`` against a real service: under a real pseudo-terminal (Python's pty
module) and piped. One service for the module: one slot, a running petition, a waiting
one, and one that ended with code 3."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import shutil
import signal
import struct
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Env

DEADLINE = 30.0


@pytest.fixture(scope="module")
def busy() -> Iterator[Env]:
    """A service with one slot: ``hog`` runs, ``later`` waits for the slot, ``bad``
    ended with code 3."""
    root = Path(tempfile.mkdtemp(prefix="orcha-top-", dir="/tmp"))
    env = Env(root)
    try:
        env.serve("--max-running", "1", "--grace", "1")
        assert env.run("run", "bad", "--", "sh", "-c", "exit 3").returncode == 3
        assert env.run("run", "hog", "--detach", "--", "sleep", "100000").returncode == 0
        assert env.run("run", "later", "--detach", "--", "echo", "late").returncode == 0
        yield env
    finally:
        env.run("cancel", "hog", "later")
        for service in env.services:
            service.stop(timeout=20)
            service.kill()
        shutil.rmtree(root, ignore_errors=True)


class Terminal:
    """``orcha top`` on the slave side of a pseudo-terminal of 30x140; the test reads
    the screen's bytes and types on the master side."""

    def __init__(self, env: Env, *args: str, term: str = "xterm-256color") -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: becomes orcha top, on the terminal
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                # The terminal's own size, not a COLUMNS/LINES the suite's process may have.
                variables = {k: v for k, v in env.vars.items() if k not in ("COLUMNS", "LINES")}
                os.execve(sys.executable, [sys.executable, "-m", "orcha", "top", *args],
                          {**variables, "TERM": term})  # fmt: skip
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 140, 0, 0))
        self.screen = b""

    def read_until(self, *wanted: bytes) -> bool:
        """Read the screen until it shows all of ``wanted`` (False at the deadline)."""
        deadline = time.monotonic() + DEADLINE
        while not all(w in self.screen for w in wanted):
            if time.monotonic() > deadline or not self.read(0.1):
                return all(w in self.screen for w in wanted)
        return True

    def read(self, timeout: float) -> bool:
        """Read what is there; False once the child has closed the terminal."""
        if select.select([self.fd], [], [], timeout)[0]:
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # EIO: the slave side is closed
                return False
            if not data:
                return False
            self.screen += data
        return True

    def echo(self) -> bool:
        """Whether the terminal echoes what is typed (its line discipline's mode)."""
        return bool(termios.tcgetattr(self.fd)[3] & termios.ECHO)

    def type(self, data: bytes) -> None:
        os.write(self.fd, data)

    def close(self) -> None:
        os.close(self.fd)


def _reap(term: Terminal) -> int:
    """Read to the end; the exit code of ``orcha top``."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline and term.read(0.1):
        pass
    while time.monotonic() < deadline:
        pid, status = os.waitpid(term.pid, os.WNOHANG)
        if pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(term.pid, signal.SIGKILL)
    os.waitpid(term.pid, 0)
    raise AssertionError(f"orcha top did not exit; screen: {term.screen[-2000:]!r}")


def test_top_on_a_terminal_shows_running_and_waiting_and_q_leaves_cleanly(busy: Env) -> None:
    term = Terminal(busy, "--interval", "0.5")
    try:
        shown = term.read_until(b"hog", b"later", b"waiting for a free slot (1/1 CPUs in use)",
                                b"sleep 100000", b"bad", b"FAILED")  # fmt: skip
        assert shown, term.screen[-3000:]
        assert b"\x1b[?1049h" in term.screen  # the alternate screen
        assert not term.echo()  # keys are read one by one, not echoed
        # The CPU%/memory columns get numbers (the sleep's tree: one process, some memory).
        assert term.read_until(b"CPU%", b"MEM", b"PROCS")
        term.type(b"q")
        assert _reap(term) == 0
        after = term.screen[term.screen.rindex(b"hog") :]
        assert b"\x1b[?1049l" in after  # left the alternate screen
        assert b"\x1b[?25h" in after  # the cursor is shown again
        assert term.echo()  # echo and line editing are back
    finally:
        term.close()


def test_ctrl_c_leaves_top_with_130_and_restores_the_terminal(busy: Env) -> None:
    term = Terminal(busy)
    try:
        assert term.read_until(b"later"), term.screen[-3000:]
        term.type(b"\x03")  # the terminal turns it into SIGINT
        assert _reap(term) == 130
        assert b"\x1b[?1049l" in term.screen[term.screen.rindex(b"later") :]
        assert term.echo()
        assert b"Traceback" not in term.screen
    finally:
        term.close()


def test_top_on_a_dumb_terminal_prints_one_plain_snapshot(busy: Env) -> None:
    # An Emacs shell, say: no cursor movement, so no live view (rich draws nothing there).
    term = Terminal(busy, term="dumb")
    try:
        assert _reap(term) == 0
        assert b"hog" in term.screen and b"later" in term.screen, term.screen[-3000:]
        assert b"\x1b" not in term.screen
    finally:
        term.close()


def test_top_piped_prints_one_plain_snapshot(busy: Env) -> None:
    done = busy.run("top", "--interval", "0.5")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "\x1b" not in out and all(line == line.rstrip() for line in out.splitlines())
    running = out[out.index("Running:") : out.index("Waiting")]
    waiting = out[out.index("Waiting") : out.index("Ended")]
    ended = out[out.index("Ended") :]
    assert "hog" in running and "sleep 100000" in running and "later" not in running
    line = next(li for li in waiting.splitlines() if li.strip().startswith("later"))
    assert "echo late" in line and "waiting for a free slot (1/1 CPUs in use)" in line
    line = next(li for li in ended.splitlines() if li.strip().startswith("bad"))
    assert line.split()[1:3] == ["FAILED", "3"]
    assert "1/1 CPU slots in use" in out.splitlines()[0]

    snapshot = json.loads(busy.run("top", "--json").stdout)
    (hog,) = snapshot["running"]
    assert hog["id"] == "hog" and hog["processes"] >= 1 and hog["rss"] > 0
    assert hog["cpu_percent"] is not None and hog["command"] == "sleep 100000"
    assert [(p["id"], p["why"]) for p in snapshot["waiting"]] == [
        ("later", "waiting for a free slot (1/1 CPUs in use)")
    ]
    assert snapshot["ended"][0]["id"] == "bad" and snapshot["ended"][0]["code"] == 3
    assert snapshot["cpus"] == {"used": 1, "capacity": 1}


def test_top_without_a_service_says_so_and_exits_200(tmp_path: Path) -> None:
    env = Env(tmp_path)
    done = env.run("top", "--address", str(tmp_path / "nothing.sock"))
    assert done.returncode == 200
    assert done.stderr.startswith("orcha: no orcha service is running at ")
    assert done.stderr.count("\n") == 1 and done.stdout == ""
