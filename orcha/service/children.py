"""Child petitions: what a running petition submits through its context, and the handle
it gets back (the contract: :class:`orcha.plugins.contract.Child`).

A :class:`Family` is a running petition's children. A child is submitted in process
through the service's intake (:meth:`orcha.service.service.Service.submit_child`: kind
registry, schema, records, queue, predicates, dependencies, timeouts, retries); it is
detached from every client but owned by its parent: its record names the parent, it is
cancelled before its parent, and when its parent's run returns while it has not ended.
Its output goes into a bounded queue that its :class:`ServiceChild` handle reads. While
the parent blocks on that queue it lends its reservation to its children
(:mod:`orcha.service.loans`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from orcha.defaults import OUTPUT_BUFFER_BYTES
from orcha.errors import ExitCode, InvalidPetitionError, PetitionError
from orcha.protocol.messages import STDERR, STDOUT, SubmitRequest
from orcha.protocol.outputs import OutputQueue
from orcha.service.job import Detached, End
from orcha.states import FINISHED

if TYPE_CHECKING:
    from orcha.service.job import Job
    from orcha.service.service import Service

log = logging.getLogger("orcha.service")

#: The requests a child may make, as ``orcha run``'s options.
REQUESTS = frozenset(
    {"priority", "cpus", "mem", "gpus", "group", "after", "timeout", "retries", "cwd", "env"}
)


def child_request(
    parent: Job, kind: str, params: dict[str, Any] | None, child_id: str,
    requests: dict[str, Any],
) -> SubmitRequest:  # fmt: skip
    """The submit request of a child of ``parent``: ``orcha run``'s requests, with the
    parent's cwd and environment by default. InvalidPetitionError naming the bad
    request otherwise."""
    unknown = set(requests) - REQUESTS
    if unknown:
        raise InvalidPetitionError(
            f"unknown child request(s) {', '.join(sorted(unknown))}; the requests are "
            f"{', '.join(sorted(REQUESTS))}"
        )
    petition: Any = parent.petition
    schedule: dict[str, Any] = {
        k: requests[k] for k in ("cpus", "gpus", "retries", "group") if k in requests
    }
    try:
        if "mem" in requests:
            mem = requests["mem"]
            if isinstance(mem, str):
                from orcha.units import parse_size

                mem = parse_size(mem)
            schedule["mem"] = mem
        if "timeout" in requests:
            timeout = requests["timeout"]
            if isinstance(timeout, str):
                from orcha.units import parse_duration

                timeout = parse_duration(timeout)
            schedule["timeout"] = timeout
        if "after" in requests:
            after = requests["after"]
            schedule["after"] = [after] if isinstance(after, str) else list(after)
        request = SubmitRequest.from_wire(
            {
                "kind": kind,
                "id": child_id,
                "params": {} if params is None else params,
                "priority": requests.get("priority"),
                "cwd": requests.get("cwd", getattr(petition, "cwd", "/")),
                "env": requests.get("env", getattr(petition, "env", {})),
                "attach": False,
                "schedule": schedule,
            }
        )
    except (TypeError, ValueError) as e:
        raise InvalidPetitionError(f"invalid child petition of {parent.id}: {e}") from None
    return request


class Family:
    """The children of one running petition (thread-safe). ``closed`` once the parent
    is cancelled or its run has returned: no child may be added then."""

    __slots__ = ("_count", "_ended", "_lock", "_used", "children", "closed", "parent", "service")

    def __init__(self, service: Service, parent: Job) -> None:
        self.service = service
        self.parent = parent
        self.children: list[Job] = []
        self.closed = False
        self._used = False  # a child was ever asked for (see cancel_left)
        self._count = 0  # for the default IDs: PARENT.1, PARENT.2...
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)

    def submit(
        self, kind: str, params: dict[str, Any] | None, child_id: str | None,
        requests: dict[str, Any],
    ) -> ServiceChild:  # fmt: skip
        """Submit a child (see :meth:`orcha.plugins.contract.Context.submit`)."""
        if child_id is None:
            with self._lock:
                self._count += 1
                child_id = f"{self.parent.id}.{self._count}"
        request = child_request(self.parent, kind, params, child_id, requests)
        out = OutputQueue(max_bytes=OUTPUT_BUFFER_BYTES)
        try:
            job = self.service.submit_child(self.parent, request, out)
        except BaseException:
            out.close()
            raise
        return ServiceChild(self, job, out)

    def check_open(self) -> None:
        """Called by the intake, under the scheduler's lock, before a child is recorded:
        PetitionError if the parent takes no more children."""
        with self._lock:
            self._used = True
            if self.closed or self.parent.cancel_requested:
                raise PetitionError(
                    f"petition {self.parent.id} is ending and cannot submit children",
                    ExitCode.REFUSED,
                )

    def adopt(self, child: Job) -> None:
        """The intake queued ``child`` (under the scheduler's lock, after check_open)."""
        with self._lock:
            self.children.append(child)

    def ended(self) -> None:
        """One of the children has ended."""
        with self._lock:
            self._ended.notify_all()

    def wait_ended(self, children: list[Job], timeout: float) -> bool:
        """Until each of ``children`` has ended; False if ``timeout`` seconds pass first."""
        with self._lock:
            return self._ended.wait_for(
                lambda: all(job.state in FINISHED for job in children), timeout
            )

    def close(self) -> list[Job]:
        """Take no more children; return those that have not ended (to cancel)."""
        with self._lock:
            self.closed = True
            return [job for job in self.children if job.state not in FINISHED]

    def cancel_all(self, reason: str) -> list[Job]:
        """Cancel the unfinished children (the parent takes no more); return them."""
        with self.service.scheduler.lock:  # atomic with the intake of a child (_enqueue)
            live = self.close()
        for child in live:
            self.service.cancel(child, reason, by_client=False)
        return live

    def cancel_left(self) -> None:
        """The parent's run returned: cancel the children it left unfinished (saying so
        in its stderr) and give them until the grace period is over to end."""
        parent = self.parent
        with self._lock:
            if not self._used:
                # No child was ever asked for (most petitions): closed now, a child
                # asked for from here on is refused (check_open), so the scheduler's
                # lock, which makes closing atomic with an intake, is not needed.
                self.closed = True
                return
        with self.service.scheduler.lock:
            live = self.close()
        left = [child.id for child in live if not child.cancel_requested]
        if left:
            parent.emit(
                STDERR,
                f"orcha: {parent.id} returned before its child petition(s) "
                f"{', '.join(left)} ended; cancelling them\n".encode(),
            )
        for child in live:
            self.service.cancel(child, f"its parent {parent.id} returned first", by_client=False)
        if live and not self.wait_ended(live, 2 * self.service.settings.grace + 5):
            log.warning("petition %s: some children did not end in time", parent.id)

    def reopen(self) -> None:
        """A new attempt of the parent may submit children again."""
        with self._lock:
            self.closed = False

    def ids(self) -> list[str]:
        with self._lock:
            return [job.id for job in self.children]


class ServiceChild:
    """A running petition's handle on one of its children (the contract's ``Child``)."""

    def __init__(self, family: Family, job: Job, out: OutputQueue) -> None:
        self.id = job.id
        self._family = family
        self._job = job
        self._out = out
        self._end: End | None = None
        self._lock = threading.Lock()  # one reader of the queue at a time

    def __repr__(self) -> str:
        return f"<Child {self.id} {self.state}>"

    @property
    def state(self) -> str:
        return str(self._job.state)

    @property
    def outcome(self) -> Any:
        return self._job.outcome

    def output(self) -> Iterator[tuple[str, bytes]]:
        """Its output as it comes, until it ends."""
        while True:
            with self._lock:
                item = self._next(None)
            if item is None:
                return
            yield item

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code once it has ended (unread output dropped); TimeoutError first
        if ``timeout`` seconds pass."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._next(deadline) is not None:
                pass  # output nobody read: it is in the child's log
            assert self._end is not None
            return self._end.code

    def cancel(self) -> None:
        self._family.service.cancel(
            self._job, f"cancelled by its parent {self._family.parent.id}", by_client=False
        )

    # -- the queue -------------------------------------------------------------------------
    def _next(self, deadline: float | None) -> tuple[str, bytes] | None:
        """The next chunk of output, or None once the child has ended. While nothing is
        there, the parent is blocked: it lends its reservation to its children."""
        while self._end is None:
            try:
                item = self._out.get_nowait()
            except queue.Empty:
                item = self._blocked_get(deadline)
            chunk = self._take(item)
            if chunk is not None:
                return chunk
        return None

    def _blocked_get(self, deadline: float | None) -> Any:
        family = self._family
        parent, scheduler = family.parent, family.service.scheduler
        scheduler.lend(parent)
        # No polling: a parent that is cancelled or times out has its children cancelled
        # first (Service.cancel, Service.job_timed_out), and their end wakes it here.
        try:
            left = None if deadline is None else deadline - time.monotonic()
            try:
                if left is not None and left <= 0:
                    raise queue.Empty
                return self._out.get(timeout=left)
            except queue.Empty:
                raise TimeoutError(f"child petition {self.id} has not ended") from None
        finally:
            scheduler.end_loan(parent)

    def _take(self, item: Any) -> tuple[str, bytes] | None:
        """Output as ``(stream, data)``; an end is kept (None for anything else)."""
        if isinstance(item, tuple):
            stream, data = item
            return ("stdout" if stream == STDOUT else "stderr", data)
        if isinstance(item, End):
            self._end = item
            self._out.close()
        elif isinstance(item, Detached):  # the service stops: as good as cancelled
            self._end = End(self._job.state, int(ExitCode.CANCELLED), item.message, False)
            self._out.close()
        return None
