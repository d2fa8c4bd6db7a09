"""The tracker of petitions' processes (orcha.service.orphans) on a fake process table:
descendants remembered, orphans attributed (by what was seen, token, session, or the
only petition that could own them), ambiguous ones kept aside, zombies reaped by PID."""

from __future__ import annotations

import os

import pytest

from orcha.service import proc_table
from orcha.service.orphans import Tracker
from orcha.service.proc_table import ProcInfo

ME = 100
MY_SID = 100
PID_MAX = 32768


class Table:
    """A process table the test edits: pid -> ProcInfo."""

    def __init__(self) -> None:
        self.rows: dict[int, ProcInfo] = {ME: ProcInfo(1, MY_SID, 10, "S", 0)}
        self.tokens: dict[int, str] = {}
        self.reaped: list[int] = []
        self.last = ME  # the last PID handed out (as /proc/loadavg says)

    def add(self, pid: int, ppid: int, sid: int, start: int, rss: int = 0, state: str = "S"):  # type: ignore[no-untyped-def]
        self.rows[pid] = ProcInfo(ppid, sid, start, state, rss)
        self.last = pid  # handed out now (the kernel goes up, and wraps around)

    def orphan(self, pid: int) -> None:
        """Its parent died: the subreaper (ME) adopts it."""
        self.rows[pid] = self.rows[pid]._replace(ppid=ME)

    def tracker(self) -> Tracker:
        return Tracker(
            list_pids=lambda: list(self.rows),
            read_stat=self.rows.get,
            read_token=self.tokens.get,
            reap=self._reap,
            me=ME,
            subreaper=True,
            last_pid=lambda: self.last,
            pid_max=lambda: PID_MAX,
        )

    def _reap(self, pid: int) -> None:
        self.reaped.append(pid)
        del self.rows[pid]


def test_descendants_seen_once_stay_the_petitions_after_their_parent_dies() -> None:
    t = Table()
    t.add(200, ME, 200, 50)  # the main process, leading its own session
    t.add(201, 200, 200, 51)
    t.add(202, 201, 202, 52)  # setsid'd grandchild
    tracker = t.tracker()
    tracker.watch("a", 200, 50)
    tracker.tick()
    assert sorted(tracker.members("a")) == [201, 202]
    del t.rows[201], t.rows[200]  # its parents exit
    t.orphan(202)
    tracker.tick()
    assert tracker.members("a") == [202]


def test_a_reused_pid_is_not_taken_for_a_member() -> None:
    t = Table()
    t.add(200, ME, 200, 50)
    t.add(201, 200, 200, 51)
    tracker = t.tracker()
    tracker.watch("a", 200, 50)
    tracker.tick()
    t.add(201, 1, 999, 80)  # 201 died and another process got the PID
    tracker.tick()
    assert tracker.members("a") == []


def test_an_unseen_orphan_is_attributed_by_token_then_session_then_the_only_candidate() -> None:
    t = Table()
    t.add(200, ME, 200, 50)
    t.add(300, ME, 300, 60)
    tracker = t.tracker()
    tracker.watch("a", 200, 50)
    tracker.watch("b", 300, 60)
    t.add(400, ME, 400, 70)  # born and orphaned between two looks, setsid'd
    t.tokens[400] = "a"
    t.add(401, ME, 300, 71)  # in b's session
    t.add(402, ME, 402, 55)  # env -i, setsid: only a had started by then
    tracker.tick()
    assert sorted(tracker.members("a")) == [400, 402]
    assert tracker.members("b") == [401]


def test_an_orphan_two_petitions_may_own_waits_until_one_is_left() -> None:
    t = Table()
    t.add(200, ME, 200, 50)
    t.add(300, ME, 300, 60)
    tracker = t.tracker()
    tracker.watch("a", 200, 50)
    tracker.watch("b", 300, 60)
    t.add(500, ME, 500, 70)  # no token, own session, born after both started
    tracker.tick()
    assert tracker.members("a") == [] and tracker.members("b") == []
    tracker.forget("a")
    assert tracker.members("b") == [500]  # now it can only be b's
    tracker.forget("b")
    assert tracker.strays() == [500]  # no petition left to own it: the service stops it


