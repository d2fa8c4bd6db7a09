"""What ``orcha top`` knows of the service, built from the event stream alone.

A :class:`TopModel` starts from the last ended records the watch reply carries, and
applies each event envelope ``orcha watch --json`` would print (docs/json-output.rst):

* ``usage`` (every interval): the running petitions with their tree's CPU and memory,
  the queue's head with why each waits, the GPUs and who holds them, the groups, the
  CPU slots in use. It replaces what the model had;
* ``state``, ``submitted``, ``started``, ``attempt``, ``progress``, ``paused``,
  ``resumed``, ``finished``: applied at once, so a petition that starts or ends moves
  between the sections without waiting for the next ``usage``.

A ``usage`` event is measured a moment before it is delivered: a petition may start or
end in between, and its event then arrives before the (older) usage. For a petition an
event has moved since the last ``usage``, the model therefore keeps where the events put
it unless the usage agrees; the next ``usage`` settles everything.

Pure data, no I/O: tested with recorded events.
"""

from __future__ import annotations

from collections import deque
from typing import Any

#: How many ended petitions the model keeps (``orcha top`` shows the last few).
KEEP_ENDED = 20


class TopModel:
    """The service as ``orcha top`` shows it."""

    def __init__(self, recent: list[dict[str, Any]] | None = None) -> None:
        """``recent``: the last ended records, newest first (the watch reply's)."""
        self.running: dict[str, dict[str, Any]] = {}  # ID -> what is known of it
        self.waiting: dict[str, dict[str, Any]] = {}  # ID -> ..., in queue order
        self.ended: deque[dict[str, Any]] = deque(recent or [], maxlen=KEEP_ENDED)
        self.gpus: list[dict[str, Any]] = []
        self.groups: list[dict[str, Any]] = []
        self.cpus: dict[str, int] = {"used": 0, "capacity": 0}
        self.paused = False
        self.queued = 0  # waiting petitions in all (only the head is in ``waiting``)
        self.usage_seen = False  # a first usage has come: the model is complete
        self.updated: float | None = None  # the newest event's timestamp
        self.dropped = 0  # events the service dropped for this slow client
        self._moved: set[str] = set()  # IDs events moved since the last usage

    # -- events ------------------------------------------------------------------------
    def apply(self, envelope: dict[str, Any]) -> bool:
        """Apply one event envelope; whether the model changed (unknown events and
        ``output`` do not change it)."""
        event = envelope.get("event")
        data = envelope.get("data") or {}
        pid = envelope.get("petition")
        stamp = envelope.get("timestamp")
        if event == "usage":
            self._usage(data)
        elif event == "dropped":
            self.dropped += int(data.get("count") or 0)
        elif not isinstance(pid, str):
            return False
        elif event == "state":
            if data.get("state") == "RUNNING":
                self._run(pid, envelope, None)
            elif data.get("state") == "QUEUED" and pid not in self.waiting:
                self._queue(pid, envelope, data, stamp)
        elif event == "submitted":
            self.running.pop(pid, None)  # an ID used again: the new one waits
            self._queue(pid, envelope, data, stamp)
            self.queued += 1
        elif event == "started":
            self._run(pid, envelope, stamp)
        elif event in ("attempt", "progress", "paused", "resumed"):
            entry = self.running.get(pid) or self.waiting.get(pid)
            if entry is None:
                return False
            if event == "attempt":
                entry["attempt"] = data.get("attempt")
            elif event == "progress":
                entry["progress"] = dict(data)
            else:
                entry["paused"] = event == "paused"
        elif event == "finished":
            self._finish(pid, envelope, data, stamp)
        else:
            return False
        if isinstance(stamp, (int, float)):
            self.updated = max(self.updated or stamp, stamp)
        return True

    def _queue(self, pid: str, envelope: dict[str, Any], data: dict[str, Any], stamp: Any) -> None:
        self._moved.add(pid)
        self.waiting[pid] = {
            "id": pid, "kind": envelope.get("kind") or "", "priority": data.get("priority"),
            "submitted": stamp, "why": "queued just now", "paused": False,
        }  # fmt: skip

    def _run(self, pid: str, envelope: dict[str, Any], stamp: Any) -> None:
        self._moved.add(pid)
        entry = self.waiting.pop(pid, None) or {"id": pid, "kind": envelope.get("kind") or ""}
        if pid in self.running:
            return
        if entry.get("why") is not None:
            self.queued = max(0, self.queued - 1)
        entry.pop("why", None)
        entry.update(started=stamp, cpu_percent=None, rss=None, attempt=entry.get("attempt", 1))
        self.running[pid] = entry
        self.cpus["used"] += int(entry.get("cpus") or 1)

    def _finish(self, pid: str, envelope: dict[str, Any], data: dict[str, Any], stamp: Any) -> None:
        self._moved.add(pid)
        entry = self.running.pop(pid, None)
        if entry is not None:
            self.cpus["used"] = max(0, self.cpus["used"] - int(entry.get("cpus") or 1))
        elif self.waiting.pop(pid, None) is not None:
            self.queued = max(0, self.queued - 1)
        self.ended.appendleft({
            "id": pid, "kind": envelope.get("kind") or "", "state": data.get("state"),
            "code": data.get("code"), "message": data.get("message"),
            "started": (entry or {}).get("started"), "ended": stamp,
        })  # fmt: skip

    def _usage(self, data: dict[str, Any]) -> None:
        moved, self._moved = self._moved, set()
        running = {p["id"]: dict(p) for p in data.get("running") or []}
        waiting = {p["id"]: dict(p) for p in data.get("waiting") or []}
        for pid in moved:
            # Where the events put it wins over an older usage (see the module docstring).
            here = "running" if pid in self.running else "waiting" if pid in self.waiting else None
            there = "running" if pid in running else "waiting" if pid in waiting else None
            if here != there and here is not None:
                (running if here == "running" else waiting)[pid] = (
                    self.running if here == "running" else self.waiting
                )[pid]
            if here != there and there is not None:
                (running if there == "running" else waiting).pop(pid)
        self.running, self.waiting = running, waiting
        self.gpus = list(data.get("gpus") or [])
        self.groups = list(data.get("groups") or [])
        self.cpus = dict(data.get("cpus") or {"used": 0, "capacity": 0})
        self.paused = bool(data.get("paused"))
        self.queued = max(int(data.get("queued") or 0), len(self.waiting))
        self.usage_seen = True

    # -- views -------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The model as ``orcha top --json`` prints it (docs/json-output.rst)."""
        return {
            "cpus": dict(self.cpus),
            "paused": self.paused,
            "queued": self.queued,
            "running": sorted(self.running.values(), key=lambda p: p.get("started") or 0),
            "waiting": list(self.waiting.values()),
            "gpus": list(self.gpus),
            "groups": list(self.groups),
            "ended": list(self.ended),
        }
