"""orcha.service.procs: waiting for stopped processes to be gone (_wait_gone)."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from orcha.service import procs
from orcha.service.procs import _wait_gone

#: A child that ignores SIGTERM and says when it is ready for it.
STUBBORN = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
    "print('ready', flush=True); time.sleep(60)"  # fmt: skip


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for child in started:
        child.kill()
        child.wait()


def _start(children: list[subprocess.Popen[bytes]], code: str) -> subprocess.Popen[bytes]:
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    children.append(child)
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    return child


def test_an_exit_is_heard_through_its_pidfd_not_the_next_look(
    children: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the looks 30 s apart, the process's end still ends the wait: its pidfd woke
    it (without it the wait would last the 30 s)."""
    monkeypatch.setattr(procs, "WAIT_POLL_SECONDS", 30.0)
    child = _start(children, "import time; print('ready', flush=True); time.sleep(60)")
    proc = psutil.Process(child.pid)
    child.send_signal(signal.SIGTERM)
    began = time.monotonic()
    assert _wait_gone([proc], 60.0) == []  # a zombie not reaped yet counts as gone
    assert time.monotonic() - began < 25.0


def test_what_outlives_the_timeout_is_returned_and_an_early_exit_does_not_spin(
    children: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One ends at once, one ignores SIGTERM: the wait lasts its timeout and returns the
    stubborn one; the pidfd of the one that ended is not polled again (it would be
    readable for good: a busy loop)."""
    polls: list[float] = []
    real = select.poll

    class Counting:
        def __init__(self) -> None:
            self._poller = real()

        def register(self, fd: int, mask: int) -> None:
            self._poller.register(fd, mask)

        def unregister(self, fd: int) -> None:
            self._poller.unregister(fd)

        def poll(self, timeout: float) -> list[tuple[int, int]]:
            polls.append(timeout)
            return self._poller.poll(timeout)

    monkeypatch.setattr(select, "poll", Counting)
    quick = _start(children, "import time; print('ready', flush=True); time.sleep(60)")
    stubborn = _start(children, STUBBORN)
    quick.send_signal(signal.SIGTERM)
    stubborn.send_signal(signal.SIGTERM)
    left = _wait_gone([psutil.Process(quick.pid), psutil.Process(stubborn.pid)], 0.3)
    assert [p.pid for p in left] == [stubborn.pid]
    # 0.3 s of looks every 20 ms: about 15 polls, not thousands.
    assert len(polls) <= 0.3 / procs.WAIT_POLL_SECONDS + 5


def test_nothing_to_wait_for_returns_at_once(children: list[subprocess.Popen[bytes]]) -> None:
    child = _start(children, "import time; print('ready', flush=True)")
    proc = psutil.Process(child.pid)
    child.wait()  # reaped: gone
    assert _wait_gone([proc], 60.0) == []
