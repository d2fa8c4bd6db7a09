"""Recovery: what a service takes back, at start, from the one before it at its address.

Queued petitions are queued again in their order; those that were running become
INTERRUPTED and whatever of their process trees survived is stopped, unless they asked
for ``--retries`` and have attempts left: then the interrupted run counts as an attempt
and they are queued again; group limits and pauses hold again. A petition that ends here
(INTERRUPTED, or CANCELLED) is announced like any end: webhooks, event sinks and the
``on_finish`` hook hear of it. (The stop that leaves
this behind is ``Service.begin_stop``.)
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from orcha.errors import InvalidPetitionError, PetitionError
from orcha.protocol.outputs import DISCARD
from orcha.protocol.schedule import Schedule
from orcha.service import arrays
from orcha.service.job import Job
from orcha.states import State, transition

if TYPE_CHECKING:
    from orcha.service.service import Service

log = logging.getLogger("orcha.service")


def restore(service: Service) -> None:
    """Take back what a previous service at this address left: queued petitions are
    queued again in their order (but not child petitions: their parent was running, so
    they are CANCELLED); running ones have their processes stopped and are INTERRUPTED,
    or queued again for their next attempt if they asked for ``--retries`` and have one
    left (never otherwise: a petition without retries never runs twice)."""
    store = service.store
    assert store is not None
    rows = store.live(str(service.settings.address))
    if not rows:
        return
    now = service.clock()
    scheduler = service.scheduler
    scheduler.accepting = False  # queue them all before any starts: order holds
    requeued = interrupted = retried = 0
    try:
        for row in rows:
            if row["state"] == str(State.RUNNING):
                _stop_leftovers(service, row)
                if _retry(service, row, now):
                    retried += 1
                    continue
                _end(
                    service, row, state=str(State.INTERRUPTED), ended=now,
                    message="the service stopped while it was running",
                )  # fmt: skip
                interrupted += 1
            elif row.get("parent"):
                # Its parent was running, so it is INTERRUPTED now: nobody waits for
                # this child any more.
                _end(
                    service, row, state=str(State.CANCELLED), ended=now,
                    message=f"its parent {row['parent']} was interrupted by a restart",
                )  # fmt: skip
            elif _requeue(service, row, now):
                requeued += 1
    finally:
        scheduler.accepting = True
    scheduler.settle_dependencies()  # also admits
    log.warning(
        "restored %d queued petition(s); %d that were running became INTERRUPTED, "
        "%d were queued for another attempt",
        requeued, interrupted, retried,
    )  # fmt: skip


def _retry(service: Service, row: dict[str, Any], now: float) -> bool:
    """Queue a petition that was RUNNING again for its next attempt, if it asked for
    ``--retries`` and has one left; the interrupted run counts as an attempt (the record's
    ``attempt`` is committed before each attempt starts). False, with nothing changed, if
    it gets no other attempt: a child (its parent was interrupted too), a petition of the
    original API, or one without attempts left."""
    if row.get("parent") or not row["kind"]:
        return False
    try:
        schedule = Schedule.from_wire(row["schedule"])
    except (ValueError, PetitionError):
        return False
    attempts = 1 + schedule.retries
    done = int(row.get("attempt") or 1)
    if done >= attempts:
        return False
    store = service.store
    assert store is not None
    state = transition(State.RUNNING, State.QUEUED)
    store.update(
        row["seq"], state=str(state), started=None, pids=[], attempt=done + 1,
        message=f"attempt {done} of {attempts} was interrupted by a restart; "
        f"queued for attempt {done + 1}",
    )  # fmt: skip
    return _requeue(service, row, now, attempt=done + 1)


def _end(service: Service, row: dict[str, Any], **changes: Any) -> None:
    """Record that a petition found at start has ended, and announce it as a live end
    is announced: webhooks, plugins' event sinks and the ``on_finish`` hook hear it."""
    assert service.store is not None
    service.store.update(row["seq"], **changes)
    service.events.ended_at_restart({**row, **changes})


def _stop_leftovers(service: Service, row: dict[str, Any]) -> None:
    machine = service.scheduler.machine_named(row.get("machine"))
    if row["pids"] or row["token"]:
        n = machine.stop_recorded(row["pids"], row["token"] or None, service.settings.grace)
        if n:
            log.warning("petition %s: stopped %d process(es) left running", row["id"], n)


def _requeue(service: Service, row: dict[str, Any], now: float, attempt: int = 1) -> bool:
    """Queue a recorded petition again (as its kind's petition, detached), to run as
    attempt ``attempt``; False, with the record CANCELLED and why, if it can no longer
    be built."""
    from orcha.protocol.messages import SubmitRequest

    store = service.store
    assert store is not None
    try:
        if not row["kind"]:
            raise InvalidPetitionError("petitions of the original Orcha API are not restored")
        schedule = Schedule.from_wire(row["schedule"])
        # A runtime kind's petition runs as its parent, with the settings it was
        # queued with, whatever became of the template since.
        request = SubmitRequest(
            row["runs_as"] or row["kind"], row["id"], row["params"], row["priority"],
            row["cwd"], row["env"], attach=False, schedule=schedule,
        )  # fmt: skip
        petition = service.manager.petition_from_request(request, DISCARD)
    except (ValueError, PetitionError) as e:
        _end(
            service, row, state=str(State.CANCELLED), ended=now,
            message=f"not queued again after a restart: {e}",
        )  # fmt: skip
        return False
    uid = os.urandom(8).hex()
    job = Job(
        petition, native=True, token_prefix=service.token_prefix, kind=row["kind"],
        seq=row["seq"], token=f"{service.token_prefix}-{uid}", schedule=schedule,
        created=row["submitted"],
    )  # fmt: skip
    job.paused = bool(row["paused"])
    job.attempt = attempt
    job.events = service.events
    job.log = service.open_log(job, row["log_path"] or service.log_path(uid))
    store.update(row["seq"], token=job.token, log_path=job.log.path)
    arrays.restored(job, row)  # its array's %N holds again
    service.scheduler.submit(job)
    return True


# -- group limits and pauses ------------------------------------------------------------
def save_groups(service: Service) -> None:
    """Keep the group limits and pauses for the next start."""
    if service.store is None:
        return
    scheduler = service.scheduler
    service.store.set_value(
        str(service.settings.address),
        "groups",
        {
            "limits": scheduler.group_limits(),
            "paused": sorted(scheduler.paused_groups()),
            "paused_all": scheduler.paused_all,
        },
    )


def load_groups(service: Service) -> None:
    """Set the group limits and pauses a previous service kept."""
    assert service.store is not None
    saved = service.store.get_value(str(service.settings.address), "groups", {})
    for name, limit in (saved.get("limits") or {}).items():
        service.scheduler.set_group_limit(name, int(limit))
    paused_all = bool(saved.get("paused_all"))
    service.scheduler.set_paused(True, (), saved.get("paused") or (), paused_all)
