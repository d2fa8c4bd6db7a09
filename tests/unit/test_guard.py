"""The guard's loop (orcha.service.guard) over a fake OS: forwarding, reaping, the sweep
(TERM, grace, KILL) on a fake clock, exit statuses, and the kill after the stop margin."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from orcha.defaults import GUARD_STOP_MARGIN
from orcha.service import guard
from orcha.service.guard import Guard, GuardOS, descendants_of, exit_code, serve_guarded

SERVICE = 100
GRACE = 2.0


def exited(code: int) -> int:
    return code << 8  # a wait status


def killed(sig: int) -> int:
    return sig


class FakeOS(GuardOS):
    """Processes that end on the signals they are told to, signals that arrive at set
    times, and a clock that moves only when the guard pauses."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.sent: list[tuple[float, int, int]] = []  # (time, pid, signal)
        self.alive: dict[int, set[int]] = {}  # pid -> signals that end it
        self.children: set[int] = {SERVICE}  # direct children: reapable
        self.ended: list[tuple[int, int]] = []
        self.events: list[tuple[float, Callable[[], None]]] = []
        self.on_stop: Callable[[int], None] = lambda sig: None  # the service got a signal
        self.pauses: list[float | None] = []

    def add(self, pid: int, dies_on: set[int], child: bool = True) -> None:
        self.alive[pid] = dies_on
        if child:
            self.children.add(pid)

    def at(self, when: float, what: Callable[[], None]) -> None:
        self.events.append((when, what))
        self.events.sort(key=lambda e: e[0])

    def end(self, pid: int, status: int) -> None:
        self.alive.pop(pid, None)
        if pid in self.children:
            self.ended.append((pid, status))

    def arrive(self, sig: int) -> None:
        self._pending.append(sig)

    # -- the seam --------------------------------------------------------------------------
    def pause(self, timeout: float | None) -> None:
        self.pauses.append(timeout)
        if not self.events:
            assert timeout is not None, "the guard would wait forever"
            self.now += timeout
            return
        when, what = self.events[0]
        if timeout is not None and self.now + timeout < when:
            self.now += timeout
            return
        self.events.pop(0)
        self.now = max(self.now, when)
        what()

    def take_signals(self) -> list[int]:
        taken, self._pending[:] = list(self._pending), []
        return taken

    def reap(self) -> list[tuple[int, int]]:
        ended, self.ended = self.ended, []
        return ended

    def kill(self, pid: int, sig: int) -> None:
        self.sent.append((self.now, pid, sig))
        if pid == SERVICE and SERVICE in self.alive and sig != signal.SIGKILL:
            self.on_stop(sig)
        if pid in self.alive and sig in self.alive[pid]:
            self.end(pid, killed(sig))

    def descendants(self) -> list[int]:
        return sorted(pid for pid in self.alive if pid != SERVICE)

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeOS:
    osx = FakeOS()
    osx.add(SERVICE, dies_on={signal.SIGKILL})
    return osx


def to(fake: FakeOS, pid: int) -> list[tuple[float, int]]:
    """(time, signal) of what was sent to ``pid``."""
    return [(t, s) for t, p, s in fake.sent if p == pid]


def test_signals_are_forwarded_and_the_guard_exits_with_the_service(fake: FakeOS) -> None:
    fake.at(0.0, lambda: fake.arrive(signal.SIGUSR1))
    fake.at(0.5, lambda: fake.arrive(signal.SIGTERM))

    def stops_a_second_later(sig: int) -> None:
        if sig == signal.SIGTERM:
            fake.at(fake.now + 1.0, lambda: fake.end(SERVICE, exited(0)))

    fake.on_stop = stops_a_second_later
    code = Guard(fake, SERVICE, GRACE).run()
    assert code == 0
    assert to(fake, SERVICE) == [(0.0, signal.SIGUSR1), (0.5, signal.SIGTERM)]
    assert fake.now == 1.5  # it ended when the service did: nothing left to sweep
    assert fake.pauses[0] is None  # idle, it waits for a signal, never on a timer


