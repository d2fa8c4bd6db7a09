"""orcha.cli.workers: the table of Dask workers, from a service's answer."""

from __future__ import annotations

import time
from typing import Any

import click
import pytest
from click.testing import CliRunner

from orcha.cli import workers


class FakeService:
    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer

    def __enter__(self) -> FakeService:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def workers(self) -> dict[str, Any]:
        return self.answer


def worker(name: str, gpus: list[str], gpus_free: list[str], cpus_used: int) -> dict[str, Any]:
    return {"name": name, "host": "vm", "address": f"tcp://127.0.0.1:{len(name)}", "cpus": 2,
            "cpus_used": cpus_used, "mem_available": 1 << 30, "mem_total": 2 << 30,
            "gpus": gpus, "gpus_free": gpus_free, "load": 0.0, "version": "1",
            "running": [], "state": "ok", "last_seen": time.time()}  # fmt: skip


def test_gpus_are_in_use_out_of_the_total_as_cpus_are(monkeypatch: pytest.MonkeyPatch) -> None:
    # Both columns read alike: an idle worker 0/N, a full one N/N.
    answer = {"executor": "dask", "scheduler": "tcp://s", "dashboard": None, "workers": [
        worker("idle", ["0"], ["0"], 0), worker("busy", ["0", "1"], ["1"], 2)]}  # fmt: skip
    monkeypatch.setattr(workers, "client", lambda ctx: FakeService(answer))
    result = CliRunner().invoke(workers.workers, [])
    assert result.exit_code == 0, result.output
    header, idle, busy = result.output.splitlines()[1:]
    cells = {
        row.split()[0]: dict(zip(header.split(), row.split(), strict=False)) for row in (idle, busy)
    }
    assert (cells["idle"]["CPUS"], cells["idle"]["GPUS"]) == ("0/2", "0/1")
    assert (cells["busy"]["CPUS"], cells["busy"]["GPUS"]) == ("2/2", "1/2")


def test_the_help_names_every_state_a_worker_may_be_in() -> None:
    text = workers.workers.get_help(click.Context(workers.workers))
    for state in ("ok", "closing", "lost", "unreachable", "version mismatch"):
        assert state in " ".join(text.split()), state
    assert "GPUs in use/total" in " ".join(text.split())
