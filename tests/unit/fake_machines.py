"""A fake machine for scheduler tests: set capacity, recorded process control."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from orcha.service.job import Job
from orcha.service.machines import Machine

GIB = 1 << 30


class FakeMachine(Machine):
    """Capacity as given (``slots`` may be changed), memory fixed, process control
    recorded instead of done."""

    def __init__(
        self,
        name: str,
        slots: int = 4,
        gpus: Iterable[str] = (),
        total: int = 64 * GIB,
        available: int = 64 * GIB,
    ) -> None:
        super().__init__(name, gpus)
        self.count = slots
        self.total = total
        self.available = available
        self.calls: list[tuple[Any, ...]] = []

    @property
    def slots(self) -> int:
        return self.count

    def total_memory(self) -> int:
        return self.total

    def available_memory(self) -> int:
        return self.available

    def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        pipe_size: int = 0,
        stdin: bool = False,
        ordered: bool | None = None,
    ) -> Any:
        self.calls.append(("spawn", list(argv)))
        return None

    def adopt(self, job: Job, pid: int) -> None:
        self.calls.append(("adopt", job.id, pid))

    def signal_tree(self, job: Job, sig: int) -> int:
        self.calls.append(("signal", job.id, sig))
        return 0

    def stop_tree(self, job: Job, grace: float, force: bool = False) -> int:
        self.calls.append(("stop", job.id, grace, force))
        return 0

    def measure_tree(self, job: Job) -> dict[str, float]:
        return {"processes": 0.0, "cpu_seconds": 0.0, "rss": 0.0}

    def sweep(self, job: Job, grace: float) -> None:
        self.calls.append(("sweep", job.id))