def test_a_killed_service_leaves_a_sweep_term_then_grace_then_kill(fake: FakeOS) -> None:
    fake.add(201, dies_on={signal.SIGTERM, signal.SIGKILL})
    fake.add(202, dies_on={signal.SIGKILL}, child=False)  # ignores TERM; not our child
    fake.add(203, dies_on={signal.SIGKILL})  # ignores TERM
    fake.at(3.0, lambda: fake.end(SERVICE, killed(signal.SIGKILL)))
    code = Guard(fake, SERVICE, GRACE).run()
    assert code == 128 + signal.SIGKILL
    for pid in (201, 202, 203):
        assert to(fake, pid)[:2] == [(3.0, signal.SIGTERM), (3.0, signal.SIGCONT)]
    assert to(fake, 201) == [(3.0, signal.SIGTERM), (3.0, signal.SIGCONT)]  # gone on TERM
    assert to(fake, 202)[2:] == to(fake, 203)[2:] == [(3.0 + GRACE, signal.SIGKILL)]
    assert fake.alive == {}
    assert fake.ended == []  # every child it had was reaped


def test_a_sweep_ends_early_once_everything_is_gone(fake: FakeOS) -> None:
    fake.add(201, dies_on={signal.SIGTERM})
    fake.at(0.0, lambda: fake.end(SERVICE, exited(0)))
    assert Guard(fake, SERVICE, GRACE).run() == 0
    assert fake.now < GRACE
    assert all(s != signal.SIGKILL for _, s in to(fake, 201))


def test_a_stop_signal_during_the_sweep_kills_at_once(fake: FakeOS) -> None:
    fake.add(201, dies_on={signal.SIGKILL})
    fake.at(0.0, lambda: fake.end(SERVICE, killed(signal.SIGKILL)))
    fake.at(0.5, lambda: fake.arrive(signal.SIGINT))
    assert Guard(fake, SERVICE, GRACE).run() == 128 + signal.SIGKILL
    assert to(fake, 201)[-1] == (0.5, signal.SIGKILL)
    assert not [s for _, s in to(fake, SERVICE)]  # nothing sent to a service that is gone


def test_a_service_that_does_not_stop_is_killed_after_grace_and_margin(fake: FakeOS) -> None:
    fake.at(1.0, lambda: fake.arrive(signal.SIGTERM))
    code = Guard(fake, SERVICE, GRACE).run()
    assert code == 128 + signal.SIGKILL
    assert to(fake, SERVICE) == [
        (1.0, signal.SIGTERM),
        (1.0 + GRACE + GUARD_STOP_MARGIN, signal.SIGKILL),
    ]


def test_a_second_stop_signal_is_forwarded_but_keeps_the_first_deadline(fake: FakeOS) -> None:
    fake.at(0.0, lambda: fake.arrive(signal.SIGTERM))
    fake.at(1.0, lambda: fake.arrive(signal.SIGTERM))
    assert Guard(fake, SERVICE, GRACE).run() == 128 + signal.SIGKILL
    assert to(fake, SERVICE) == [
        (0.0, signal.SIGTERM),
        (1.0, signal.SIGTERM),
        (GRACE + GUARD_STOP_MARGIN, signal.SIGKILL),
    ]


def test_orphans_it_inherits_are_reaped_and_do_not_end_the_guard(fake: FakeOS) -> None:
    fake.add(301, dies_on=set())
    fake.at(1.0, lambda: fake.end(301, exited(0)))  # an orphan ends while the service runs
    fake.at(2.0, lambda: fake.end(SERVICE, exited(1)))
    assert Guard(fake, SERVICE, GRACE).run() == 1
    assert fake.now == 2.0
    assert fake.ended == []


