"""Through the service core (see harness): what a petition left running is stopped before
it is recorded as ended, and counted in its record; a petition over its memory request
is stopped and fails with MEMORY (211) and the one-line reason."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orcha.errors import ExitCode
from tests.conftest import wait_for
from tests.unit.service import harness
from tests.unit.service.harness import Harness


class LeftoverProcs(harness.FakeProcs):
    """Fake process control whose petitions leave ``left`` processes behind, and whose
    memory limits the test trips by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.left = 0
        self.limits: dict[str, tuple[int, Callable[[str], None]]] = {}
        self.forgotten: list[str] = []

    def stop_leftovers(self, roots: Any, token: str, grace: float) -> int:
        left, self.left = self.left, 0
        return left

    def limit_memory(self, token: str, limit: int, roots: Any, exceeded: Any) -> None:
        self.limits[token] = (limit, exceeded)

    def finished(self, token: str) -> None:
        self.forgotten.append(token)


@pytest.fixture
def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.setattr(harness, "FakeProcs", LeftoverProcs)
    hh = Harness(tmp_path, max_running=2)
    yield hh
    hh.close()


def _procs(h: Harness) -> LeftoverProcs:
    assert isinstance(h.procs, LeftoverProcs)
    return h.procs


def test_leftovers_are_stopped_and_counted_in_the_record(h: Harness) -> None:
    procs = _procs(h)
    h.submit("a")
    h.gates.wait_started("a")
    procs.left = 2
    assert h.run_to_end("a")["state"] == "SUCCEEDED"
    record = h.record("a")
    assert record["leftovers"] == 2
    h.submit("b")
    h.gates.wait_started("b")
    h.run_to_end("b")
    assert h.record("b")["leftovers"] == 0
    # A petition's processes are forgotten just after its end is announced.
    assert wait_for(lambda: len(procs.forgotten) == 2), procs.forgotten
    assert len(set(procs.forgotten)) == 2  # each forgotten once ended


def test_a_petition_over_its_memory_fails_with_its_own_code(h: Harness) -> None:
    procs = _procs(h)
    waiter = h.peer()
    h.submit("m", schedule={"mem": 10 << 20})
    h.gates.wait_started("m")
    assert h.call("wait", waiter, ids=["m"])["pending"] == ["m"]
    ((limit, exceeded),) = procs.limits.values()
    assert limit == 10 << 20
    exceeded("used 312 MiB, asked for 10 MiB")
    ended = waiter.expect(event="ended", id="m")
    assert ended["state"] == "FAILED"
    record = h.record("m")
    assert (record["code"], record["message"]) == (
        int(ExitCode.MEMORY), "used 312 MiB, asked for 10 MiB"
    )  # fmt: skip
    assert procs.stopped and procs.stopped[-1][2] is True  # killed at once, not TERMed


def test_a_petition_without_a_memory_request_is_not_watched(h: Harness) -> None:
    h.submit("n")
    h.gates.wait_started("n")
    h.run_to_end("n")
    assert _procs(h).limits == {}
