"""The sweeper of what ended petitions left running (orcha.service.sweeping): the token
search, and which processes a batch reads."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from orcha.defaults import ENV_PETITION_TOKEN
from orcha.service import sweeping
from orcha.service.sweeping import Sweeper, tokens_in_proc
from tests.conftest import wait_for


def test_the_token_search_reads_the_processes_it_is_given_or_every_one() -> None:
    env = dict(os.environ, **{ENV_PETITION_TOKEN: "tok-sweep-1"})
    proc = subprocess.Popen([sys.executable, "-c", "input()"], env=env, stdin=subprocess.PIPE)
    try:
        # Popen returns once the child has exec'd, a moment before the kernel sets up
        # its new environment (read as empty until then).
        assert wait_for(lambda: tokens_in_proc([proc.pid]).get("tok-sweep-1") == [proc.pid])
        assert tokens_in_proc()["tok-sweep-1"] == [proc.pid]
        assert "tok-sweep-1" not in tokens_in_proc([os.getppid()])
        assert tokens_in_proc([]) == {}
    finally:
        proc.kill()
        proc.wait()


def test_an_environment_read_empty_is_read_once_more(monkeypatch: pytest.MonkeyPatch) -> None:
    # 11 is caught in exec (empty, then its environment); 12 stays empty (a kernel
    # thread, a zombie); 13 cannot be read; 14 carries another token.
    token = f"{ENV_PETITION_TOKEN}=".encode()
    reads: dict[int, list[bytes | None]] = {
        11: [b"", b"A=1\0" + token + b"tok-exec\0"],
        12: [b"", b""],
        13: [None],
        14: [token + b"tok-other"],
    }
    seen: list[int] = []

    def read_environ(pid: int) -> bytes | None:
        seen.append(pid)
        return reads[pid].pop(0)

    monkeypatch.setattr(sweeping, "read_environ", read_environ)
    monkeypatch.setattr(sweeping, "REREAD_SECONDS", 0.0)
    assert tokens_in_proc([11, 12, 13, 14]) == {"tok-exec": [11], "tok-other": [14]}
    assert seen == [11, 12, 13, 14, 11, 12]  # each empty one read twice, no more


class Procs:
    """The sweeper's side of ProcessControl: when petitions started, what started since."""

    def __init__(self, starts: dict[str, int | None]) -> None:
        self.starts = starts
        self.since: list[int] = []
        self.stopped: list[tuple[list[int], str]] = []
        self.done = threading.Event()

    def started_at(self, token: str, started: float | None) -> int | None:
        assert started == 1234.5
        return self.starts[token]

    def started_since(self, ticks: int) -> list[int]:
        self.since.append(ticks)
        return [501, 502]

    def stop_tree(self, pids: list[int], token: str, grace: float) -> int:
        self.stopped.append((pids, token))
        self.done.set()
        return len(pids)


def sweep(
    monkeypatch: pytest.MonkeyPatch, starts: dict[str, int | None]
) -> tuple[Procs, list[Any]]:
    asked: list[Any] = []

    def fake_tokens(pids: Any = None) -> dict[str, list[int]]:
        asked.append(None if pids is None else sorted(pids))
        return {"t1": [501]}

    monkeypatch.setattr(sweeping, "tokens_in_proc", fake_tokens)
    monkeypatch.setattr(Sweeper, "BATCH_SECONDS", 0.0)
    procs = Procs(starts)
    sweeper = Sweeper(procs, grace=1.0)  # type: ignore[arg-type]
    with sweeper._cond:  # one batch: its thread waits for this lock (an RLock)
        for token in starts:
            sweeper.add(SimpleNamespace(token=token, id=token, started=1234.5))  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    while not (procs.done.is_set() and asked) and time.monotonic() < deadline:
        procs.done.wait(0.05)
    return procs, asked


def test_a_batch_reads_only_what_was_born_since_its_first_petition_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    procs, asked = sweep(monkeypatch, {"t1": 70, "t2": 60})
    assert procs.since[0] == 60 and asked[0] == [501, 502]
    assert procs.stopped == [([501], "t1")]


def test_a_batch_with_a_petition_of_unknown_start_reads_every_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    procs, asked = sweep(monkeypatch, {"t1": 70, "t2": None})
    assert procs.since == [] and asked[0] is None
    assert procs.stopped == [([501], "t1")]
