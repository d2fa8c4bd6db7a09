"""The service's view of a Dask cluster: one :class:`~.remote.WorkerMachine` per worker,
added to the scheduler's machines when its first report arrives and taken out when it
leaves.

* **Joining:** the service registers :class:`~.plugin.OrchaWorkerPlugin` (it reaches the
  workers there and those that join later) and reads ``scheduler_info()`` every
  :data:`~orcha.defaults.DASK_REFRESH_SECONDS`; a worker with orcha's facts in its
  metrics becomes a machine, unless its orcha version differs (refused, and shown).
* **Leaving:** the scheduler's ``remove-worker`` event (topic ``"all"``) is heard within
  milliseconds; a worker missing from a report is taken as gone too. Its running
  petitions end INTERRUPTED naming it; its spawner has already stopped their trees (it
  dies with its worker, see :mod:`.spawner`).
* **The scheduler lost** (killed, restarted, its host down): the workers get no new
  petition (state ``unreachable``), why a petition waits and ``orcha health`` say so, and
  the service keeps trying to reach it (:meth:`Cluster.reconnect`, with backoff,
  re-reading the scheduler file). Once back it registers orcha's plugin again (a new
  scheduler does not have it) and takes the workers that rejoin; those that do not
  within :data:`~orcha.defaults.DASK_CONNECT_SECONDS` are lost. The running petitions'
  streams go straight to their workers, over a pool of their own: they go on meanwhile.
* **Admission** stays the scheduler's: the machines are kept in best-fit order
  (:func:`~.inventory.best_fit`), a request is refused only if no connected worker could
  ever hold it (with none connected it waits), and why a petition waits names the best
  worker (:func:`~.inventory.why_waiting`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orcha
from orcha.defaults import (
    DASK_CONNECT_SECONDS,
    DASK_RECONNECT_SECONDS,
    DASK_REFRESH_SECONDS,
)
from orcha.errors import ExecutorError
from orcha.service.dask.client_log import quiet_cancelled_tasks
from orcha.service.dask.inventory import WorkerReport, best_fit, read_report, why_waiting
from orcha.service.dask.remote import WorkerMachine
from orcha.service.feasible import check_feasible
from orcha.service.machines import Machine

if TYPE_CHECKING:
    from orcha.protocol.schedule import Schedule
    from orcha.service.dask.target import DaskTarget
    from orcha.service.job import Job
    from orcha.service.predicates import Capacity
    from orcha.service.queued import Waiting
    from orcha.service.service import Service

log = logging.getLogger("orcha.service.dask")


class Cluster:
    """The workers of one Dask cluster as machines of ``service``'s scheduler."""

    def __init__(self, service: Service, target: DaskTarget, client: Any, pool: Any = None) -> None:
        """``pool``: the connection pool of the petitions' streams (default the client's)."""
        self.service = service
        self.target = target
        self.client = client
        self.pool = pool if pool is not None else client.rpc
        self.reachable = True  # the scheduler; else since when it is not (time.time())
        self.unreachable_since = 0.0
        self._retry_at = 0.0  # monotonic: the next try to reach it
        self._delay = DASK_RECONNECT_SECONDS
        self._settle_until = 0.0  # monotonic: until then, workers missing may rejoin
        self.scheduler = service.scheduler
        self.local = self.scheduler.machines[0]
        self.workers: dict[str, WorkerMachine] = {}  # by address, connected and orcha's
        self.refused: dict[str, WorkerReport] = {}  # version mismatch, by address
        self.gone: dict[str, tuple[WorkerMachine, float]] = {}  # lost, and when
        self.dashboard = str(getattr(client, "dashboard_link", "") or "")
        self.address = str(getattr(client.scheduler, "address", "") or target.where)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- joining and leaving --------------------------------------------------------------------
    def refresh(self) -> None:
        """Read every worker's report: add new ones, update known ones, drop those gone."""
        info = self.client.scheduler_info(n_workers=-1)
        seen: set[str] = set()
        changed = False
        for address, winfo in info.get("workers", {}).items():
            report = read_report(address, winfo)
            if report is None:
                continue  # its first report with orcha's facts is still to come
            seen.add(address)
            why = report.refused(orcha.__version__)
            if why is not None:
                if address not in self.refused:
                    log.warning("worker %s refused: %s", report.name, why)
                self.refused[address] = report
                continue
            self.refused.pop(address, None)
            machine = self.workers.get(address)
            if machine is None and report.status != "running":
                continue  # closing already: never placed on
            if machine is None:
                machine = WorkerMachine(
                    report, self.client, self.service.settings.grace, self.relocate, self.pool
                )
                with self.scheduler.lock:
                    self.workers[address] = machine
                log.info("worker %s joined (%d CPUs, GPUs: %s)", report.name, report.cpus,
                         ",".join(report.gpus) or "none")  # fmt: skip
                threads = int(winfo.get("nthreads") or 0)
                if 0 < threads < report.cpus:
                    # Each running petition holds one of its threads: the rest would
                    # wait there, holding their slots.
                    log.warning("worker %s has %d threads for %d CPU slots: give it "
                                "--nthreads %d or more", report.name, threads, report.cpus,
                                report.cpus)  # fmt: skip
                changed = True
            else:
                changed = changed or report.cpus != machine.report.cpus
                with self.scheduler.lock:
                    machine.update(report)
        settling = time.monotonic() < self._settle_until
        for address in [a for a in list(self.workers) if a not in seen]:
            if address not in info.get("workers", {}) and not settling:
                self.lose(address, "left the cluster")
                changed = True
        for address in [a for a in list(self.refused) if a not in info.get("workers", {})]:
            del self.refused[address]
        self._order()
        if changed:
            # Waiting petitions may fit now: nothing else would look (no petition ended).
            self.scheduler.admit()
            self.service.wake()

    def lose(self, address: str, why: str) -> None:
        """Worker ``address`` is gone: its petitions end INTERRUPTED, naming it."""
        with self.scheduler.lock:
            machine = self.workers.pop(address, None)
            if machine is None:
                return
            self.gone[address] = (machine, time.time())
        procs = machine.lost(f"worker {machine.name} {why}")
        log.warning("worker %s %s; %d running petition(s) interrupted", machine.name, why,
                    len(procs))  # fmt: skip
        self._order()
        self.service.wake()

    def relocate(self, job: Job) -> bool:
        """Move ``job`` (its worker was lost; it has attempts left) to the best worker its
        request fits on now, waiting for one; False if it is cancelled meanwhile. It goes
        ahead of the waiting petitions, as a petition already started. One pinned with
        ``--on`` waits for a worker of that name (its own, when it rejoins). Meanwhile it
        stays RUNNING (between attempts, as during ``--retry-delay``), but its record names
        no machine and ``status`` says what it waits for (``job.waits_for``)."""
        need = job.schedule
        while True:
            with self.scheduler.lock:
                old = job.placed
                for machine in self.scheduler.machines:
                    machine.refresh()
                    if machine.slots <= 0 or machine is old:
                        continue
                    if need.on is not None and need.on not in machine.aliases:
                        continue
                    if (machine.free_slots >= need.cpus and machine.free_gpu_count >= need.gpus
                            and (not need.mem or machine.free_memory() >= need.mem)):  # fmt: skip
                        old.release(need, job.gpu_ids)
                        job.gpu_ids = machine.reserve(need)
                        job.machine = machine
                        log.info("petition %s moves from %s to %s", job.id, old.name,
                                 machine.name)  # fmt: skip
                        break
                else:
                    machine = None
            store = self.service.store
            if machine is not None:
                job.waits_for = None
                if store is not None:  # its record says where it runs now
                    store.update_later(job.seq, machine=machine.name)
                with job.lock:
                    job.pids.clear()  # those were the lost worker's
                return True
            if job.waits_for is None:
                job.waits_for = _waits_for(job, old.name)
                log.info("petition %s: %s", job.id, job.waits_for)
                if store is not None:  # it runs nowhere meanwhile: not on the lost worker
                    store.update_later(job.seq, machine=None)
            if job.cancel_event.wait(DASK_REFRESH_SECONDS):
                return False

    def on_event(self, event: tuple[float, Any]) -> None:
        """A scheduler event on topic ``"all"`` (runs on the client's event loop)."""
        _, msg = event
        if isinstance(msg, dict) and msg.get("action") == "remove-worker":
            address = str(msg.get("worker", ""))
            # Not on the event loop: lose() takes the scheduler's lock.
            threading.Thread(target=self.lose, args=(address, "was lost"), daemon=True).start()

    def _order(self) -> None:
        """The scheduler's machines: this host first (its records name it), then the
        workers in best-fit order."""
        with self.scheduler.lock:
            workers: list[Machine] = list(best_fit(list(self.workers.values())))  # type: ignore[arg-type]
            self.scheduler.machines[:] = [self.local, *workers]
            self.scheduler.inventory = tuple(g for m in self.scheduler.machines
                                             for g in m.inventory)  # fmt: skip

    def _loop(self) -> None:
        while not self._stop.wait(DASK_REFRESH_SECONDS):
            try:
                if self.client.status != "running":
                    self.reconnect()
                    continue
                if not self.reachable:
                    self._back()  # Dask's own client found it again
                self.refresh()
            except Exception as e:
                log.warning("cannot read the Dask cluster's workers: %s", e)

    # -- losing the scheduler -------------------------------------------------------------------
    def reconnect(self) -> None:
        """The client has lost the scheduler (Dask's own client retries the same address
        for a while, then gives up for good): place nothing meanwhile, and try a new
        client, the scheduler file read again, after :data:`DASK_RECONNECT_SECONDS`,
        then twice as long each time up to :data:`DASK_CONNECT_SECONDS`."""
        now = time.monotonic()
        if self.reachable:
            self.reachable = False
            self.unreachable_since = time.time()
            self._delay = DASK_RECONNECT_SECONDS
            self._retry_at = now + self._delay
            log.warning("lost the Dask scheduler at %s; petitions wait while orcha tries to "
                        "reach it again", self.address)  # fmt: skip
            with self.scheduler.lock:
                for machine in self.workers.values():
                    if machine.state != "lost":
                        machine.state = "unreachable"
            self._order()
            self.service.wake()
            return
        if now < self._retry_at:
            return
        self._delay = min(self._delay * 2, DASK_CONNECT_SECONDS)
        self._retry_at = now + self._delay
        try:
            # On the same event loop: the running petitions' streams live there.
            client = _client(self.target, DASK_RECONNECT_SECONDS, loop=self.client.loop)
        except Exception as e:
            log.info("the Dask scheduler at %s is still unreachable: %s", self.target.where, e)
            self._retry_at = time.monotonic() + self._delay
            return
        old, self.client = self.client, client
        with contextlib.suppress(Exception):
            old.close(timeout=2)
        self._back()

    def _back(self) -> None:
        """The scheduler answers again (perhaps a new one): give it orcha's plugin and
        subscription, and the workers time to rejoin before those missing are lost."""
        from orcha.service.dask.plugin import OrchaWorkerPlugin

        client = self.client
        client.register_plugin(OrchaWorkerPlugin(self.service.settings.grace), name="orcha")
        client.subscribe_topic("all", self.on_event)
        self.address = str(getattr(client.scheduler, "address", "") or self.target.where)
        self.dashboard = str(getattr(client, "dashboard_link", "") or "")
        with self.scheduler.lock:
            for machine in [*self.workers.values(), *(m for m, _ in self.gone.values())]:
                machine.client = client
        self._settle_until = time.monotonic() + DASK_CONNECT_SECONDS
        self.reachable = True
        log.warning("reconnected to the Dask scheduler at %s", self.address)
        self.refresh()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="dask-cluster", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        try:
            self.client.close(timeout=2)
        except Exception:
            log.debug("closing the Dask client failed", exc_info=True)

    # -- admission words ------------------------------------------------------------------------
    def check_feasible(self, schedule: Schedule) -> None:
        """Refuse a request no connected worker (nor this host, if it runs petitions)
        could ever hold; with no worker connected, accept it: it waits for one. With
        ``--on``, a worker known but not connected now (lost a while ago, or the
        scheduler unreachable) is waited for too."""
        machines = [m for m in self.scheduler.machines if m.slots > 0]
        on = schedule.on
        if on is not None and not any(on in m.aliases for m in machines) and self._known(on):
            return
        if machines:
            check_feasible(machines, schedule)

    def _known(self, where: str) -> WorkerMachine | None:
        """The worker ``where`` names among those known but not connected, or None."""
        with self.scheduler.lock:
            known = [*self.workers.values(), *(m for m, _ in self.gone.values())]
        return next((m for m in known if where in m.aliases), None)

    @property
    def trouble(self) -> str | None:
        """What is wrong with the cluster as a whole (for ``health``), or None."""
        if self.reachable:
            return None
        since = time.strftime("%H:%M:%S", time.localtime(self.unreachable_since))
        return (
            f"the Dask scheduler at {self.target.where} is unreachable since {since}; "
            "orcha keeps trying to reach it (start it again, or check the network)"
        )

    def summary(self, job: Waiting, machines: Sequence[Capacity], reasons: list[str]) -> str:
        trouble = self.trouble
        if trouble is not None:
            return trouble
        pairs = [(m, r) for m, r in zip(machines, reasons, strict=True) if m.slots > 0]
        where = job.schedule.on
        if where is not None:
            pairs = [(m, r) for m, r in pairs if where in getattr(m, "aliases", (m.name,))]
            if not pairs:
                known = self._known(where)
                if known is not None and known.state == "lost":
                    return f"worker {where} was lost; waiting for it to rejoin (--on)"
                return f"no worker called {where} is connected (--on)"
        gpus = {m.name: len(m.inventory) for m in self.workers.values()}
        return why_waiting(job, [m for m, _ in pairs], [r for _, r in pairs], gpus)

    def banner(self) -> str:
        """Where petitions run, for ``orcha serve``'s banner: the workers' capacity, and
        this host's only if it runs petitions too (``--dask-local``)."""
        with self.scheduler.lock:
            workers = list(self.workers.values())
        words = (f"on Dask: {len(workers)} worker(s), {sum(m.slots for m in workers)} CPU "
                 f"slot(s), {sum(len(m.inventory) for m in workers)} GPU(s)")  # fmt: skip
        if self.local.slots > 0:
            words += (f"; this host: up to {self.local.slots} running, GPUs: "
                      f"{','.join(self.local.inventory) or 'none'}")  # fmt: skip
        return words

    # -- what 'orcha workers' shows -------------------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        """Every worker: connected, refused, and recently lost."""
        now = time.time()
        with self.scheduler.lock:
            rows: list[tuple[WorkerReport, str, WorkerMachine | None]]
            rows = [(m.report, m.state, m) for m in self.workers.values()]
            rows += [(r, "version mismatch", None) for r in self.refused.values()]
            rows += [(m.report, "lost", m) for m, _ in self.gone.values()]
            out = []
            for report, state, machine in rows:
                running = (
                    [j.id for j in self.scheduler.running() if j.machine is machine]
                    if machine is not None else []
                )  # fmt: skip
                out.append({
                    "name": report.name, "host": report.host, "address": report.address,
                    "state": state,
                    "cpus_used": machine.used_slots if machine is not None else 0,
                    "cpus": report.cpus, "mem_available": report.mem_available,
                    "mem_total": report.mem_total, "gpus": list(report.gpus),
                    "gpus_free": list(machine.free_gpus) if machine is not None else [],
                    "load": report.load, "version": report.version, "running": running,
                    "last_seen": report.last_seen or now,
                })  # fmt: skip
        return out


