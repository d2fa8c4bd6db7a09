"""A Dask worker's report read into what orcha schedules with, and the words that say
why a petition waits on a cluster. Pure (no ``distributed``): unit-tested with fakes.

A worker's capacity is what its host measured (``worker.metrics["orcha"]``, see
:mod:`.plugin`), overridden by what the worker declares with Dask's own ``--resources
"CPU=16,GPU=2,MEM=64e9"``. A worker whose orcha version differs from the service's is
refused (state ``version mismatch``): no petition is placed there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orcha.service.predicates import gib

if TYPE_CHECKING:
    from orcha.service.predicates import Capacity
    from orcha.service.queued import Waiting


@dataclass(frozen=True)
class WorkerReport:
    """One worker as orcha sees it."""

    address: str
    name: str
    host: str
    cpus: int
    mem_total: int
    mem_available: int
    gpus: tuple[str, ...]
    load: float
    version: str
    running: int
    last_seen: float
    status: str = "running"
    declared: Mapping[str, float] = field(default_factory=dict)

    def refused(self, version: str) -> str | None:
        """Why orcha places nothing here, or None."""
        if self.version != version:
            return f"version mismatch: worker has orcha {self.version or '?'}, service {version}"
        return None


def read_report(address: str, info: Mapping[str, Any]) -> WorkerReport | None:
    """The report in ``scheduler_info()["workers"][address]``, or None while the worker
    has not sent orcha's facts yet (its first heartbeat after the plugin's setup)."""
    facts = (info.get("metrics") or {}).get("orcha")
    if not isinstance(facts, Mapping):
        return None
    declared = {str(k): float(v) for k, v in (info.get("resources") or {}).items()}
    cpus = int(declared.get("CPU", facts.get("cpus") or 1))
    mem = int(declared.get("MEM", facts.get("mem_total") or 0))
    available = int(facts.get("mem_available") or 0)
    if "MEM" in declared:
        available = min(available, mem) if available else mem
    gpus = tuple(str(g) for g in facts.get("gpus") or ())
    if "GPU" in declared:
        count = int(declared["GPU"])
        gpus = gpus[:count] if len(gpus) >= count else tuple(str(i) for i in range(count))
    name = str(info.get("name") or address)
    if name == address or name.isdigit():
        name = address.split("://", 1)[-1]
    return WorkerReport(
        address=address, name=name, host=str(facts.get("host") or info.get("host") or "?"),
        cpus=max(0, cpus), mem_total=mem, mem_available=available, gpus=gpus,
        load=float(facts.get("load") or 0.0), version=str(facts.get("version") or ""),
        running=int(facts.get("running") or 0),
        last_seen=float(info.get("last_seen") or 0.0),
        status=str(info.get("status") or "running"), declared=declared,
    )  # fmt: skip


def matches(report: WorkerReport, where: str) -> bool:
    """Whether ``where`` (``--on``) names this worker: its name, host or address."""
    return where in (report.name, report.host, report.address, report.address.split("://")[-1])


def best_fit(machines: Sequence[Capacity]) -> list[Capacity]:
    """``machines`` in the order petitions should try them: those without GPUs first
    (a CPU-only petition leaves GPU hosts free), then the fullest first (best fit: a big
    petition still finds an empty worker)."""
    return sorted(machines, key=lambda m: (getattr(m, "inventory", ()) != (), m.free_slots, m.name))


def why_waiting(
    job: Waiting,
    machines: Sequence[Capacity],
    reasons: Sequence[str],
    gpus: Mapping[str, int] | None = None,
) -> str:
    """Why ``job``'s resources fit on no worker, in one line: the scarcest resource and
    the best worker for it, e.g. ``no worker has 4 free GPUs (best: w2 with 2)``.
    ``machines`` and ``reasons``: each worker and what its predicate said; ``gpus``: how
    many GPUs each has in all (among equals, the best is the one with most)."""
    if not machines:
        return "no worker connected (start one: dask worker SCHEDULER)"
    need = job.schedule
    if need.gpus:
        best = max(machines, key=lambda m: (m.free_gpu_count, (gpus or {}).get(m.name, 0)))
        if best.free_gpu_count < need.gpus:
            return (f"no worker has {need.gpus} free GPU(s) (best: {best.name} with "
                    f"{best.free_gpu_count})")  # fmt: skip
    if need.cpus:
        best = max(machines, key=lambda m: m.free_slots)
        if best.free_slots < need.cpus:
            return (f"no worker has {need.cpus} free CPU(s) (best: {best.name} with "
                    f"{max(0, best.free_slots)})")  # fmt: skip
    if need.mem:
        best = max(machines, key=lambda m: m.free_memory())
        if best.free_memory() < need.mem:
            return (f"no worker has {gib(need.mem)} of free memory (best: "
                    f"{best.name} with {gib(max(0, best.free_memory()))})")  # fmt: skip
    return "; ".join(f"{m.name}: {r}" for m, r in zip(machines, reasons, strict=True))
