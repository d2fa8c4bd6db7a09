"""The scheduler's lock (orcha.service.scheduler_lock): re-entrant, and it says which
thread has held it for how long without being taken."""

from __future__ import annotations

import threading

from orcha.service.scheduler_lock import SchedulerLock


class Ticks:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def test_held_since_its_outermost_acquire_and_free_once_released_as_often() -> None:
    ticks = Ticks()
    lock = SchedulerLock(ticks)
    assert lock.stuck(3.0) is None
    with lock:
        ticks.now += 2
        with lock:  # re-entered: still held since the first
            ticks.now += 2
            assert lock.stuck(3.0) == (4.0, threading.current_thread().name)
        assert lock.stuck(3.0) == (4.0, threading.current_thread().name)
        assert lock.stuck(5.0) is None
    assert lock.stuck(0.0) is None


def test_another_thread_cannot_take_it_while_held() -> None:
    lock = SchedulerLock()
    taken: list[bool] = []
    with lock:
        other = threading.Thread(target=lambda: taken.append(lock.acquire(blocking=False)))
        other.start()
        other.join(10)
    assert taken == [False]
    assert lock.acquire(timeout=1)
    lock.release()
