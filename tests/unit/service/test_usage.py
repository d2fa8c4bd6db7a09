"""Usage events (orcha.service.usage) through the real handlers: ``watch`` with
``usage``, as ``orcha top`` asks for it."""

from __future__ import annotations

import shlex
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orcha.defaults import USAGE_COMMAND_CHARS
from orcha.service.usage import UsageFeed, command_of
from tests.unit.service.harness import Harness


@pytest.fixture
def h(tmp_path: Path) -> Any:
    harness = Harness(tmp_path, max_running=2, gpus=("0", "1"))
    yield harness
    harness.close()


def test_a_usage_watcher_gets_the_running_the_waiting_and_why_gpus_and_groups(h: Harness) -> None:
    h.submit("old", params={})
    h.gates.wait_started("old")
    h.run_to_end("old", 3)
    h.call("group", name="batch", max_running=1)
    h.submit("train", schedule={"gpus": 1, "group": "batch"})
    h.gates.wait_started("train")
    h.submit("second", schedule={"group": "batch"}, priority=1)
    h.submit("big", schedule={"cpus": 2})

    watcher = h.peer()
    reply = h.call("watch", watcher, ids=[], usage=0.5, output=False)
    (old,) = reply["recent"]
    assert (old["id"], old["state"], old["code"]) == ("old", "FAILED", 3)
    assert old["started"] <= old["ended"] and "seq" not in old

    usage = watcher.expect(event="usage")
    assert usage["petition"] is None
    data = usage["data"]
    (train,) = data["running"]
    assert train["id"] == "train" and train["kind"] == "gate" and train["gpus"] == ["0"]
    assert train["group"] == "batch" and train["command"] == "gate"
    # The fake process control finds no process (the clock stands still: no CPU % yet).
    assert train["processes"] == 0 and train["rss"] == 0 and train["cpu_percent"] in (0.0, None)
    # In queue order (priority 0 before 1), each with the words 'status' has for it.
    assert [(p["id"], p["why"]) for p in data["waiting"]] == [
        ("big", "needs 2 CPUs, 1 free"),
        ("second", "group batch full (1/1)"),
    ]
    assert data["waiting"][0]["cpus"] == 2 and data["queued"] == 2
    assert data["waiting"][1]["priority"] == 1 and data["waiting"][1]["group"] == "batch"
    assert data["gpus"] == [{"index": "0", "petition": "train"}, {"index": "1", "petition": None}]
    assert {g["name"]: (g["max_running"], g["running"], g["queued"]) for g in data["groups"]} == {
        "batch": (1, 1, 1), "default": (None, 0, 1)}  # fmt: skip
    assert data["cpus"] == {"used": 1, "capacity": 2} and data["paused"] is False
    # The state events came before it: a watcher knows each petition first.
    states = [f["petition"] for f in watcher.frames if f["event"] == "state"]
    assert states == ["train", "big", "second"]
    assert watcher.frames.index(usage) > max(
        i for i, f in enumerate(watcher.frames) if f["event"] == "state"
    )


def test_a_watcher_without_output_gets_none_and_the_service_idles_after_it(h: Harness) -> None:
    quiet, loud = h.peer(), h.peer()
    h.call("watch", quiet, ids=[], usage=0.5, output=False)
    assert "recent" not in h.call("watch", loud, ids=[])  # only with usage
    h.submit("talk", params={"out": "hello\n"})
    h.gates.wait_started("talk")
    loud.expect(event="output", petition="talk")
    h.run_to_end("talk")
    quiet.expect(event="finished", petition="talk")
    assert not any(f["event"] == "output" for f in quiet.frames)
    assert h.service.events.usage  # someone watches with usage
    h.service.peer_closed(quiet)
    assert not h.service.events.usage  # nobody: the feed's thread waits for one
    assert h.service.events.wants_output  # loud still wants output


def test_a_watch_of_some_ids_gets_usage_of_those_only(h: Harness) -> None:
    h.submit("mine")
    h.submit("other")
    h.gates.wait_started("other")
    watcher = h.peer()
    h.call("watch", watcher, ids=["mine"], usage=0.5)
    data = watcher.expect(event="usage")["data"]
    assert [p["id"] for p in data["running"]] == ["mine"]
    assert data["cpus"]["used"] == 2  # the service's own figures stay whole


@pytest.mark.parametrize("usage", [0.01, 1e9, "2", True])
def test_a_usage_interval_out_of_bounds_is_refused(h: Harness, usage: object) -> None:
    reply = h.request("watch", ids=[], usage=usage)
    assert reply["ok"] is False and reply["error"] == "refused"
    assert "'usage' must be a number of seconds from 0.5 to 3600" in reply["message"]
    assert h.request("watch", ids=[], output="no")["error"] == "refused"
    assert not h.service.events.usage


