"""A kind whose ``run`` ignores its cancel cannot hold its slot, its record or the service:
after the grace period its petition ends CANCELLED without it (saying so), its slot goes
to the next petition, ``health`` counts it against its plugin, and nothing the abandoned
thread does afterwards reaches the ended petition (see harness; grace 1 s)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orcha.errors import PetitionError
from tests.unit.service.harness import DEADLINE, Harness

NOTE = "its action ignored the cancel and was abandoned: it may still run in the service"


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, max_running=1)
    yield harness
    harness.close()


class Stubborn:
    """The gate kind's run, except for ``s1``: it waits for :attr:`release` whatever
    ctx.cancelled says, then tries to act on its petition and returns 3."""

    def __init__(self, h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
        kind = h.service.manager.registry.plugin_kind("gate")
        self.inside, self.release, self.returned = (threading.Event() for _ in range(3))
        self.runs = 0
        self.after: list[tuple[str, str]] = []
        self._run = kind.run
        monkeypatch.setattr(kind, "run", self.run)

    def run(self, ctx: Any) -> int:
        if ctx.id != "s1":
            code: int = self._run(ctx)
            return code
        self.runs += 1
        self.inside.set()
        self.release.wait(DEADLINE)  # ctx.cancelled is never looked at
        for name, act in (
            ("write", lambda: ctx.write("late\n")),
            ("outcome", lambda: ctx.set_outcome({"late": True})),
            ("fail", lambda: ctx.fail("late")),
            ("spawn", lambda: ctx.spawn(["true"])),
        ):
            try:
                act()
                self.after.append((name, "done"))
            except PetitionError as e:
                self.after.append((name, e.message))
        self.returned.set()
        return 3


def plugin_health(h: Harness) -> dict[str, Any]:
    reply = h.call("health")
    test: dict[str, Any] = reply["plugins"]["test"]
    assert reply["healthy"] is test["healthy"]
    return test


def test_an_action_that_ignores_its_cancel_is_abandoned_and_frees_its_slot(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    stubborn = Stubborn(h, monkeypatch)
    h.submit("s1")
    assert stubborn.inside.wait(DEADLINE)
    h.submit("s2")  # one slot: it waits for s1's
    began = time.monotonic()
    reply = h.call("cancel", ids=["s1"])
    assert reply["results"] == {"s1": "cancelled"}
    assert time.monotonic() - began < DEADLINE / 2  # the grace (1 s) and a bit, not forever
    record = h.record("s1")
    message = f"cancelled with 'orcha cancel'; {NOTE}"
    assert (record["state"], record["code"], record["message"]) == ("CANCELLED", None, message)
    h.gates.wait_started("s2")  # its slot is free
    assert plugin_health(h) == {
        "healthy": False,
        "details": {"abandoned": "1 action that ignored its cancel still runs"},
    }
    # It returns after all: it could change nothing, and nothing runs twice.
    stubborn.release.set()
    assert stubborn.returned.wait(DEADLINE)
    ended = "petition s1 has ended: its action ignored a stop and was abandoned"
    assert stubborn.after == [(n, ended) for n in ("write", "outcome", "fail", "spawn")]
    deadline = time.monotonic() + DEADLINE
    while not plugin_health(h)["healthy"]:
        assert time.monotonic() < deadline, plugin_health(h)
        time.sleep(0.005)
    again = h.record("s1")
    assert (again["state"], again["code"], again["message"]) == ("CANCELLED", None, message)
    assert again["outcome"] is None
    assert stubborn.runs == 1
    assert h.run_to_end("s2", 0)["state"] == "SUCCEEDED"


def test_an_action_that_ignores_its_timeout_is_abandoned_and_not_retried(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    stubborn = Stubborn(h, monkeypatch)
    h.submit("s1", schedule={"timeout": 0.05, "retries": 1})
    assert stubborn.inside.wait(DEADLINE)
    h.wait_ended("s1")
    record = h.record("s1")
    note = NOTE.replace("the cancel", "the stop")
    assert (record["state"], record["code"], record["attempt"]) == ("FAILED", 124, 1), record
    assert record["message"] == f"timed out after 0.05s; {note}"
    stubborn.release.set()
    assert stubborn.returned.wait(DEADLINE)
    assert stubborn.runs == 1  # its retry never ran beside the abandoned attempt
    assert h.record("s1")["message"] == record["message"]


def test_an_abandoned_action_of_no_plugin_kind_is_counted_by_health(h: Harness) -> None:
    # An original-API manager's petition has no kind of a plugin's: the runner counts its
    # abandoned action under the kind "" (see Runner._count_abandoned), and health says
    # so on its own, the service unhealthy, as a plugin is for its kinds' actions.
    plugins = h.service.plugins
    assert "abandoned" not in h.call("health")
    plugins.action_abandoned("", 1)
    plugins.action_abandoned("", 1)
    reply = h.call("health")
    assert reply["healthy"] is False
    assert reply["abandoned"] == "2 actions that ignored their cancel still run"
    assert reply["plugins"]["test"] == {"healthy": True, "details": {}}  # not the plugin's
    plugins.action_abandoned("", -1)
    assert h.call("health")["abandoned"] == "1 action that ignored its cancel still runs"
    plugins.action_abandoned("", -1)  # it returned after all
    reply = h.call("health")
    assert reply["healthy"] is True and "abandoned" not in reply
