"""Helpers for tests that drive orcha clients in the background and watch their petitions.

The ``start`` fixture that builds :class:`Client` objects lives in this folder's conftest.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, AnyStr

import psutil

from tests.conftest import Env, wait_for

WAIT = 30.0  # generous bound for what should take well under a second


# The plain progress lines a foreground client prints on stderr when stderr is not a
# terminal (``orcha: progress 2/3 lines``, see orcha/client/progress.py), and the line
# saying why it waits (``orcha: queued (...)``, when it waited a moment): whole lines only.
_PROGRESS_LINE = re.compile(r"^orcha: (progress|queued) [^\n]*\n", re.MULTILINE)
_PROGRESS_LINE_BYTES = re.compile(rb"^orcha: (progress|queued) [^\n]*\n", re.MULTILINE)


def without_progress(stderr: AnyStr) -> AnyStr:
    """A client's stderr without its ``orcha: progress ...`` and ``orcha: queued ...``
    lines; everything else (notices, the petition's own stderr) is kept exactly, in
    order."""
    if isinstance(stderr, bytes):
        return _PROGRESS_LINE_BYTES.sub(b"", stderr)
    return _PROGRESS_LINE.sub("", stderr)


def new_id(name: str) -> str:
    """A petition ID no other test (or concurrent suite) uses."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


class Stream:
    """Everything a pipe delivers, collected by a thread as it arrives."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.data = bytearray()
        self.closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._pump, args=(pipe.fileno(),), daemon=True)
        self._thread.start()

    def _pump(self, fd: int) -> None:
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                chunk = b""
            with self._cond:
                if chunk:
                    self.data += chunk
                else:
                    self.closed = True
                self._cond.notify_all()
            if not chunk:
                return

    def wait_for(self, predicate: Callable[[bytes], bool], timeout: float = WAIT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(bytes(self.data)), timeout)

    def value(self, timeout: float = 10) -> bytes:
        """The whole output, once the pipe has closed."""
        self._thread.join(timeout)
        with self._cond:
            return bytes(self.data)

    def text(self, timeout: float = 10) -> str:
        """The whole output as text, once the pipe has closed."""
        return self.value(timeout).decode(errors="replace")


class Client:
    """An orcha client running in the background, its output collected live."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        self.out = Stream(proc.stdout)
        self.err = Stream(proc.stderr)

    def finish(self, timeout: float = WAIT) -> tuple[int, bytes, bytes]:
        """Wait for the client to end: (exit code, stdout, stderr)."""
        rc = self.proc.wait(timeout)
        return rc, self.out.value(), self.err.value()

    def finish_text(self, timeout: float = WAIT) -> tuple[int, str, str]:
        """:meth:`finish` with text output; the client's stderr holds no traceback."""
        rc = self.proc.wait(timeout)
        out, err = self.out.text(), self.err.text()
        assert "Traceback" not in err, err
        return rc, out, err

    def reap(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def petition_processes(petition_id: str) -> list[psutil.Process]:
    """Live processes of this user started by petition ``petition_id``."""
    uid = os.getuid()
    found = []
    for proc in psutil.process_iter(["uids", "status"]):
        try:
            if proc.info["uids"].real != uid or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("ORCHA_PETITION_ID") == petition_id:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def states(env: Env) -> dict[str, str]:
    """Petition ID -> state of every queued or running petition, from the service's info."""
    return {p["id"]: p["state"] for p in env.info()["petitions"]}


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie waiting to be reaped counts)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def read_pid(path: Path, timeout: float = WAIT) -> int:
    """The PID a test script wrote to ``path``, once it is there (fails after ``timeout``)."""
    assert wait_for(lambda: path.exists() and path.read_text().strip() != "", timeout), (
        f"{path} not written within {timeout}s"
    )
    return int(path.read_text().strip())


def describe(procs: list[psutil.Process]) -> list[tuple[int, Any]]:
    """(pid, command line) of each process, for assertion messages."""
    out = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            out.append((p.pid, p.cmdline()))
    return out


def orcha(
    env: Env,
    *args: str,
    code: int = 0,
    extra: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[str, str]:
    """Run an orcha command that must exit with ``code`` and print no traceback;
    (stdout, stderr). ``extra``: environment variables for this command only."""
    result = env.run(*args, timeout=WAIT, env=extra, cwd=cwd)
    assert result.returncode == code, (args, result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout, result.stderr


def record(env: Env, petition_id: str) -> dict[str, Any]:
    """The petition's row of ``orcha status --json ID`` (the only row, of that ID)."""
    import json

    rows = json.loads(orcha(env, "status", "--json", petition_id)[0])["petitions"]
    assert [r["id"] for r in rows] == [petition_id], rows
    row: dict[str, Any] = rows[0]
    return row