class _Machine:
    def __init__(self) -> None:
        self.cpu = 0.0

    def measure_tree(self, job: Any) -> dict[str, float]:
        return {"processes": 3.0, "cpu_seconds": self.cpu, "rss": 5e6}


class _Job:
    seq = 7
    id = "j"
    started = 100.0

    def __init__(self, machine: Any) -> None:
        self.machine = machine


def test_cpu_percent_is_over_the_last_interval_and_since_the_start_at_first() -> None:
    now = {"mono": 50.0, "wall": 110.0}
    feed = UsageFeed(None, lambda: None, clock=lambda: now["wall"],  # type: ignore[arg-type]
                     monotonic=lambda: now["mono"])  # fmt: skip
    machine = _Machine()
    job = _Job(machine)
    machine.cpu = 5.0  # 5 s of CPU in the 10 s since it started
    assert feed._measure(job) == {"cpu_percent": 50.0, "rss": 5000000, "processes": 3}  # type: ignore[arg-type]
    now["mono"] += 2.0
    machine.cpu = 9.0  # two CPUs busy over the last 2 s
    assert feed._measure(job)["cpu_percent"] == 200.0  # type: ignore[arg-type]
    now["mono"] += 2.0
    machine.cpu = 1.0  # a busy child exited, taking its CPU time with it
    assert feed._measure(job)["cpu_percent"] == 0.0  # type: ignore[arg-type]
    job.machine = None
    assert feed._measure(job)["cpu_percent"] is None  # type: ignore[arg-type]


def test_a_machine_that_does_not_measure_gives_unknown_not_zero() -> None:
    pytest.importorskip("distributed")
    from orcha.service.dask.remote import WorkerMachine

    feed = UsageFeed(None, lambda: None)  # type: ignore[arg-type]
    unknown = {"cpu_percent": None, "rss": None, "processes": None}
    # A Dask worker's machine before the worker's first measure of the petition: {}
    # (never zeros)
    worker = WorkerMachine.__new__(WorkerMachine)
    worker._lock, worker.running = threading.Lock(), {}
    assert worker.measure_tree(SimpleNamespace(token="t")) == {}  # type: ignore[arg-type]
    machine = _Machine()
    machine.measure_tree = lambda job: {}  # type: ignore[method-assign]
    assert feed._measure(_Job(machine)) == unknown  # type: ignore[arg-type]


def test_command_of() -> None:
    argv = ["sh", "-c", "echo 'a b'"]
    assert command_of("shell", {"argv": argv}) == shlex.join(argv)
    assert command_of("hello", {"counter": 3}) == "hello counter=3"
    assert command_of("", None) == "petition"
    assert command_of("shell", {"argv": ["printf", "a\nb"]}) == "printf 'a b'"
    # what 'orcha top' shows can neither drive the terminal nor hold Python's surrogates
    odd = command_of("shell", {"argv": ["sh", "-c", "sleep 9", "\udcff\x1b[2J", "\x1b[2J"]})
    assert odd.encode("utf-8", "backslashreplace") == b"sh -c 'sleep 9' $'\\xff\\x1b[2J' '\\x1b[2J'"
    long = command_of("shell", {"argv": ["x" * 1000]})
    assert len(long) == USAGE_COMMAND_CHARS and long.endswith("…")


def test_a_new_watcher_gets_the_states_and_the_others_do_not_again(h: Harness) -> None:
    # Each 'orcha top' that starts is told where every petition stands; the watchers
    # already there (and webhooks) are not told again.
    h.submit("busy")
    h.gates.wait_started("busy")
    first, top = h.peer(), h.peer()
    h.call("watch", first, ids=[])
    first.expect(event="state", petition="busy")
    h.call("watch", top, ids=[], usage=0.5, output=False)
    top.expect(event="state", petition="busy")
    top.expect(event="usage")
    h.run_to_end("busy")
    first.expect(event="finished", petition="busy")
    assert [f["event"] for f in first.frames] == ["state", "finished"]


def test_a_new_watch_of_the_same_client_replaces_its_old_one(h: Harness) -> None:
    peer = h.peer()
    h.call("watch", peer, ids=[], usage=0.5, output=False)
    assert h.service.events.usage and not h.service.events.wants_output
    h.call("watch", peer, ids=[])  # now a plain watch: output, no usage
    assert not h.service.events.usage and h.service.events.wants_output


def test_a_waiting_petition_carries_its_start_time(h: Harness) -> None:
    # 'orcha top' words "starts at ..." in its own time zone from it (the service's
    # 'why' is in the service's).
    begin = h.clock.now + 3600
    h.submit("later", schedule={"begin": begin})
    watcher = h.peer()
    h.call("watch", watcher, ids=[], usage=0.5, output=False)
    (later,) = watcher.expect(event="usage")["data"]["waiting"]
    assert later["begin"] == begin and later["why"].startswith("starts at ")
