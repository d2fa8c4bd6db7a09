"""The tracker of petitions' processes (orcha.service.orphans) on a fake process table:
descendants remembered, orphans attributed (by what was seen, token, session, or the
only petition that could own them), ambiguous ones kept aside, zombies reaped by PID."""

from __future__ import annotations

import os

from orcha.service.orphans import ProcInfo, Tracker, read_proc_table

ME = 100
MY_SID = 100


class Table:
    """A process table the test edits: pid -> ProcInfo."""

    def __init__(self) -> None:
        self.rows: dict[int, ProcInfo] = {ME: ProcInfo(1, MY_SID, 10, "S", 0)}
        self.tokens: dict[int, str] = {}
        self.reaped: list[int] = []

    def add(self, pid: int, ppid: int, sid: int, start: int, rss: int = 0, state: str = "S"):  # type: ignore[no-untyped-def]
        self.rows[pid] = ProcInfo(ppid, sid, start, state, rss)

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


def test_the_real_process_table_has_this_process() -> None:
    table = read_proc_table()
    me = table[os.getpid()]
    assert me.ppid == os.getppid() and me.rss > 0 and me.state in "RS"


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
