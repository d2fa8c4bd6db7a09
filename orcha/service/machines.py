"""Machines: where petitions run.

A :class:`Machine` has capacity (CPU slots, memory, GPUs), the reservations of the
petitions running on it, and process control (spawn, signal the tree, stop the tree,
measure the tree). The scheduler admits each petition *onto* one machine (it records it
as ``job.machine``); priority, aging, backfill, groups and dependencies stay global.
Everything that touches a petition's processes goes through its machine, so nothing
outside a machine's process control assumes local PIDs or ``/proc``.

:class:`LocalMachine` is the service's host, named ``"local"`` (the ``name`` records and
``status --json`` show); each Dask worker is a :class:`~.dask.remote.WorkerMachine`.

The reservations are the scheduler's bookkeeping, kept under its lock; capacity and
process control are the subclass's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess

    from orcha.protocol.schedule import Schedule
    from orcha.service.host import Host
    from orcha.service.job import Job
    from orcha.service.procs import ProcessControl
    from orcha.service.sweeping import Sweeper

log = logging.getLogger("orcha.service.machines")


class Machine:
    """A place petitions run: its capacity, what running petitions reserved on it, and
    control over each petition's processes.

    Subclasses implement :attr:`slots`, :meth:`total_memory`, :meth:`available_memory`
    and the process control methods; the reservation methods here are called by the
    scheduler under its lock.
    """

    def __init__(self, name: str, gpus: Iterable[str] = ()) -> None:
        self.name = name
        #: The GPUs petitions may be given on this machine (e.g. nvidia-smi indices).
        self.inventory: tuple[str, ...] = tuple(gpus)
        self.free_gpus: list[str] = list(self.inventory)
        self.used_slots = 0
        self.reserved_memory = 0
        self._slots_now: int | None = None  # slots, read once per walk (see refresh())
        # Free memory, read at most once per admission walk (see refresh()).
        self._free_mem: int | None = None
        self._memory_error = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    @property
    def aliases(self) -> tuple[str, ...]:
        """What ``--on`` may call it: its name, and e.g. its host's name."""
        return (self.name,)

    @property
    def capacity_hint(self) -> str:
        """Where its CPU slots are set, for a refusal's hint."""
        return "'orcha serve --max-running'"

    # -- capacity ---------------------------------------------------------------------------
    @property
    def slots(self) -> int:
        """CPU slots petitions may occupy at once (may change between admissions)."""
        raise NotImplementedError

    def total_memory(self) -> int:
        """Bytes of memory the machine has (a request above it can never fit)."""
        raise NotImplementedError

    def available_memory(self) -> int:
        """Bytes that can be given to new processes now (running petitions included)."""
        raise NotImplementedError

    # -- reservations (scheduler bookkeeping) -------------------------------------------------
    @property
    def free_slots(self) -> int:
        """Slots not in use (capacity as read at the last :meth:`refresh`)."""
        if self._slots_now is None:
            self._slots_now = self.slots
        return self._slots_now - self.used_slots

    @property
    def free_gpu_count(self) -> int:
        return len(self.free_gpus)

    def ever_fits(self, need: Schedule) -> bool:
        """Whether a petition asking ``need`` could ever run here (backfill keeps a blocked
        one room only where it could): it fits the slots, GPU inventory and total memory."""
        total = (self._total_memory() or need.mem) if need.mem else 0  # unreadable: enough
        slots, gpus = self.free_slots + self.used_slots, len(self.inventory)
        return need.cpus <= slots and need.gpus <= gpus and need.mem <= total

    def _total_memory(self) -> int | None:  # None: unreadable (logged when free memory is)
        with contextlib.suppress(Exception):
            return self.total_memory()
        return None

    def refresh(self) -> None:
        """Read the slots again and forget the free memory read during the last admission
        walk (the scheduler calls it at the start of each)."""
        self._slots_now = self.slots
        self._free_mem = None

    def free_memory(self) -> int:
        """Available memory minus what running petitions reserved; read once per walk
        (between :meth:`refresh` calls). 0 if it cannot be read (logged once)."""
        if self._free_mem is None:
            self._free_mem = self._read_free_memory()
        return self._free_mem

    def _read_free_memory(self) -> int:
        try:
            free = self.available_memory() - self.reserved_memory
        except Exception:
            if not self._memory_error:  # once, not at every recheck
                log.exception(
                    "%s: cannot read available memory; petitions that need memory wait",
                    self.name,
                )
            self._memory_error = True
            return 0
        self._memory_error = False
        return free

    def reserve(self, need: Schedule) -> tuple[str, ...]:
        """Give a starting petition what it asked for; returns its GPUs."""
        self.used_slots += need.cpus
        self.reserved_memory += need.mem
        if need.mem and self._free_mem is not None:
            self._free_mem -= need.mem
        gpus = tuple(self.free_gpus[: need.gpus])
        del self.free_gpus[: need.gpus]
        return gpus

    def release(self, need: Schedule, gpus: Sequence[str]) -> None:
        """Take back what an ended petition held."""
        self.used_slots -= need.cpus
        self.reserved_memory -= need.mem
        # A GPU taken out of the inventory by a reload while it was held is not given out again.
        self.free_gpus.extend(g for g in gpus if g in self.inventory)
        self.free_gpus.sort(key=self.inventory.index)

    def set_inventory(self, gpus: Iterable[str], held: Iterable[str]) -> None:
        """Hand out ``gpus`` from now on (a configuration reload); ``held``: the GPUs
        running petitions hold, which stay theirs until they end (even one no longer in
        the inventory, which is then not given out again)."""
        taken = set(held)
        self.inventory = tuple(gpus)
        self.free_gpus = [g for g in self.inventory if g not in taken]

    def hold(self, need: Schedule, gpus: Sequence[str]) -> None:
        """Count as reserved what a running petition already has (a child that ran in
        its parent's loan keeps it when the parent ends first)."""
        self.used_slots += need.cpus
        self.reserved_memory += need.mem
        for gpu in gpus:
            if gpu in self.free_gpus:
                self.free_gpus.remove(gpu)

    def snapshot(self, memory: bool) -> MachineView:
        """Its free resources now, as plain data (for explaining outside the lock);
        free memory is read only if ``memory``."""
        return MachineView(
            self.name,
            self.slots,
            self.used_slots,
            self.free_gpu_count,
            self._read_free_memory() if memory else 0,
            self.aliases,
            len(self.inventory),
            self._total_memory() if memory else None,
        )

    # -- process control --------------------------------------------------------------------
    def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        pipe_size: int = 0,
        stdin: bool = False,
        ordered: bool | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` for a petition, its stdout and stderr piped to the service, and
        its stdin too with ``stdin`` (else /dev/null). ``ordered``: capture the two so
        that their order is kept (:mod:`orcha.service.capture`); None: the machine's
        default (``ordered_output``)."""
        raise NotImplementedError

    def adopt(self, job: Job, pid: int) -> None:
        """A process the petition's action started (``cb(pid)``) belongs to its tree."""
        raise NotImplementedError

    def signal_tree(self, job: Job, sig: int) -> int:
        """Send ``sig`` to every process of the petition; returns how many."""
        raise NotImplementedError

    def stop_tree(self, job: Job, grace: float, force: bool = False) -> int:
        """Stop every process of the petition: TERM, ``grace`` seconds, KILL (with
        ``force``: KILL at once). Returns how many were signalled."""
        raise NotImplementedError

    def measure_tree(self, job: Job) -> dict[str, float]:
        """What the petition's processes use now: ``processes``, ``cpu_seconds`` (theirs
        and that of the children they reaped), ``rss`` (bytes); {}: not measured here."""
        raise NotImplementedError

    def reap(self, job: Job, proc: subprocess.Popen[bytes]) -> int:
        """Wait for ``proc`` (one the petition's kind spawned) and return its returncode,
        accounting for what it used (:meth:`Job.used`) where the machine can tell."""
        return proc.wait()

    def account(self, job: Job) -> None:
        """An attempt of the petition has ended and its tree was stopped: account for
        what the machine measured of it as a whole (its cgroup), if anything."""

    def sweep(self, job: Job, grace: float) -> None:
        """The petition ended normally: stop, in the background, what it left running."""
        raise NotImplementedError

    def stop_leftovers(self, job: Job, grace: float) -> int:
        """The petition's action has returned (its main process ended): stop what of its
        tree is still running (TERM, ``grace``, KILL) and return how many processes
        that was."""
        return 0

    def left_running(self, job: Job) -> bool:
        """Whether :meth:`stop_leftovers` may have anything to stop now, from a quick
        look that never waits (by default it cannot tell: True)."""
        return True

    def limit_memory(self, job: Job, limit: int, exceeded: Callable[[str], None]) -> None:
        """Hold the running petition to ``limit`` bytes for its whole tree: call
        ``exceeded(reason)`` (once, in any thread) when it is found using more. Called
        before its first process starts."""

    def check_memory(self, job: Job) -> None:
        """Look at once whether the petition went over its limit (its action has just
        returned: a process the kernel killed for it may be why)."""

    def relocate(self, job: Job) -> bool:
        """This machine was lost while ``job`` ran on it and it has attempts left: move
        it, with its reservation, to another machine for its next attempt (True), or say
        it cannot be (False: it ends INTERRUPTED). Only remote machines can be lost."""
        return False

    def forget(self, job: Job) -> None:
        """The petition has ended and its processes were stopped: drop what the machine
        kept for it."""

    def shutdown(self, grace: float) -> None:
        """The service stops (its petitions have): stop whatever petitions left running
        that no petition could be given."""

    def start_ticks(self, pid: int) -> int | None:
        """What names process ``pid`` beside its PID in a record (so a reused PID is not
        taken for it after a restart), or None."""
        return None

    def stop_recorded(self, pids: Iterable[Sequence[int]], token: str | None, grace: float) -> int:
        """Stop what a petition recorded before a restart left running: ``pids`` as the
        record keeps them ([pid, start ticks]). Returns how many were signalled."""
        raise NotImplementedError


@dataclass(frozen=True)
class MachineView:
    """A machine's free resources at one moment (what predicates read in explain)."""

    name: str
    slots: int
    used_slots: int
    free_gpu_count: int
    memory: int
    aliases: tuple[str, ...] = ()
    gpu_total: int | None = None  # None: unknown
    memory_total: int | None = None  # None: not read

    @property
    def free_slots(self) -> int:
        return self.slots - self.used_slots

    def ever_fits(self, need: Schedule) -> bool:
        """As :meth:`Machine.ever_fits`, on what was copied (None counts as enough)."""
        gpus_ok = self.gpu_total is None or need.gpus <= self.gpu_total
        return gpus_ok and need.cpus <= self.slots and need.mem <= (self.memory_total or need.mem)

    def free_memory(self) -> int:
        return self.memory


class LocalMachine(Machine):
    """The host the service runs on: capacity from :class:`~orcha.service.host.Host`,
    process control by :class:`~orcha.service.procs.ProcessControl` (local PIDs, process
    trees found through psutil and the petition's token in ``/proc``)."""

    def __init__(
        self,
        host: Host | None = None,
        procs: ProcessControl | None = None,
        *,
        slots: int | Callable[[], int] | None = None,
        gpus: Iterable[str] = (),
        name: str = "local",
    ) -> None:
        """``slots``: CPU slots, or a callable read at each admission (default: the
        host's cores); ``gpus``: the GPU inventory (default none; the composition root
        passes ``host.discover_gpus()`` or the configured list)."""
        super().__init__(name, gpus)
        if host is None:
            from orcha.service.host import Host

            host = Host()
        self.host = host
        self._procs = procs
        #: Whether a petition that does not say is captured ordered (``ordered_output``).
        self.ordered_output = False
        if slots is None:
            slots = host.cpu_count()
        if callable(slots):
            self._slots: Callable[[], int] = slots
        else:
            count = slots
            self._slots = lambda: count
        self._sweeper: Sweeper | None = None

    @property
    def aliases(self) -> tuple[str, ...]:
        import socket

        return (self.name, "local", socket.gethostname())

    @property
    def procs(self) -> ProcessControl:
        """Its process control (created on first use: psutil is imported only then)."""
        if self._procs is None:
            from orcha.service.procs import ProcessControl

            self._procs = ProcessControl()
        return self._procs

    @property
    def slots(self) -> int:
        return self._slots()

    def total_memory(self) -> int:
        return self.host.total_memory()

    def available_memory(self) -> int:
        return self.host.available_memory()

    def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        pipe_size: int = 0,
        stdin: bool = False,
        ordered: bool | None = None,
    ) -> subprocess.Popen[bytes]:
        return self.procs.spawn(
            argv,
            cwd=cwd,
            env=env,
            pipe_size=pipe_size,
            stdin=stdin,
            ordered=self.captures_ordered(ordered),
        )

    def captures_ordered(self, ordered: bool | None) -> bool:
        """Whether a petition asking ``ordered`` (None: it did not say) is captured
        ordered here."""
        return self.ordered_output if ordered is None else ordered

    def adopt(self, job: Job, pid: int) -> None:
        with job.lock:
            job.pids.add(pid)
        self.procs.watch(job.token, pid)

    def signal_tree(self, job: Job, sig: int) -> int:
        return self.procs.signal_tree(list(job.pids), job.token, sig)

    def stop_tree(self, job: Job, grace: float, force: bool = False) -> int:
        return self.procs.stop_tree(list(job.pids), job.token, grace, force=force)

    def measure_tree(self, job: Job) -> dict[str, float]:
        import psutil

        cpu = 0.0
        rss = 0
        procs = self.procs.tree(list(job.pids), job.token)
        for proc in procs.values():
            try:
                times = proc.cpu_times()  # with the children it waited for (sacct's TotalCPU)
                cpu += times.user + times.system + times.children_user + times.children_system
                rss += proc.memory_info().rss
            except psutil.Error:
                pass
        return {"processes": float(len(procs)), "cpu_seconds": cpu, "rss": float(rss)}

    def reap(self, job: Job, proc: subprocess.Popen[bytes]) -> int:
        from orcha.service.rusage import reap

        returncode, cpu, rss = reap(proc)
        job.used(cpu, rss)
        lost = getattr(proc, "lost", None)  # its spawner ended: no status (spawner.py)
        if lost and not job.message:
            job.message = lost
        return returncode

    def account(self, job: Job) -> None:
        cgroups = self.procs.cgroups
        if cgroups is not None:
            # The whole tree, what exited unwaited included; over every attempt so far.
            peak = cgroups.peak(job.token) if cgroups.memory else None
            job.used(cgroups.cpu_seconds(job.token), peak, total=True)

    def sweep(self, job: Job, grace: float) -> None:
        if not job.pids:
            return  # it started nothing it told orcha about: nothing to look for
        if self.procs.contained(job.token, job.pids):
            return  # its cgroup held its whole tree, emptied when its action returned
        if self._sweeper is None:
            from orcha.service.sweeping import Sweeper

            self._sweeper = Sweeper(self.procs, grace)
        self._sweeper.add(job)

    def stop_leftovers(self, job: Job, grace: float) -> int:
        return self.procs.stop_leftovers(list(job.pids), job.token, grace)

    def left_running(self, job: Job) -> bool:
        return self.procs.left_running(job.token)

    def limit_memory(self, job: Job, limit: int, exceeded: Callable[[str], None]) -> None:
        self.procs.limit_memory(job.token, limit, lambda: list(job.pids), exceeded)

    def check_memory(self, job: Job) -> None:
        self.procs.memory.check()

    def forget(self, job: Job) -> None:
        self.procs.finished(job.token)

    def shutdown(self, grace: float) -> None:
        if self._procs is not None:
            self.procs.stop_strays(grace)

    def start_ticks(self, pid: int) -> int | None:
        """When process ``pid`` started, in clock ticks since boot (``/proc``); None
        where petitions run in cgroups: a restart kills what is left in those (all of
        it, whatever its environment), so no record of PIDs is needed. (Read as the
        process is exec'ing, /proc/PID/stat cost the service 0.3-0.4 ms of CPU per
        petition: a quarter of what it spends on one.)"""
        if self.procs.cgroups is not None:
            return None
        from orcha.service.proc_table import start_ticks

        return start_ticks(pid)

    def stop_recorded(self, pids: Iterable[Sequence[int]], token: str | None, grace: float) -> int:
        # The same process, not a reused PID: same start time.
        roots = [pid for pid, started in pids if self.start_ticks(pid) == started]
        if not roots and not token:
            return 0
        return self.procs.stop_tree(roots, token, grace)
