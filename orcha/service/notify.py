"""Deliveries that must never hold up the scheduler: webhooks and ``on_finish`` hooks.

* :class:`Webhooks` POSTs event envelopes (``{petition, kind, event, timestamp, data}``)
  as JSON to HTTP endpoints, a queue per receiver (:mod:`orcha.service.webhooks`).
* :class:`EventSinks` hands them to the plugins' event sinks.
* :class:`FinishHooks` runs ``hooks: {on_finish: "command template"}`` once a petition
  has ended (or was found INTERRUPTED at a restart), like pueue's callback: its fields
  (:data:`~orcha.defaults.HOOK_FIELDS`: the command, the log's path and the output's last
  lines among them) are substituted shell-quoted, and given as ``ORCHA_<FIELD>``
  environment variables (``ORCHA_ID``, ``ORCHA_TAIL``, ...).

The sinks and the hooks work in one daemon thread each, fed by a bounded queue: when
one is slow, events queue up to :data:`~orcha.defaults.DELIVERY_QUEUE` and older ones are
dropped (and logged) rather than growing the service's memory.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import os
import shlex
import struct
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from orcha.defaults import (
    DELIVERY_QUEUE,
    HOOK_FIELDS,
    HOOK_TAIL_BYTES,
    HOOK_TAIL_LINES,
    HOOK_TIMEOUT,
)
from orcha.service.webhooks import Webhooks, signed

__all__ = ["EventSinks", "FinishHooks", "Webhooks", "signed"]

log = logging.getLogger("orcha.service.notify")


class _Worker:
    """One daemon thread draining a bounded queue of tasks."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: collections.deque[Callable[[], None]] = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy = False  # a task taken off the queue is running
        self.dropped = 0

    def put(self, task: Callable[[], None]) -> None:
        with self._cond:
            if len(self._tasks) >= DELIVERY_QUEUE:
                self._tasks.popleft()
                self.dropped += 1
                if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                    log.warning("%s: %d deliveries dropped (receiver too slow)", self._name,
                                self.dropped)  # fmt: skip
            self._tasks.append(task)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._busy = False
                self._cond.notify_all()  # idle() waits for this
                self._cond.wait_for(lambda: bool(self._tasks))
                task = self._tasks.popleft()
                self._busy = True
            try:
                task()
            except Exception:
                log.exception("%s: a delivery failed", self._name)

    def pending(self) -> int:
        """How many tasks are not done yet (queued, or running)."""
        with self._cond:
            return len(self._tasks) + self._busy

    def idle(self, timeout: float) -> bool:
        """Wait until the queue is empty (for tests and a clean stop); False on timeout.
        Looked at even with no time left: an empty queue is idle at once."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._tasks and not self._busy, max(0.0, timeout)
            )


class EventSinks:
    """Hands every event envelope to the sinks plugins supply, in a delivery thread."""

    def __init__(self, sinks: list[tuple[str, Callable[[dict[str, Any]], None]]]) -> None:
        self.sinks = sinks  # (plugin name, sink)
        self._worker = _Worker("event-sinks")

    def event(self, envelope: dict[str, Any]) -> None:
        if self.sinks:
            self._worker.put(functools.partial(self._deliver, envelope))

    def _deliver(self, envelope: dict[str, Any]) -> None:
        for plugin, sink in self.sinks:
            try:
                sink(dict(envelope))
            except Exception:
                log.exception("plugin %s: its event sink raised; ignored", plugin)

    def idle(self, timeout: float) -> bool:
        return self._worker.idle(timeout)

    def pending(self) -> int:
        """How many deliveries are not done yet."""
        return self._worker.pending()


class FinishHooks:
    """Runs the ``on_finish`` command template after each petition ends."""

    FIELDS = HOOK_FIELDS  # what a template may use (orcha.units.check_hook_template)

    def __init__(self, on_finish: str | None, run: Callable[..., Any] | None = None) -> None:
        self.on_finish = on_finish
        self._run = run or subprocess.run
        self._worker = _Worker("on_finish")

    def finished(self, job: Any) -> None:
        """Run the hook for ``job``, which has ended (its log closed)."""
        if not self.on_finish:
            return
        log_file = getattr(job, "log", None)
        self._queue({
            "id": job.id, "kind": job.kind or "", "state": str(job.state),
            "code": "" if job.code is None else job.code, "message": job.message or "",
            "group": job.schedule.group, "started": job.started or "", "ended": job.ended or "",
            "cwd": getattr(job.petition, "cwd", ""),
            "command": command_of(job.kind, getattr(job.petition, "params", None)),
            "log": getattr(log_file, "path", "") or "",
        })  # fmt: skip

    def record_ended(self, row: dict[str, Any], group: str) -> None:
        """Run the hook for a petition that ended without a job: a record (``status``'s
        fields) a restart marked INTERRUPTED; ``group``: its group."""
        if not self.on_finish:
            return
        self._queue({
            "id": row["id"], "kind": row.get("kind") or "", "state": row["state"],
            "code": "" if row.get("code") is None else row["code"],
            "message": row.get("message") or "", "group": group,
            "started": row.get("started") or "", "ended": row.get("ended") or "",
            "cwd": row.get("cwd") or "", "command": command_of(row.get("kind"), row.get("params")),
            "log": row.get("log_path") or "",
        })  # fmt: skip

    def _queue(self, values: dict[str, Any]) -> None:
        """The hook's run with ``values`` (all of HOOK_FIELDS but ``tail``, read from the
        log in the hook's thread), in the hooks' thread."""
        template = self.on_finish
        assert template is not None
        self._worker.put(lambda: self._fill_and_call(template, values))

    def _fill_and_call(self, template: str, values: dict[str, Any]) -> None:
        petition_id = values["id"]
        values = {**values, "tail": tail_of(values["log"])}
        try:
            command = template.format(**{k: shlex.quote(str(v)) for k, v in values.items()})
        except Exception as e:  # checked at load; a hook must never fail a petition's end
            log.warning("petition %s: on_finish hook not run: %s", petition_id, e)
            return
        env = {**os.environ, **{f"ORCHA_{k.upper()}": str(v).replace("\0", "")
                                for k, v in values.items()}}  # fmt: skip
        self._call(petition_id, command, env)

    def _call(self, petition_id: str, command: str, env: dict[str, str] | None = None) -> None:
        try:
            done = self._run(
                ["/bin/sh", "-c", command], capture_output=True, timeout=HOOK_TIMEOUT,
                stdin=subprocess.DEVNULL, env=env,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            log.warning("petition %s: on_finish hook ran over %gs; stopped", petition_id,
                        HOOK_TIMEOUT)  # fmt: skip
            return
        except OSError as e:
            log.warning("petition %s: on_finish hook could not run: %s", petition_id, e)
            return
        if done.returncode != 0:
            err = done.stderr.decode(errors="replace").strip().splitlines()
            log.warning("petition %s: on_finish hook exited %d%s", petition_id,
                        done.returncode, f": {err[-1]}" if err else "")  # fmt: skip

    def idle(self, timeout: float) -> bool:
        return self._worker.idle(timeout)

    def pending(self) -> int:
        """How many deliveries are not done yet."""
        return self._worker.pending()


def command_of(kind: str | None, params: Any) -> str:
    """A petition's command in one line: a shell petition's argv, shell-quoted; else its
    kind and parameters (JSON)."""
    if isinstance(params, dict) and isinstance(params.get("argv"), list):
        return shlex.join(str(a) for a in params["argv"])
    if params:
        return f"{kind or ''} {json.dumps(params, sort_keys=True)}".strip()
    return kind or ""


def tail_of(path: str, lines: int = HOOK_TAIL_LINES, limit: int = HOOK_TAIL_BYTES) -> str:
    """The last ``lines`` lines of a petition's output log (stdout and stderr in the order
    written; at most ``limit`` bytes, cut at the front), as text; "" without a log."""
    from orcha.service.logs import last_lines, read_log

    if not path:
        return ""
    try:
        start = _tail_start(path, limit * 2)
        frames = list(read_log(path, start=start))
    except OSError:
        return ""
    data = b"".join(d for _, d in last_lines(frames, lines))
    return data[-limit:].decode(errors="replace")


#: A log frame's header (orcha.service.logs: stream byte, 4-byte big-endian length).
_FRAME_HEADER = struct.Struct("!BI")


def _tail_start(path: str, wanted: int) -> int:
    """The offset of the first frame of the last frames holding at least ``wanted``
    bytes of output: found by reading the headers only, so a 64 MiB log costs a walk
    over its headers, not a read of its output."""
    starts: collections.deque[tuple[int, int]] = collections.deque()  # (offset, size)
    held = 0
    with open(path, "rb") as f:
        offset = 0
        while True:
            header = f.read(_FRAME_HEADER.size)
            if len(header) < _FRAME_HEADER.size:
                break
            _, size = _FRAME_HEADER.unpack(header)
            starts.append((offset, size))
            held += size
            while len(starts) > 1 and held - starts[0][1] >= wanted:
                held -= starts.popleft()[1]
            offset = f.seek(size, os.SEEK_CUR)
    return starts[0][0] if starts else 0