def attach_cluster(service: Service, target: DaskTarget) -> Cluster:
    """Connect ``service`` to the Dask cluster ``target`` names: register orcha's worker
    plugin, wait (briefly) for the connected workers' first reports, and keep the
    scheduler's machines in step from then on. ExecutorError if the scheduler cannot be
    reached."""
    from orcha.service.dask.plugin import OrchaWorkerPlugin

    # The default client of this process (its loop carries the output and input streams).
    if target.scheduler_file:
        _wait_for_file(target.scheduler_file)
    if target.address and not _answers(target.address):
        # Dask retries a refused connection for its whole timeout (a scheduler starting
        # beside orcha comes up meanwhile): say why nothing happens for a while.
        print(
            f"orcha serve: nothing answers at {target.address} yet; waiting up to "
            f"{DASK_CONNECT_SECONDS:g} s for the Dask scheduler",
            file=sys.stderr, flush=True,
        )  # fmt: skip
    try:
        client = _client(target, DASK_CONNECT_SECONDS)
    except Exception as e:  # OSError, TimeoutError, or a TLS problem: one line
        raise ExecutorError(
            f"cannot reach the Dask scheduler at {target.where} ({target.source}): {e}"
        ) from None
    cluster = Cluster(service, target, client, _pool(client))
    quiet_cancelled_tasks()  # the client it replaces one day logs its cancelled reconnect
    client.register_plugin(OrchaWorkerPlugin(service.settings.grace), name="orcha")
    client.subscribe_topic("all", cluster.on_event)
    scheduler = service.scheduler
    scheduler.check_feasible = cluster.check_feasible  # type: ignore[method-assign]
    scheduler._rules.summary = cluster.summary
    # Workers already connected send orcha's facts with their next heartbeat: wait for
    # them, so petitions recorded as running on them are found there at recovery.
    deadline = time.monotonic() + DASK_CONNECT_SECONDS / 2
    while True:
        cluster.refresh()
        listed = client.scheduler_info(n_workers=-1).get("workers", {})
        if len(cluster.workers) + len(cluster.refused) >= len(listed):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    cluster.start()
    service.dask = cluster
    import atexit

    atexit.register(cluster.close)
    print(
        f"orcha serve: Dask scheduler {cluster.address}: {len(cluster.workers)} "
        f"worker(s) connected"
        + (f", {len(cluster.refused)} refused (version mismatch)" if cluster.refused else "")
        + f"; dashboard {client.dashboard_link}",
        file=sys.stderr, flush=True,
    )  # fmt: skip
    return cluster