def test_the_services_own_children_and_main_processes_are_never_orphans() -> None:
    t = Table()
    t.add(200, ME, 200, 50, state="Z")  # a main process: its runner waits for it
    t.add(250, ME, MY_SID, 55, state="Z")  # a child of the service's own (same session)
    t.add(260, ME, 260, 56, state="Z")  # an adopted orphan
    tracker = t.tracker()
    tracker.watch("a", 200, 50)
    tracker.tick()
    assert t.reaped == [260]


def test_rss_sums_the_petitions_processes() -> None:
    t = Table()
    t.add(200, ME, 200, 50, rss=10 << 20)
    t.add(201, 200, 200, 51, rss=300 << 20)
    t.add(300, ME, 300, 60, rss=1 << 20)
    tracker = t.tracker()
    tracker.watch("a", 200, 50)
    tracker.watch("b", 300, 60)
    tracker.tick()
    assert tracker.rss("a") == 310 << 20
    assert tracker.rss("b") == 1 << 20


def test_a_look_reads_only_what_may_matter_and_everything_now_and_then() -> None:
    t = Table()
    t.add(200, ME, 200, 50)
    t.add(900, 1, 900, 5)  # somebody else's process
    now = [0.0]
    read: list[int] = []

    def read_stat(pid: int) -> ProcInfo | None:
        read.append(pid)
        return t.rows.get(pid)

    tracker = Tracker(
        list_pids=lambda: list(t.rows), read_stat=read_stat, read_token=t.tokens.get,
        reap=t._reap, me=ME, subreaper=True, clock=lambda: now[0],
        last_pid=lambda: t.last, pid_max=lambda: PID_MAX,
    )  # fmt: skip
    tracker.watch("a", 200, 50)
    tracker.tick()
    assert 900 in read  # the first look reads everything
    read.clear()
    t.add(300, ME, 300, 60)  # new: read
    tracker.tick()
    assert 900 not in read and 300 in read and 200 in read
    read.clear()
    now[0] += 2.5
    tracker.tick()
    assert 900 in read  # every 2 s, everything again


def counting_tracker(t: Table, listed: list[int], read: list[int]) -> Tracker:
    """A tracker on ``t`` whose listings of /proc and reads are counted (its clock stays
    put: after the first look, no look reads everything again)."""

    def list_pids() -> list[int]:
        listed.append(1)
        return list(t.rows)

    def read_stat(pid: int) -> ProcInfo | None:
        read.append(pid)
        return t.rows.get(pid)

    return Tracker(
        list_pids=list_pids, read_stat=read_stat, read_token=t.tokens.get, reap=t._reap,
        me=ME, subreaper=True, clock=lambda: 0.5, last_pid=lambda: t.last,
        pid_max=lambda: PID_MAX,
    )  # fmt: skip


def test_a_look_reads_the_pids_born_since_the_last_one_without_listing_proc() -> None:
    t = Table()
    for pid in range(101, 140):
        t.add(pid, 1, pid, 5)  # somebody else's processes
    t.add(200, ME, 200, 50)
    listed: list[int] = []
    read: list[int] = []
    tracker = counting_tracker(t, listed, read)
    tracker.watch("a", 200, 50)
    tracker.tick()  # the first look lists and reads everything
    assert listed == [1] and 120 in read
    listed.clear()
    read.clear()
    t.add(201, 200, 200, 51)
    t.add(202, 201, 200, 52)
    tracker.tick()
    assert listed == []  # no listing: 201 and 202 were handed out since the last look
    assert sorted(set(read)) == [ME, 200, 201, 202]
    assert sorted(tracker.members("a")) == [201, 202]


def test_a_pid_handed_out_before_its_process_shows_is_looked_for_again() -> None:
    t = Table()
    t.add(200, ME, 200, 50)
    tracker = counting_tracker(t, [], [])
    tracker.watch("a", 200, 50)
    tracker.tick()
    t.last = 201  # handed out, not in /proc yet
    tracker.tick()
    t.add(201, 200, 200, 51)
    t.add(250, 1, 250, 52)  # the next look's own span starts after 201
    tracker.tick()
    assert tracker.members("a") == [201]


def test_a_thread_is_not_taken_for_a_process() -> None:
    t = Table()
    t.add(200, ME, 200, 50)
    tracker = counting_tracker(t, [], [])
    tracker.watch("a", 200, 50)
    tracker.watch("b", 300, 60)
    tracker.tick()
    # The ID of a thread of the service's parent's child: /proc/301 reads as a child of
    # the service in another session, as an orphan would (only exit_signal tells).
    t.rows[301] = ProcInfo(ME, 301, 70, "S", 0, thread=True)
    t.last = 301
    tracker.tick()
    assert tracker.members("a") == [] and tracker.members("b") == []
    assert tracker.all_known() == [200, 300]


