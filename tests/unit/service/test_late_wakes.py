"""Late wakes: a client waiting for many petitions gets their ends together, soon."""

from __future__ import annotations

import threading
import time

from orcha.service.late_wakes import LateWakes
from tests.conftest import wait_for


class Queue:
    def __init__(self) -> None:
        self.woken: list[float] = []
        self.ready = threading.Event()

    def wake(self) -> None:
        self.woken.append(time.monotonic())
        self.ready.set()


def test_each_queue_is_woken_once_within_the_delay_however_often_given() -> None:
    wakes = LateWakes(0.01)
    first, second = Queue(), Queue()
    given = time.monotonic()
    for _ in range(3):
        wakes.later(first)
    wakes.later(second)
    assert first.ready.wait(10) and second.ready.wait(10)
    assert first.woken[0] >= given + 0.01
    assert wait_for(lambda: not wakes._pending)
    assert len(first.woken) == 1 and len(second.woken) == 1
    wakes.later(first)  # due again later: woken again
    assert wait_for(lambda: len(first.woken) == 2)


def test_a_queue_that_fails_to_wake_does_not_stop_the_others() -> None:
    wakes = LateWakes(0.0)

    class Broken:
        def wake(self) -> None:
            raise OSError("closed")

    fine = Queue()
    wakes.later(Broken())
    wakes.later(fine)
    assert fine.ready.wait(10)
    again = Queue()
    wakes.later(again)
    assert again.ready.wait(10)