def _waits_for(job: Job, lost: str) -> str:
    """Why ``job``, whose worker ``lost`` was lost, has not run its next attempt yet."""
    on, attempt = job.schedule.on, job.attempt + 1
    if on is None:
        return f"worker {lost} was lost; waiting for a worker with room for attempt {attempt}"
    whom = "it" if on == lost else on
    return f"worker {lost} was lost; waiting for {whom} to rejoin (--on) for attempt {attempt}"


def _client(target: DaskTarget, timeout: float, loop: Any = None) -> Any:
    """A Dask client of ``target``'s scheduler (its file read now), the default client
    of this process; on ``loop`` if given (else on a loop of its own)."""
    from distributed import Client

    if target.address:
        return Client(target.address, timeout=timeout, set_as_default=True, loop=loop)
    return Client(scheduler_file=target.scheduler_file, timeout=timeout, set_as_default=True,
                  loop=loop)  # fmt: skip


def _pool(client: Any) -> Any:
    """A connection pool like ``client``'s, for the petitions' streams to the workers:
    it stays open when the client is closed (Dask closes a client that lost its
    scheduler for long, and orcha replaces it), so running petitions go on."""
    from distributed.core import ConnectionPool

    rpc = client.rpc
    pool = ConnectionPool(deserialize=True, serializers=rpc.serializers,
                          deserializers=rpc.deserializers,
                          connection_args=client.connection_args, timeout=rpc.timeout)  # fmt: skip
    client.sync(pool.start)
    return pool


def _wait_for_file(path: str) -> None:
    """Wait (briefly) for a starting scheduler to write its file; ExecutorError if none."""
    import os

    deadline = time.monotonic() + DASK_CONNECT_SECONDS
    while not os.path.isfile(path):
        if time.monotonic() > deadline:
            raise ExecutorError(
                f"no Dask scheduler file at {path} after {DASK_CONNECT_SECONDS:g} s; start "
                f"'dask scheduler --scheduler-file {path}' first"
            )
        time.sleep(0.05)


def _answers(address: str) -> bool:
    """Whether something accepts connections at ``address`` (``tcp://HOST:PORT``, or
    another Dask address, which is taken to answer: only TCP is probed)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls"):
        return True
    try:
        port = parts.port
        with socket.create_connection((parts.hostname or "", port or 8786), timeout=1):
            return True
    except (OSError, ValueError):
        return False