def test_pids_that_wrapped_around_are_read_and_a_long_span_lists_proc() -> None:
    t = Table()
    t.last = PID_MAX - 3
    t.add(200, ME, 200, 50)
    t.last = PID_MAX - 3
    listed: list[int] = []
    read: list[int] = []
    tracker = counting_tracker(t, listed, read)
    tracker.watch("a", 200, 50)
    tracker.tick()
    listed.clear()
    read.clear()
    t.add(5, 200, 200, 51)  # after PID_MAX - 1, the kernel starts again from the bottom
    tracker.tick()
    assert listed == [] and tracker.members("a") == [5]
    assert {PID_MAX - 2, PID_MAX - 1, 1, 5} <= set(read) and PID_MAX not in read
    t.add(5000, 200, 200, 52)  # thousands of PIDs handed out since: a listing is cheaper
    tracker.tick()
    assert listed == [1] and sorted(tracker.members("a")) == [5, 5000]


def test_what_started_since_a_petition_is_what_may_carry_its_token() -> None:
    t = Table()
    t.add(150, 1, 150, 40)
    t.add(200, ME, 200, 50)
    tracker = t.tracker()
    tracker.watch("a", 200, 50)
    assert tracker.since("a") == 50 and tracker.since("b") is None
    t.add(300, 1, 300, 55)  # somebody else's, born since: it is read, to be sure
    assert sorted(tracker.started_since(50)) == [200, 300]


def test_the_real_tracker_finds_a_grandchild_born_after_its_first_look() -> None:
    import signal
    import subprocess
    import time

    listed: list[int] = []

    def list_pids() -> list[int]:
        listed.append(1)
        return proc_table.list_pids()

    tracker = Tracker(list_pids=list_pids, clock=lambda: 0.5)  # no second full look
    proc = subprocess.Popen(
        ["sh", "-c", "read x; sleep 30 & wait"], stdin=subprocess.PIPE, start_new_session=True
    )
    try:
        tracker.watch("a", proc.pid, proc_table.read_stat(proc.pid).start)  # type: ignore[union-attr]
        tracker.tick()
        assert listed == [1]
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 10
        while not tracker.members("a") and time.monotonic() < deadline:
            tracker.tick()
        (sleep,) = tracker.members("a")
        assert proc_table.read_stat(sleep).ppid == proc.pid  # type: ignore[union-attr]
        assert len(listed) <= 2  # a listing only if thousands of PIDs went by meanwhile
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_everything_is_read_again_less_often_on_a_host_with_many_processes() -> None:
    t = Table()
    for pid in range(200, 5200):
        t.add(pid, 1, pid, 5)
    now = [0.0]
    listed: list[int] = []

    def list_pids() -> list[int]:
        listed.append(1)
        return list(t.rows)

    tracker = Tracker(
        list_pids=list_pids, read_stat=t.rows.get, read_token=t.tokens.get, reap=t._reap,
        me=ME, subreaper=True, clock=lambda: now[0], last_pid=lambda: t.last,
        pid_max=lambda: PID_MAX,
    )  # fmt: skip
    tracker.tick()
    assert listed == [1]
    now[0] = 5.0  # past FULL_SECONDS, not past 5,000 x FULL_SECONDS_EACH
    tracker.tick()
    assert listed == [1]
    now[0] = 10.5
    tracker.tick()
    assert listed == [1, 1]


def test_a_kernel_that_does_not_name_the_last_pid_is_looked_at_by_listing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = Table()
    t.add(200, ME, 200, 50)
    listed: list[int] = []
    tracker = counting_tracker(t, listed, [])
    t.last = 7  # what /proc/loadavg says here, whatever is started
    tracker.watch("a", 200, 50, spawned=True)
    tracker.tick()
    listed.clear()
    t.add(300, ME, 300, 60)
    tracker.watch("b", 300, 60, spawned=True)
    t.add(301, 300, 300, 61)
    t.last = 7
    tracker.tick()
    assert listed == [1] and tracker.members("b") == [301]
    assert "does not name the last PID" in caplog.text
    t.add(302, 300, 300, 62)
    t.last = 7
    tracker.tick()
    assert listed == [1, 1] and sorted(tracker.members("b")) == [301, 302]
