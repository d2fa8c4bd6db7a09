"""Handlers that steer and inspect the service: group, pause, resume, state, kinds,
health, info, reload."""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING, Any

from orcha import __version__
from orcha.defaults import PREDICATE_STUCK_SECONDS
from orcha.errors import ExitCode, PetitionError
from orcha.protocol.outputs import OutputQueue
from orcha.service.recovery import save_groups
from orcha.service.references import resolve
from orcha.states import State
from orcha.text import quoted

if TYPE_CHECKING:
    from orcha.protocol.requests import (
        GroupRequest,
        KindsRequest,
        NoRequest,
        PauseRequest,
        ShutdownRequest,
        StateRequest,
    )
    from orcha.service.handlers import Handler
    from orcha.service.job import Job
    from orcha.service.peer import Peer
    from orcha.service.queued import Waiting
    from orcha.service.service import Service

log = logging.getLogger("orcha.service")


def group(service: Service, peer: Peer, request: GroupRequest) -> dict[str, Any]:
    """List the groups; with a name, give it its own limit of running petitions (None
    removes it), kept across restarts."""
    scheduler = service.scheduler
    if request.name is None:
        return {"groups": scheduler.groups()}
    with scheduler.holding():  # saved before what a higher limit allows starts
        scheduler.set_group_limit(request.name, request.max_running)
        save_groups(service)
    log.info("group %s: max running %s", request.name, request.max_running or "unlimited")
    if request.max_running is not None:
        for warning in scheduler.group_warnings({request.name: request.max_running}).values():
            log.warning("%s", warning)
    return {"groups": scheduler.groups()}


def pause(service: Service, peer: Peer, request: PauseRequest) -> dict[str, Any]:
    """Pause admission for IDs, groups or everything (with ``running``, SIGSTOP their
    running trees too)."""
    return _set_paused(service, request, paused=True)


def resume(service: Service, peer: Peer, request: PauseRequest) -> dict[str, Any]:
    """Resume admission for IDs, groups or everything; continue (SIGCONT) the stopped
    trees it covers."""
    return _set_paused(service, request, paused=False)


def _set_paused(service: Service, request: PauseRequest, paused: bool) -> dict[str, Any]:
    """Says what happened to each ID, and the groups now."""
    from orcha.service import arrays

    scheduler = service.scheduler
    groups, everything = request.groups, request.all
    # An array's name stands for its members that are still queued or running (the
    # ended ones are left out quietly, as 'scontrol hold' does with a job array).
    ids, named = arrays.expand(service, request.ids)
    members = {member: name for name, of in named.items() for member in of}
    results: dict[str, str] = {}
    jobs: list[Job] = []
    refs: dict[Job, str] = {}  # each job's result under the reference it was named by
    for petition_id in ids:
        found = resolve(petition_id, scheduler, service.store)
        job = found[-1].job if found else None
        if job is not None:
            jobs.append(job)
            refs.setdefault(job, petition_id)
        elif petition_id not in members:
            results[petition_id] = f"there is no queued or running petition {quoted(petition_id)}"
    for name, of in named.items():
        if not any(job.id in of for job in jobs):
            results[name] = f"array {name!r} has no queued or running petition"
    # Nothing starts until the change is saved: a petition started by a resume could
    # crash the service before the resume was kept, and the next start would restore
    # the pause (orcha.service.recovery).
    with scheduler.holding():
        scheduler.set_paused(paused, jobs, groups, everything)
        scope = set(groups)
        covered: list[Waiting] = list(jobs)
        if everything or scope:
            # As held (a compact entry is not built: its pause is all that changes).
            covered += [j for j in scheduler.views() if everything or j.schedule.group in scope]
        for held in covered:
            if (
                held.state is State.RUNNING
                and (request.running or not paused)
                and held.stopped != paused
            ):
                # The flag first: a process the petition starts meanwhile is stopped by
                # the runner when it registers (see Runner._register).
                running = scheduler.job(held)  # a running petition is a Job
                running.stopped = paused
                sig = signal.SIGSTOP if paused else signal.SIGCONT
                running.placed.signal_tree(running, sig)
            if held.state is State.QUEUED and service.store is not None:
                if held in refs:  # named: its own flag, saved before anything starts
                    service.store.update(held.seq, paused=int(held.paused))
                else:
                    service.store.update_later(held.seq, paused=int(held.paused))
            service.events.watch_event(held, "paused" if paused else "resumed", {})
        for job in jobs:
            results[refs[job]] = "paused" if paused else "resumed"
        save_groups(service)
    log.info(
        "%s: ids %s, groups %s%s", "paused" if paused else "resumed", request.ids, groups,
        ", everything" if everything else "",
    )  # fmt: skip
    return {"results": results, "groups": scheduler.groups()}


