"""Finding every process of a petition when orcha cannot give it a cgroup (the fallback
of points 3b and 3c of issue 12; see docs/reliability.rst).

Two things together:

* the service is a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``): a process whose
  parent dies is re-parented to the service instead of to init, so a double-forked
  daemon stays below the service, whatever it did to its environment or its session;
* a :class:`Tracker` looks at the process table every :data:`~orcha.defaults.TRACK_SECONDS`
  while petitions run (and at each petition's end) and remembers, per petition, every
  descendant of its processes it has seen (PID and start time, so a reused PID is never
  taken for it). A process that was seen once stays the petition's after its parent dies.

A look costs what changed, not the size of the host: the kernel hands out PIDs in
order, and ``/proc/loadavg`` names the last one, so a look reads the processes born
since the previous one (and those petitions own), not a listing of ``/proc`` (0.4 ms
with 1,000 processes, at every end of a stream of short petitions). Every
:data:`FULL_SECONDS` (longer on a host with many processes), or when that range is too
long or unknown, it reads everything.

An orphan the tracker never saw below a petition (it was born and orphaned between two
looks) is a child of the service in a session other than the service's. It is
attributed, in this order, by the petition token in its environment, by its session (a
petition's main process leads its own session), or, when only one running petition
started before it, to that one. Otherwise it is ambiguous: it is attributed once all but
one of the petitions it may belong to have ended, and if all have, it is a *stray* the
service stops when it stops.

The service reaps (by PID, never ``waitpid(-1)``, which would steal the exit status of
processes the runner waits for) the zombies of orphans it adopted.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from orcha.service.proc_table import (
    ProcInfo,
    list_pids,
    read_last_pid,
    read_pid_max,
    read_stat,
    read_token,
    reap,
)

log = logging.getLogger("orcha.service.orphans")

_PR_SET_CHILD_SUBREAPER = 36

#: Seconds between two reads of every process's stat (between them, a look reads only
#: new processes and those that matter; see Tracker._refresh), and more on a host with
#: many processes: FULL_SECONDS_EACH per process (such a read costs about 10 us each:
#: with 10,000 processes, one read every 20 s, not 5 % of a core).
FULL_SECONDS = 2.0
FULL_SECONDS_EACH = 0.002
#: At most this many PIDs born since the last look are read one by one; more, and the
#: look lists /proc instead.
SPAN_MAX = 2048


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux); False if the kernel refuses."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


@dataclass
class Tracked:
    """One petition's processes, as far as the tracker knows them."""

    token: str
    since: int  # start ticks of its first main process: nothing of it is older
    roots: dict[int, int | None] = field(default_factory=dict)  # pid -> start ticks
    members: dict[int, int] = field(default_factory=dict)  # pid -> start ticks


