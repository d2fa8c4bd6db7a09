"""The runner's worker pool (orcha.service.worker_pool.WorkerPool) and the background removal
of ended petitions' cgroups (orcha.service.sweeping.CgroupRemover)."""

from __future__ import annotations

import threading

from orcha.service.sweeping import CgroupRemover
from orcha.service.worker_pool import WorkerPool


def test_a_worker_runs_the_task_it_keeps_next_itself_and_others_go_to_the_pool() -> None:
    pool = WorkerPool("t")
    ran: dict[str, str] = {}
    done = threading.Event()
    second_done = threading.Event()

    def record(name: str, then: threading.Event | None = None) -> None:
        ran[name] = threading.current_thread().name
        if then is not None:
            then.set()

    def first() -> None:
        record("first")
        with pool.keeping_next():
            pool.submit(lambda: record("kept", done))  # run by this thread, next
            pool.submit(lambda: record("other", second_done))  # by another one
        assert "kept" not in ran  # only once this task has returned

    pool.submit(first)
    assert done.wait(10) and second_done.wait(10)
    assert ran["kept"] == ran["first"] != ran["other"]
    # Outside a worker, keeping_next changes nothing.
    again = threading.Event()
    with pool.keeping_next():
        pool.submit(lambda: record("outside", again))
    assert again.wait(10) and ran["outside"] != threading.current_thread().name


class _Cgroups:
    def __init__(self) -> None:
        self.removed: list[str] = []
        self.all_removed = threading.Event()

    def remove(self, token: str) -> bool:
        if token == "busy":
            raise OSError(16, "Device or resource busy")
        self.removed.append(token)
        if len(self.removed) == 3:
            self.all_removed.set()
        return True


def test_ended_petitions_cgroups_are_removed_in_the_background_and_at_a_flush() -> None:
    cgroups = _Cgroups()
    remover = CgroupRemover(cgroups)  # type: ignore[arg-type]
    for token in ("a", "busy", "b"):
        remover.add(token)  # a failure is logged and costs only its own cgroup
    remover.flush()  # the service stops: what is queued is removed now
    remover.add("c")
    assert cgroups.all_removed.wait(10)
    assert sorted(cgroups.removed) == ["a", "b", "c"]
