"""WorkerPool: the reused threads that run petitions, one at a time each."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator

log = logging.getLogger("orcha.service.runner")


class WorkerPool:
    """Reused daemon threads: starting a thread per petition cost more than a short
    petition. Grows only while every thread is busy; idle threads wait without a timeout.
    A worker ending a task may keep the next one for itself (:meth:`keeping_next`).

    (Not ThreadPoolExecutor: its threads are joined at interpreter exit, so an action
    stuck in uninterruptible code would keep a forced stop from exiting.)
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()
        self._count = 0
        # In a worker: "kept", the task it runs next ([] while it keeps the next one
        # submitted, None otherwise).
        self._local = threading.local()

    def submit(self, task: Callable[[], None]) -> None:
        kept = getattr(self._local, "kept", None)
        if kept is not None and not kept:
            kept.append(task)  # this worker runs it once its current task returns
            return
        with self._lock:
            spawn = self._idle == 0
            if spawn:
                self._count += 1
            else:
                self._idle -= 1
        self._tasks.put(task)
        if spawn:
            threading.Thread(
                target=self._work, name=f"{self._name}-{self._count}", daemon=True
            ).start()

    @contextlib.contextmanager
    def keeping_next(self) -> Iterator[None]:
        """Within it, in a worker of this pool, the first task submitted from this
        thread is run by this thread once its current task returns, not by another
        (elsewhere, and for later tasks, :meth:`submit` as usual)."""
        if not getattr(self._local, "worker", False) or self._local.next is not None:
            yield
            return
        kept: list[Callable[[], None]] = []
        self._local.kept = kept
        try:
            yield
        finally:
            self._local.kept = None
            if kept:
                self._local.next = kept[0]

    def _work(self) -> None:
        local = self._local
        local.worker, local.kept, local.next = True, None, None
        while True:
            task: Callable[[], None] | None = self._tasks.get()
            while task is not None:
                try:
                    task()
                except BaseException:
                    log.exception("worker task raised")
                task, local.next = local.next, None
            with self._lock:  # idle, a worker keeps no ended petition alive
                self._idle += 1