def state(service: Service, peer: Peer, request: StateRequest) -> dict[str, Any]:
    """A plugin's state for users: ``ls`` every key, ``get``/``set``/``rm`` one. Refused
    if the plugin is not loaded, the key is missing, or the value is not JSON data."""
    from orcha.service.plugin_state import PluginState

    plugin, key = request.plugin, request.key
    if plugin not in service.plugins.plugins or service.store is None:
        loaded = ", ".join(sorted(service.plugins.plugins)) or "none"
        raise PetitionError(
            f"the service has no plugin {plugin!r} (loaded: {loaded})", ExitCode.UNKNOWN
        )
    store = PluginState(service.store, plugin)
    try:
        if request.action == "ls":
            return {"plugin": plugin, "state": store.items()}
        assert key is not None
        if request.action == "get":
            if key not in store:
                raise PetitionError(
                    f"plugin {plugin} has no state key {key!r}; see 'orcha state ls {plugin}'",
                    ExitCode.NO_PETITION,
                )
            return {"plugin": plugin, "key": key, "value": store.get(key)}
        if request.action == "set":
            store.set(key, request.value)
            return {"plugin": plugin, "key": key, "value": request.value}
        return {"plugin": plugin, "key": key, "removed": store.delete(key)}
    except ValueError as e:
        raise PetitionError(str(e), ExitCode.REFUSED) from None


def kinds(service: Service, peer: Peer, request: KindsRequest) -> dict[str, Any]:
    """List the runtime kinds (templates), or add or remove one."""
    runtime = service.runtime_kinds
    if request.action == "ls":
        return {"kinds": runtime.listing()}
    assert request.name is not None
    if request.action == "add":
        assert request.parent is not None and request.settings is not None
        _check_fits(service, request.name, request.settings)
        return {"kind": runtime.add(request.name, request.parent, request.settings)}
    return {"removed": runtime.remove(request.name)}


def _check_fits(service: Service, name: str, settings: dict[str, Any]) -> None:
    """Refuse (PetitionError, REFUSED) a template whose resources no machine of the
    service has: every petition of it would be refused, and the refusal's hint would
    point at a template the user no longer has in mind."""
    import re

    from orcha.protocol.schedule import Schedule

    fields = {k: v for k, v in settings.items() if k in Schedule.FIELDS}
    try:
        schedule = Schedule.from_wire(fields)
    except ValueError:
        return  # the template's own check says what is wrong
    try:
        service.scheduler.check_feasible(schedule)
    except PetitionError as e:
        text = e.message.replace("the petition asks", f"kind {name!r} would ask")
        text = re.sub(r"ask for (fewer|less) with --(\w+)", r"set \1 with --set \2=N", text)
        text = text.replace("; ask for less", "; set less with --set cpus/mem/gpus")
        raise PetitionError(f"{text} (nothing defined)", ExitCode.REFUSED) from None


def health(service: Service, peer: Peer, request: NoRequest) -> dict[str, Any]:
    """Whether the service and each plugin are healthy (plugin checks run with a time
    limit, their errors caught), with the queue and capacity. A service whose Dask
    scheduler is unreachable is not healthy (``dask`` says why), nor one whose scheduler
    or petition loop has been held up for more than PREDICATE_STUCK_SECONDS
    (``scheduler`` says by what: :func:`_stalls`), nor one where an abandoned action of
    no plugin's kind (an original-API manager's) still runs (``abandoned`` counts them;
    a plugin's own count against it)."""
    plugins = service.plugins.health()
    scheduler = service.scheduler
    saving, state = service.store.health() if service.store is not None else (True, "saving ok")
    trouble = service.dask.trouble if service.dask is not None else None
    stalled = _stalls(service)
    abandoned = service.plugins.abandoned_elsewhere()  # the original API's actions
    return {
        "healthy": saving
        and trouble is None
        and stalled is None
        and abandoned is None
        and all(p["healthy"] for p in plugins.values()),
        "state": state,
        **({"dask": trouble} if trouble is not None else {}),
        **({"scheduler": stalled} if stalled is not None else {}),
        **({"abandoned": abandoned} if abandoned is not None else {}),
        "queued": scheduler.queued_count,
        "running": scheduler.running_count,
        "cpus_in_use": scheduler.used_cpus,
        "capacity": scheduler.capacity,
        "paused": scheduler.paused_all,
        "plugins": plugins,
    }


