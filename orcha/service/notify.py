"""Deliveries that must never hold up the scheduler: webhooks and ``on_finish`` hooks.

* :class:`Webhooks` POSTs event envelopes (``{petition, kind, event, timestamp, data}``)
  as JSON to HTTP endpoints: ``--notify URL`` on a petition, ``notify:`` in the
  configuration file for all. Each POST has a short timeout and up to
  :data:`~orcha.defaults.WEBHOOK_ATTEMPTS` tries with growing pauses; what finally fails
  is logged and reported through ``failed(job, message)`` (``orcha status`` shows it).
* :class:`FinishHooks` runs ``hooks: {on_finish: "command template"}`` once a petition
  has ended, with its fields substituted (shell-quoted), like pueue's callback.

Both work in one daemon thread each, fed by a bounded queue: when a receiver is slow or
down, events queue up to :data:`~orcha.defaults.DELIVERY_QUEUE` and older ones are
dropped (and logged) rather than growing the service's memory.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from orcha.defaults import (
    DEFAULT_EVENTS,
    DELIVERY_QUEUE,
    HOOK_FIELDS,
    HOOK_TIMEOUT,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_BACKOFF,
    WEBHOOK_TIMEOUT,
)

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
                self._cond.wait_for(lambda: bool(self._tasks))
                task = self._tasks.popleft()
                self._busy = True
            try:
                task()
            except Exception:
                log.exception("%s: a delivery failed", self._name)

    def idle(self, timeout: float) -> bool:
        """Wait until the queue is empty (for tests and a clean stop); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                if not self._tasks and not self._busy:
                    return True
            time.sleep(0.02)
        return False


class Webhooks:
    """POSTs events to URLs, off the scheduler's threads."""

    def __init__(
        self,
        everyone: list[dict[str, Any]] | None = None,
        failed: Callable[[Any, str], None] | None = None,
        post: Callable[[str, bytes, float], None] | None = None,
        backoff: float = WEBHOOK_BACKOFF,
    ) -> None:
        """``everyone``: [{"url", "events"}] for every petition (the configuration);
        ``failed(job, message)``: told when a delivery finally fails; ``post``: the HTTP
        seam (tests replace it)."""
        self.everyone = everyone or []
        self._failed = failed
        self._post = post or _post
        self._backoff = backoff
        self._worker = _Worker("webhooks")

    def event(self, job: Any, envelope: dict[str, Any]) -> None:
        """Queue ``envelope`` for every URL that wants its event."""
        event = envelope["event"]
        targets = [t["url"] for t in self.everyone if event in t["events"]]
        if event in DEFAULT_EVENTS or "." in event:  # state changes and custom events
            targets += [u for u in job.schedule.notify if u not in targets]
        if not targets:
            return
        body = json.dumps(envelope).encode()
        for url in targets:
            self._worker.put(functools.partial(self._deliver, job, url, body, envelope["event"]))

    def _deliver(self, job: Any, url: str, body: bytes, event: str) -> None:
        error = ""
        for attempt in range(WEBHOOK_ATTEMPTS):
            if attempt:
                time.sleep(self._backoff * (2 ** (attempt - 1)))
            try:
                self._post(url, body, WEBHOOK_TIMEOUT)
                return
            except Exception as e:
                error = f"{type(e).__name__}: {e}"
        message = f"webhook {url} failed for event {event} ({WEBHOOK_ATTEMPTS} tries): {error}"
        log.warning("petition %s: %s", job.id, message)
        if self._failed is not None:
            self._failed(job, message)

    def idle(self, timeout: float) -> bool:
        return self._worker.idle(timeout)


def _post(url: str, body: bytes, timeout: float) -> None:
    """POST ``body`` as JSON; raises on a connection error or a non-2xx answer."""
    import urllib.request

    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "orcha"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # URLs: http(s) only
        if not 200 <= answer.status < 300:
            raise OSError(f"HTTP {answer.status}")


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


class FinishHooks:
    """Runs the ``on_finish`` command template after each petition ends."""

    FIELDS = HOOK_FIELDS  # what a template may use (orcha.units.check_hook_template)

    def __init__(self, on_finish: str | None, run: Callable[..., Any] | None = None) -> None:
        self.on_finish = on_finish
        self._run = run or subprocess.run
        self._worker = _Worker("on_finish")

    def finished(self, job: Any) -> None:
        if not self.on_finish:
            return
        values = {
            "id": job.id, "kind": job.kind or "", "state": str(job.state),
            "code": "" if job.code is None else job.code, "message": job.message or "",
            "group": job.schedule.group, "started": job.started or "", "ended": job.ended or "",
            "cwd": getattr(job.petition, "cwd", ""),
        }  # fmt: skip
        try:
            command = self.on_finish.format(**{k: shlex.quote(str(v)) for k, v in values.items()})
        except Exception as e:  # checked at load; a hook must never fail a petition's end
            log.warning("petition %s: on_finish hook not run: %s", job.id, e)
            return
        self._worker.put(lambda: self._call(job.id, command))

    def _call(self, petition_id: str, command: str) -> None:
        try:
            done = self._run(
                ["/bin/sh", "-c", command], capture_output=True, timeout=HOOK_TIMEOUT,
                stdin=subprocess.DEVNULL,
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
