"""A kind cannot hurt the service: whatever it raises, whatever code it returns, its
petition ends FAILED with the reason, and the service keeps serving (see harness)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orcha.errors import ExitCode
from tests.unit.service.harness import Harness


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, max_running=1)
    yield harness
    harness.close()


@pytest.mark.parametrize("code", [-1, 256, 300, 2**63, 2**70])
def test_a_code_out_of_range_fails_the_petition_and_says_so(h: Harness, code: int) -> None:
    h.submit("a")
    h.gates.wait_started("a")
    ended = h.run_to_end("a", code)
    message = f"exit code {code} is out of range 0-255"
    assert (ended["state"], ended["code"], ended["message"]) == ("FAILED", 1, message)
    record = h.record("a")
    assert (record["state"], record["code"], record["message"]) == ("FAILED", 1, message)
    h.submit("next")  # the records' writer is alive: the next petition is recorded too
    h.gates.wait_started("next")
    assert h.run_to_end("next", 255)["code"] == 255  # the edges of the range are kept
    assert h.record("next")["state"] == "FAILED"


@pytest.mark.parametrize(
    "error", [KeyboardInterrupt("typed ^C"), SystemExit(3), GeneratorExit("odd")]
)
def test_a_kind_raising_any_base_exception_fails_its_petition(
    h: Harness, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    gate_run = h.gates.run

    def run(petition_id: str, cancelled: Any) -> int:
        if petition_id == "bad":
            raise error
        return gate_run(petition_id, cancelled)

    monkeypatch.setattr(h.gates, "run", run)
    h.submit("bad")
    h.wait_ended("bad")
    record = h.record("bad")
    assert record["state"] == "FAILED"
    assert record["code"] == int(ExitCode.FAILED)
    assert record["message"] == f"petition bad failed: {type(error).__name__}: {error}"
    # The runner's thread survived and the service goes on serving.
    h.submit("good")
    h.gates.wait_started("good")
    assert h.run_to_end("good", 0)["state"] == "SUCCEEDED"