@pytest.mark.parametrize(
    ("status", "code"),
    [(exited(0), 0), (exited(1), 1), (exited(208), 208), (killed(9), 137), (killed(15), 143)],
)
def test_exit_code_is_the_shells(status: int, code: int) -> None:
    assert exit_code(status) == code


def test_descendants_are_found_below_the_root_without_zombies() -> None:
    table = {
        10: (1, "S"),  # the guard
        11: (10, "S"),  # the service
        12: (11, "S"),  # a petition
        13: (12, "Z"),  # a zombie under it: skipped, but its children are not
        14: (13, "S"),
        15: (10, "R"),  # an orphan reparented to the guard
        20: (1, "S"),  # not ours
    }
    assert sorted(descendants_of(10, table)) == [11, 12, 14, 15]
    assert descendants_of(20, table) == []


class NoFork(GuardOS):
    def set_subreaper(self, on: bool = True) -> bool:
        return True

    def fork(self) -> int:
        raise AssertionError("forked")


def test_no_guard_serves_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHA_NO_GUARD", "1")
    assert serve_guarded(GRACE, lambda guard_pid: 7 if guard_pid is None else 0, NoFork()) == 7
    assert not guard.enabled({"ORCHA_NO_GUARD": "1"})
    assert guard.enabled({}) and guard.enabled({"ORCHA_NO_GUARD": "0"})


def test_without_a_subreaper_it_serves_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCHA_NO_GUARD", raising=False)

    class NoSubreaper(NoFork):
        def set_subreaper(self, on: bool = True) -> bool:
            return False

    assert serve_guarded(GRACE, lambda guard_pid: 7 if guard_pid is None else 0, NoSubreaper()) == 7


def test_a_fork_that_fails_serves_without_a_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCHA_NO_GUARD", raising=False)
    monkeypatch.setattr(guard.threading, "active_count", lambda: 1)  # whatever ran before

    class ForkFails(GuardOS):
        def __init__(self) -> None:
            super().__init__()
            self.subreaper: list[bool] = []

        def set_subreaper(self, on: bool = True) -> bool:
            self.subreaper.append(on)
            return True

        def fork(self) -> int:
            raise BlockingIOError(11, "Resource temporarily unavailable")

    osx = ForkFails()
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert serve_guarded(GRACE, lambda guard_pid: 7 if guard_pid is None else 0, osx) == 7
    assert osx.subreaper == [True, False]  # no subreaper left where nobody reaps orphans
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before  # signals unblocked again


class Unannounced(FakeOS):
    """A service that ends without announcing its exit (a plugin's os._exit)."""

    def exit_announced(self) -> bool:
        return False


def test_a_service_that_dies_unannounced_is_logged_and_exits_1(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = Unannounced()
    fake.add(SERVICE, dies_on={signal.SIGKILL})
    fake.at(1.0, lambda: fake.end(SERVICE, exited(7)))
    with caplog.at_level("ERROR", logger="orcha.service.guard"):
        assert Guard(fake, SERVICE, GRACE).run() == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"the service (pid {SERVICE}) died unexpectedly with exit code 7 (not through its "
        "own stop: a plugin may have called os._exit); stopping what it left running; "
        "exiting 1"
    ]


def test_a_service_that_announced_its_exit_keeps_its_code(fake: FakeOS) -> None:
    fake.at(1.0, lambda: fake.end(SERVICE, exited(212)))
    assert Guard(fake, SERVICE, GRACE).run() == 212


def test_the_exit_pipe_tells_an_announced_exit_from_none() -> None:
    told, silent = GuardOS(), GuardOS()
    for osx in (told, silent):
        osx.open_exit_pipe()
    try:
        told.announce_exit()  # as the service does on its way out (same process here)
        assert told.exit_announced() is True
        assert silent.exit_announced() is False
    finally:
        for osx in (told, silent):
            osx.keep_exit_pipe(service=True)
            osx.keep_exit_pipe(service=False)
