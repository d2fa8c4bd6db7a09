"""``--mem`` as a limit (point 4 of issue 12; see docs/reliability.rst).

A petition that asked for memory is watched while it runs; once its tree is found to
use more than it asked for, it is stopped and fails with :attr:`ExitCode.MEMORY` and one
line saying how much it used and how much it asked for.

Two ways to find out, chosen by the machine's process control
(:mod:`orcha.service.procs`):

* in a cgroup of its own (cgroup v2), the kernel enforces ``memory.max`` and counts OOM
  kills in ``memory.events``: a probe reads that count;
* otherwise the probe sums the resident memory (RSS) of the petition's processes, looked
  at every :data:`~orcha.defaults.TRACK_SECONDS`: a spike shorter than that can pass
  unseen, and pages shared between its processes count once per process.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from orcha.units import size_text

log = logging.getLogger("orcha.service.memory")


def over_limit_message(used: int | None, limit: int) -> str:
    """The one line a petition stopped for its memory fails with: "used 312 MiB, asked
    for 10 MiB", "used 2 MiB, asked for 100 B" (sizes as ``orcha status`` shows them,
    :func:`orcha.units.size_text`; ``used`` None: the kernel stopped it at its limit, so
    it used more)."""
    asked = size_text(limit)
    if used is None or used <= limit:
        return f"used more than {asked}, asked for {asked}"
    return f"used {size_text(used)}, asked for {asked}"


#: A probe: how much the petition uses now (bytes), and whether it is over its limit
#: (the kernel may have said so, e.g. an OOM kill, when the amount cannot show it).
Probe = Callable[[], tuple[int | None, bool]]


@dataclass
class _Watched:
    limit: int
    probe: Probe
    exceeded: Callable[[str], None]
    told: bool = False


class MemoryWatch:
    """The petitions being held to their memory request. Thread-safe; :meth:`check` is
    called at every tick of the process control's look at its petitions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[str, _Watched] = {}
        # Petitions whose process is being started (see starting()), and how many starts
        # each one began or ended: a probe that overlapped one is not believed.
        self._starting: dict[str, int] = {}
        self._starts: dict[str, int] = {}

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._watched)

    def __contains__(self, token: object) -> bool:
        """Whether petition ``token`` is held to a limit."""
        with self._lock:
            return token in self._watched

    def add(self, token: str, limit: int, probe: Probe, exceeded: Callable[[str], None]) -> None:
        """Hold petition ``token`` to ``limit`` bytes: ``exceeded(message)`` is called
        once (from the checking thread) when ``probe`` shows it above."""
        with self._lock:
            self._watched[token] = _Watched(limit, probe, exceeded)

    def remove(self, token: str) -> None:
        with self._lock:
            self._watched.pop(token, None)
            self._starts.pop(token, None)

    @contextlib.contextmanager
    def starting(self, token: str) -> Iterator[None]:
        """Within it a process of petition ``token`` is being started: until it execs it
        may share the service's memory (:mod:`orcha.service.native`), so a probe that
        ran meanwhile, which may have counted the service's memory as the petition's,
        is not believed (the next look decides)."""
        with self._lock:
            self._starting[token] = self._starting.get(token, 0) + 1
            self._starts[token] = self._starts.get(token, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._starting.pop(token) - 1
                if left:
                    self._starting[token] = left
                self._starts[token] = self._starts.get(token, 0) + 1

    def check(self) -> None:
        """Probe every watched petition; tell each one found over its limit (once)."""
        with self._lock:
            watched = [
                (t, w, self._starts.get(t, 0))
                for t, w in self._watched.items()
                if not w.told and t not in self._starting
            ]
        for token, w, starts in watched:
            try:
                used, over = w.probe()
            except Exception:
                log.exception("measuring the memory of petition %s failed", token)
                continue
            if not over and (used is None or used <= w.limit):
                continue
            with self._lock:
                if token in self._starting or self._starts.get(token, 0) != starts:
                    continue  # a start overlapped the probe: look again next time
            w.told = True
            try:
                w.exceeded(over_limit_message(used, w.limit))
            except Exception:
                log.exception("stopping petition %s for its memory failed", token)
