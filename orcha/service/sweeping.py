"""What petitions leave behind once they have ended, dealt with in the background and in
batches, so that a stream of short petitions pays for it once per batch, not once each:

* :class:`Sweeper`: processes a petition left running that carry its token (a scan of
  ``/proc``; with the tracker, of the processes born since the petition started) where
  neither its cgroup nor the tracker held its whole tree;
* :class:`CgroupRemover`: the cgroups of ended petitions (emptied when they ended;
  removing one took a third of a millisecond on the way from one petition's end to
  the next one's start).

Idle, each thread waits without a timeout.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from orcha.service.proc_table import list_pids, read_environ, token_in

if TYPE_CHECKING:
    from orcha.service.cgroups import Cgroups
    from orcha.service.job import Job
    from orcha.service.procs import ProcessControl

log = logging.getLogger("orcha.service.procs")


class Sweeper:
    """Stops what petitions left running after they ended normally.

    One thread, woken when petitions end; one scan of /proc covers every petition that
    ended since the last scan, so a stream of short petitions costs one scan per batch
    instead of one each. Idle, it waits without a timeout.
    """

    #: Seconds the sweeper lets ends accumulate before a scan.
    BATCH_SECONDS = 0.05

    def __init__(self, procs: ProcessControl, grace: float) -> None:
        self._procs = procs
        self._grace = grace
        # Per token: the job, and the clock ticks before which nothing carries its token
        # (None: unknown; see ProcessControl.started_at).
        self._pending: dict[str, tuple[Job, int | None]] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, job: Job) -> None:
        """Called before the job's processes are forgotten (its start is still known)."""
        since = self._procs.started_at(job.token, job.started)
        with self._cond:
            self._pending[job.token] = (job, since)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="sweeper", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending))
            time.sleep(self.BATCH_SECONDS)
            with self._cond:
                batch, self._pending = self._pending, {}
            try:
                # Nothing older than a petition carries its token: with the tracker's
                # table, only what was born since the batch's first start is read (a
                # read of every environment cost 10 ms with 1,000 processes, at each
                # batch of a stream of short petitions).
                starts = [since for _, since in batch.values() if since is not None]
                pids = None
                if len(starts) == len(batch):
                    pids = self._procs.started_since(min(starts))
                carriers = tokens_in_proc(pids)
                for token, (job, _) in batch.items():
                    if token in carriers:
                        n = self._procs.stop_tree(carriers[token], token, self._grace)
                        log.info("petition %s left %d process(es) behind; stopped", job.id, n)
            except Exception:
                log.exception("sweeping leftover processes failed")


#: Seconds before the environments that read empty are read again: a process caught in
#: ``exec`` reads empty until the kernel has set up its new one (microseconds, unless it
#: is preempted there), and a leftover seen only then would be missed.
REREAD_SECONDS = 0.001


def tokens_in_proc(pids: Iterable[int] | None = None) -> dict[str, list[int]]:
    """Every petition token found in the environment of a process (of ``pids``; None:
    of every process), with the PIDs carrying it. Environments that read empty are read
    once more, REREAD_SECONDS later.

    Reads /proc directly (a tenth of psutil's cost). Processes of other users are
    unreadable and skipped.
    """
    me = os.getpid()
    found: dict[str, list[int]] = {}

    def look(pid: int) -> bool:
        """Note the token ``pid`` carries; True if its environment read empty."""
        environ = read_environ(pid)
        token = token_in(environ) if environ else None
        if token is not None:
            found.setdefault(token, []).append(pid)
        return environ == b""

    empty = [pid for pid in (list_pids() if pids is None else pids) if pid != me and look(pid)]
    if empty:
        time.sleep(REREAD_SECONDS)
        for pid in empty:
            look(pid)
    return found


def token_carriers(token: str) -> list[int]:
    """PIDs of processes whose environment holds ``ORCHA_PETITION_TOKEN=<token>``."""
    return tokens_in_proc().get(token, [])


class CgroupRemover:
    """Removes the cgroups of ended petitions in batches, in one thread (their trees were
    stopped: they are empty, or emptied by :meth:`Cgroups.remove`)."""

    #: Seconds the remover lets ends accumulate before it removes their cgroups.
    BATCH_SECONDS = 0.05

    def __init__(self, cgroups: Cgroups) -> None:
        self._cgroups = cgroups
        self._pending: list[str] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, token: str) -> None:
        with self._cond:
            self._pending.append(token)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="cgroups", daemon=True)
                self._thread.start()
            if len(self._pending) == 1:
                self._cond.notify()

    def flush(self) -> None:
        """Remove every cgroup queued now (the service stops)."""
        self._remove(self._take())

    def _take(self) -> list[str]:
        with self._cond:
            batch, self._pending = self._pending, []
        return batch

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending))
            time.sleep(self.BATCH_SECONDS)
            self._remove(self._take())

    def _remove(self, tokens: list[str]) -> None:
        for token in tokens:
            try:
                self._cgroups.remove(token)
            except Exception as e:
                log.warning("cannot remove the cgroup of %s: %s", token, e)