def _stalls(service: Service) -> str | None:
    """What has held up the scheduler or the petition loop for more than
    PREDICATE_STUCK_SECONDS, in words (None: nothing). Never waits for either."""
    stalls = []
    held = service.scheduler.lock.stuck(PREDICATE_STUCK_SECONDS)
    if held is not None:
        stalls.append(
            f"held by thread {held[1]} for {held[0]:.0f}s: no petition starts; "
            "submissions and 'status' wait"
        )
    busy = service.runner.loop.stuck(PREDICATE_STUCK_SECONDS)
    if busy is not None:
        seconds, job = busy
        stalls.append(
            f"the petition loop has waited {seconds:.0f}s for petition {job.id} (kind "
            f"{job.kind}) to start or end: the petitions it runs neither start, stream "
            "nor end meanwhile"
        )
    return "; ".join(stalls) or None


def workers(service: Service, peer: Peer, request: NoRequest) -> dict[str, Any]:
    """Where petitions run: the Dask cluster's workers (docs/dask.rst), or this host only."""
    cluster = service.dask
    if cluster is None:
        return {"executor": "local", "workers": []}
    return {
        "executor": "dask",
        "scheduler": cluster.address,
        "dashboard": cluster.dashboard,
        "trouble": cluster.trouble,
        "workers": cluster.describe(),
    }


def info(service: Service, peer: Peer, request: NoRequest) -> dict[str, Any]:
    """What the service is and holds: version, address, kinds, queue, petitions."""
    scheduler = service.scheduler
    return {
        "version": __version__,
        "pid": os.getpid(),
        "address": str(service.settings.address),
        "kinds": sorted(service.manager.kinds()),
        "runtime_kinds": service.runtime_kinds.listing(),
        "running": scheduler.running_count,
        "queued": scheduler.queued_count,
        "max_running": service.manager.max_running,
        "cpus_in_use": scheduler.used_cpus,
        "gpus": list(scheduler.inventory),
        "groups": scheduler.groups(),
        "paused": scheduler.paused_all,
        "petitions": [job.describe() for job in scheduler.views()],
        "served_objects": service.server.object_count() if service.server else 0,
        "sessions": len(service.peers),
        # The most output one petition's client queue has held (queued and being sent):
        # OUTPUT_BUFFER_BYTES bounds it, however slowly a client reads.
        "output_peak_bytes": OutputQueue.peak_bytes,
    }


def reload(service: Service, peer: Peer, request: NoRequest) -> dict[str, Any]:
    """Read the configuration file again and apply what changed (as SIGHUP does); refused,
    with the reason, if the file is invalid (the service keeps its configuration)."""
    from orcha.errors import ConfigError
    from orcha.service.reload import reload as reload_config

    try:
        return reload_config(service)
    except ConfigError as e:
        raise PetitionError(
            f"{e.message}; the service keeps its configuration", ExitCode.REFUSED
        ) from None


def shutdown(service: Service, peer: Peer, request: ShutdownRequest) -> dict[str, Any]:
    """Stop as a first SIGTERM does (pueue's ``shutdown``): the daemon's loop stops
    admitting, cancels the running petitions and keeps the queued ones; ``force``: as a
    second one, every running tree killed at once (also when a stop is under way). The
    service's PID, what it held when asked, and whether it was stopping already."""
    scheduler = service.scheduler
    kept = scheduler.queued_count - _fed(service)  # what a stop keeps for the next start
    answer = {"pid": os.getpid(), "running": scheduler.running_count,
              "queued": kept, "stopping": service.stopping}  # fmt: skip
    asked = 2 if request.force else 1
    if asked > service.stop_asked and not (service.stopping and asked == 1):
        log.warning("a client asked the service to stop%s", " by force" if request.force else "")
        service.stop_asked = asked
        try:
            os.write(service.waker_w, b"\0")  # the loop looks now
        except BlockingIOError:
            pass  # it is awake already
    return answer


def _fed(service: Service) -> int:
    """How many queued petitions wait for the stdin their client sends: a stop cancels
    them (``Service.begin_stop``), it does not keep them. Few: one client each."""
    with service.peers_lock:
        return sum(
            1 for peer in service.peers for job in peer.submitted
            if job.state is State.QUEUED and job.stdin is not None and job.stdin.waiting
        )  # fmt: skip


HANDLERS: dict[str, Handler] = {
    "group": group,
    "pause": pause,
    "resume": resume,
    "state": state,
    "kinds": kinds,
    "health": health,
    "info": info,
    "workers": workers,
    "reload": reload,
    "shutdown": shutdown,
}
