"""Deadlines: the one thread that times out running attempts; no entry may stop it."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from orcha.service.deadlines import Deadlines

#: Longest a test waits for a deadline before it fails.
DEADLINE = 10.0


def _job(seq: int) -> Any:
    return SimpleNamespace(id=f"p{seq}", seq=seq, attempt=1)


class _Expiries:
    """What ``Deadlines`` expired, for the test to wait for."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.changed = threading.Condition()

    def __call__(self, job: Any) -> None:
        with self.changed:
            self.seqs.append(job.seq)
            self.changed.notify_all()

    def wait_for(self, seq: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: seq in self.seqs, DEADLINE)


@pytest.mark.parametrize("far", [1.728e10, 1e300])
def test_a_far_deadline_leaves_the_near_ones_timed_out(far: float) -> None:
    """A timeout of 200000 days (past a thread wait's limit) once killed the thread, and
    every later --timeout of the service went unheard."""
    expired = _Expiries()
    deadlines = Deadlines(expired)
    deadlines.add(_job(1), far)
    deadlines.add(_job(2), 0.01)
    assert expired.wait_for(2)  # then the thread waits for the far one...
    deadlines.add(_job(3), 0.01)
    assert expired.wait_for(3)  # ...and still hears the next one
    assert expired.seqs == [2, 3]