class Tracker:
    """Remembers each running petition's descendants, adopts its orphans, reaps them.

    Thread-safe. :meth:`tick` is one look at the process table (the caller's thread
    calls it every :data:`~orcha.defaults.TRACK_SECONDS`); spawning a petition's process
    holds :attr:`lock` from fork to :meth:`watch`, so a look never sees a main process
    before it is known (and never takes it for an orphan or reaps it).
    """

    def __init__(
        self,
        *,
        list_pids: Callable[[], list[int]] = list_pids,
        read_stat: Callable[[int], ProcInfo | None] = read_stat,
        read_token: Callable[[int], str | None] = read_token,
        reap: Callable[[int], None] = reap,
        me: int | None = None,
        subreaper: bool = False,
        clock: Callable[[], float] = time.monotonic,
        last_pid: Callable[[], int | None] = read_last_pid,
        pid_max: Callable[[], int] = read_pid_max,
    ) -> None:
        """The callables are the OS seam (tests pass a fake table); ``subreaper``:
        whether this process adopts orphans (else it only remembers what it saw)."""
        self.lock = threading.RLock()
        self.subreaper = subreaper
        self._list_pids = list_pids
        self._read_stat = read_stat
        self._clock = clock
        self._full_at = 0.0  # when the next look reads every process again
        self._last_pid = last_pid
        self._pid_max = pid_max()
        self._last: int | None = None  # the last PID handed out, as of the last look
        self._missed: set[int] = set()  # born since the last look but not readable yet
        self._spawned: set[int] = set()  # main processes started since the last look
        self._read_token = read_token
        self._reap = reap
        self._me = os.getpid() if me is None else me
        self._tracked: dict[str, Tracked] = {}
        # Orphans that may belong to several petitions: pid -> (start, candidate tokens).
        self._ambiguous: dict[int, tuple[int, set[str]]] = {}
        self._strays: dict[int, int] = {}  # every candidate ended: pid -> start
        self._table: dict[int, ProcInfo] = {}
        self._children: dict[int, set[int]] = {}  # ppid -> its children in _table

    @property
    def active(self) -> bool:
        """Whether any petition is tracked (the caller ticks only then)."""
        with self.lock:
            return bool(self._tracked) or bool(self._ambiguous)

    def watch(self, token: str, pid: int, start: int | None, spawned: bool = False) -> None:
        """Process ``pid`` (started at ``start`` ticks) is a main process of petition
        ``token``; ``spawned``: the caller started it since the last look (holding
        :attr:`lock` from its start to this call)."""
        with self.lock:
            if spawned:
                self._spawned.add(pid)
            tracked = self._tracked.get(token)
            if tracked is None:
                tracked = self._tracked[token] = Tracked(token, start or 0)
            elif start is not None and start < tracked.since:
                tracked.since = start
            tracked.roots[pid] = start

    def forget(self, token: str) -> None:
        """Petition ``token`` has ended and its processes were stopped."""
        with self.lock:
            self._tracked.pop(token, None)
            for pid, (start, candidates) in list(self._ambiguous.items()):
                candidates.discard(token)
                if not candidates:
                    del self._ambiguous[pid]
                    self._strays[pid] = start

    def members(self, token: str) -> list[int]:
        """The PIDs the tracker attributes to petition ``token`` (main processes
        excluded), as of the last look."""
        with self.lock:
            tracked = self._tracked.get(token)
            found = list(tracked.members) if tracked is not None else []
            found += [pid for pid, (_, c) in self._ambiguous.items() if c == {token}]
            return found

    def knows(self, token: str) -> bool:
        """Whether petition ``token`` is tracked (its processes are all listed)."""
        with self.lock:
            return token in self._tracked

    def roots(self, token: str) -> list[int]:
        """Petition ``token``'s main processes, as told by :meth:`watch`."""
        with self.lock:
            tracked = self._tracked.get(token)
            return list(tracked.roots) if tracked is not None else []

    def live_roots(self, token: str) -> list[int]:
        """Petition ``token``'s main processes still running (same PID, same start)."""
        with self.lock:
            tracked = self._tracked.get(token)
            if tracked is None:
                return []
            return [p for p, s in tracked.roots.items() if self._alive(p, s)]

    def rss(self, token: str) -> int:
        """Bytes resident in petition ``token``'s processes at the last look (each
        process's RSS summed: pages shared between them count once per process)."""
        with self.lock:
            tracked = self._tracked.get(token)
            if tracked is None:
                return 0
            pids = set(tracked.roots) | set(tracked.members)
            return sum(self._table[pid].rss for pid in pids if pid in self._table)

    def strays(self) -> list[int]:
        """Orphans no running petition can own any more (the service stops them when it
        stops); dead ones dropped."""
        with self.lock:
            self._strays = {p: s for p, s in self._strays.items() if self._alive(p, s)}
            return list(self._strays)

    def _alive(self, pid: int, start: int | None) -> bool:
        info = self._read_stat(pid)
        return info is not None and info.state != "Z" and (start is None or info.start == start)

    def _put(self, pid: int, info: ProcInfo) -> None:
        old = self._table.get(pid)
        if old is not None and old.ppid != info.ppid:
            self._unlink(pid, old.ppid)
        self._table[pid] = info
        self._children.setdefault(info.ppid, set()).add(pid)

    def _drop(self, pid: int) -> None:
        old = self._table.pop(pid, None)
        if old is not None:
            self._unlink(pid, old.ppid)

    def _unlink(self, pid: int, ppid: int) -> None:
        siblings = self._children.get(ppid)
        if siblings is not None:
            siblings.discard(pid)
            if not siblings:
                del self._children[ppid]

    def _born(self, last: int | None) -> set[int] | None:
        """The PIDs handed out since the previous look (up to ``last``), or None if that
        is unknown or more than :data:`SPAN_MAX` (then the look lists /proc)."""
        before = self._last
        if last is None or before is None:
            return None
        if last >= before:
            if last - before > SPAN_MAX:
                return None
            return set(range(before + 1, last + 1))
        # Wrapped around pid_max: from there on PIDs start again near 1.
        if self._pid_max - before + last > SPAN_MAX:
            return None
        return set(range(before + 1, self._pid_max)) | set(range(1, last + 1))

    def _refresh(self) -> None:
        """Bring the process table up to date: /proc/PID/stat read again only for what
        may have changed in a way that matters (processes born since the last look, the
        service's children, what petitions own or may own), and for every process every
        :data:`FULL_SECONDS` (more with many processes): so a look at the end of each of
        many short petitions costs neither a listing of /proc nor a read of each
        process."""
        now = self._clock()
        full = now >= self._full_at
        last = self._last_pid()  # first: what is born after it is for the next look
        born = self._born(last)
        self._last = last
        if born is not None and not self._spawned <= born:
            # A process started since the last look is not among the PIDs handed out
            # since: this kernel (or sandbox) does not say which PID it handed out last.
            log.warning("/proc/loadavg does not name the last PID; listing /proc at each look")
            self._last_pid = _unknown
            born = None
        self._spawned = set()
        fresh = {self._me} | set(self._ambiguous) | set(self._strays)
        fresh.update(self._children.get(self._me, ()))
        for tracked in self._tracked.values():
            fresh.update(tracked.roots)
            fresh.update(tracked.members)
        if full or born is None:
            listed = set(self._list_pids())
            for pid in self._table.keys() - listed:
                self._drop(pid)
            todo = listed if full else (listed - self._table.keys()) | (fresh & listed)
            born = set()
        else:
            # A PID is handed out a moment before its process shows in /proc: one not
            # there yet is looked for once more at the next look.
            todo = fresh | born | self._missed
        missed: set[int] = set()
        for pid in todo:
            info = self._read_stat(pid)
            if info is None or info.thread:
                self._drop(pid)
                if info is None and pid in born:
                    missed.add(pid)
            else:
                self._put(pid, info)
        self._missed = missed
        if full:
            self._full_at = now + max(FULL_SECONDS, len(self._table) * FULL_SECONDS_EACH)

    def tick(self) -> None:
        """One look at the process table: attribute new descendants and orphans, reap the
        zombies of adopted orphans, forget the dead."""
        with self.lock:
            self._refresh()
            table, children = self._table, self._children
            roots: set[int] = set()
            for tracked in self._tracked.values():
                tracked.members = {p: s for p, s in tracked.members.items() if _same(table, p, s)}
                roots.update(tracked.roots)
            # Descendants of what each petition has: children of its processes.
            owner: dict[int, str] = {}
            for tracked in self._tracked.values():
                frontier = [p for p in tracked.roots if p in table] + list(tracked.members)
                while frontier:
                    pid = frontier.pop()
                    owner[pid] = tracked.token
                    for child in children.get(pid, ()):
                        if child not in tracked.members and child not in tracked.roots:
                            tracked.members[child] = table[child].start
                            frontier.append(child)
            me = table.get(self._me)
            my_sid = me.sid if me is not None else None
            for pid in list(children.get(self._me, ())):
                info = table[pid]
                if pid in roots or info.sid == my_sid:
                    continue  # a main process (its runner waits for it), or our own child
                token = owner.get(pid) or self._attribute(pid, info)
                if info.state == "Z" and self.subreaper:
                    self._reap(pid)  # adopted: nobody else waits for it
                    continue
                if token is not None and pid not in owner:
                    self._tracked[token].members[pid] = info.start
                    frontier = [pid]
                    while frontier:
                        for child in children.get(frontier.pop(), ()):
                            self._tracked[token].members[child] = table[child].start
                            frontier.append(child)
            for pid, (start, _) in list(self._ambiguous.items()):
                if not _same(table, pid, start):
                    del self._ambiguous[pid]

    def _attribute(self, pid: int, info: ProcInfo) -> str | None:
        """The petition an orphan the tracker never saw belongs to, or None (ambiguous
        ones are kept aside)."""
        known = self._ambiguous.get(pid)
        if known is not None and known[0] == info.start:
            candidates = known[1] & set(self._tracked)
            if len(candidates) == 1:
                del self._ambiguous[pid]
                return next(iter(candidates))
            return None
        if pid in self._strays:
            return None
        token = self._read_token(pid)
        if token in self._tracked:
            return token
        for tracked in self._tracked.values():
            if info.sid in tracked.roots:
                return tracked.token
        candidates = {t.token for t in self._tracked.values() if t.since <= info.start}
        if len(candidates) == 1:
            return next(iter(candidates))
        if candidates:
            log.info("process %d may belong to %d petitions; kept aside", pid, len(candidates))
            self._ambiguous[pid] = (info.start, candidates)
        else:
            self._strays[pid] = info.start
        return None

    def since(self, token: str) -> int | None:
        """When petition ``token``'s first main process started (clock ticks since boot;
        nothing carrying its token is older), or None if it is not tracked."""
        with self.lock:
            tracked = self._tracked.get(token)
            return tracked.since if tracked is not None and tracked.since else None

    def started_since(self, ticks: int) -> list[int]:
        """After a look: every process that started at ``ticks`` or later (what may
        carry the token of a petition that started then)."""
        with self.lock:
            self.tick()
            return [pid for pid, info in self._table.items() if info.start >= ticks]

    def all_known(self) -> Iterable[int]:
        """Every PID attributed to any petition, ambiguous or stray (for a stopping
        service)."""
        with self.lock:
            pids: set[int] = set(self._ambiguous) | set(self._strays)
            for tracked in self._tracked.values():
                pids.update(tracked.roots)
                pids.update(tracked.members)
            return sorted(pids)


def _unknown() -> int | None:
    return None


def _same(table: dict[int, ProcInfo], pid: int, start: int | None) -> bool:
    info = table.get(pid)
    return info is not None and (start is None or info.start == start)
