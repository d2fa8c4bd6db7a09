"""The original Orcha API types: the tutorial's Petition subclass pattern and Message."""

from __future__ import annotations

import queue
import random
from dataclasses import dataclass, field, fields
from typing import Any

import pytest

from orcha.interfaces import Message, Petition, ServiceWrapper
from orcha.lib import Manager
from orcha.protocol.outputs import OutputQueue
from orcha.service.job import Job


def _action(cb: Any, p: Any) -> None:
    pass


def _condition(p: Any) -> bool:
    return True


@dataclass(order=True)
class HWPetition(Petition):
    """Exactly as the tutorial writes it."""

    counter: int = field(compare=False)
    sleep_time: float = field(compare=False)

    def __post_init__(self):  # type: ignore[no-untyped-def]
        self.priority = int(self.counter * self.sleep_time)


class ListQueue:
    """A queue stub that records what is put into it."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.calls: list[tuple[Any, ...]] = []

    def put(self, item: Any, *args: Any) -> None:
        self.items.append(item)
        self.calls.append((item, *args))


def hw(
    pid: int | str = "hw", counter: int = 1, sleep_time: float = 0.0, q: Any = None
) -> HWPetition:
    return HWPetition(
        id=pid,
        queue=q if q is not None else ListQueue(),
        action=_action,
        condition=_condition,
        counter=counter,
        sleep_time=sleep_time,
    )


def test_tutorial_petition_constructs_from_keywords() -> None:
    q = ListQueue()
    p = HWPetition(id=3, queue=q, action=_action, condition=_condition, counter=4, sleep_time=0.5)
    assert p.id == 3
    assert p.queue is q
    assert p.action is _action
    assert p.condition is _condition
    assert (p.counter, p.sleep_time) == (4, 0.5)
    assert p.priority == 2
    assert p.cancelled is False


def test_priority_is_not_an_init_argument() -> None:
    with pytest.raises(TypeError):
        HWPetition(
            priority=1,
            id=1,
            queue=None,
            action=_action,
            condition=_condition,  # type: ignore[call-arg]
            counter=1,
            sleep_time=1.0,
        )
    init_names = [f.name for f in fields(HWPetition) if f.init]
    assert init_names == ["id", "queue", "action", "condition", "counter", "sleep_time"]


def test_base_petition_priority_defaults_to_zero() -> None:
    p = Petition(id="x", queue=ListQueue(), action=_action, condition=_condition)
    assert p.priority == 0


def test_petitions_sort_by_priority_only() -> None:
    specs = [(10, 1.0), (1, 0.5), (3, 3.0), (0, 9.0), (7, 1.0)]
    petitions = [hw(f"p{i}", c, t) for i, (c, t) in enumerate(specs)]
    random.Random(7).shuffle(petitions)
    ordered = sorted(petitions)
    assert [p.priority for p in ordered] == [0, 0, 7, 9, 10]
    assert hw("a", 2, 1.0) < hw("b", 3, 1.0)
    assert hw("a", 5, 1.0) > hw("b", 3, 1.0)
    # compare=False fields play no part: same priority, different everything else
    assert hw("a", 2, 2.0) == hw("b", 4, 1.0)
    assert not hw("a", 2, 2.0) < hw("b", 4, 1.0)


def test_sorted_keeps_arrival_order_for_equal_priorities() -> None:
    petitions = [hw(f"p{i}", 1, 1.0) for i in range(10)]
    assert [p.id for p in sorted(petitions)] == [f"p{i}" for i in range(10)]


def test_communicate_puts_into_queue_in_order() -> None:
    q = ListQueue()
    p = hw(q=q)
    p.communicate("Hello world! 0\n")
    p.communicate(b"raw", blocking=False)
    assert q.items == ["Hello world! 0\n", b"raw"]
    assert q.calls == [("Hello world! 0\n", True), (b"raw", False)]


def test_communicate_with_output_queue() -> None:
    q = OutputQueue()
    try:
        p = hw(q=q)
        for i in range(3):
            p.communicate(f"line {i}")
        assert q.drain() == ["line 0", "line 1", "line 2"]
    finally:
        q.close()


@pytest.mark.parametrize("ret", [None, 0, 3])
def test_finish_without_service_puts_ret(ret: int | None) -> None:
    q: queue.Queue[Any] = queue.Queue()
    p = hw(q=q)
    p.communicate("out")
    p.finish(ret)
    assert q.get_nowait() == "out"
    assert q.get_nowait() == ret
    assert q.empty()


def test_finish_default_is_none() -> None:
    q = ListQueue()
    hw(q=q).finish()
    assert q.items == [None]


def test_finish_inside_service_goes_through_the_job() -> None:
    q = ListQueue()
    p = hw(q=q)
    job = Job(p, native=False, token_prefix="t")
    p.finish(4)
    p.finish(5)  # only the first end counts
    assert job.finish_was_called
    assert job.code == 4
    assert q.items == [4]


def test_cancelled_reflects_the_job() -> None:
    p = hw()
    assert p.cancelled is False
    job = Job(p, native=True, token_prefix="t")
    assert p.cancelled is False
    assert job.request_cancel("stop", by_client=True)
    assert p.cancelled is True


def test_message_defaults() -> None:
    a, b = Message(id=1), Message(id="two")
    assert a.id == 1 and b.id == "two"
    assert a.extras == {} and b.extras == {}
    a.extras["k"] = "v"
    assert b.extras == {}  # not a shared default
    assert Message(id=1, extras={"k": "v"}) == a


def test_message_is_mutable() -> None:
    m = Message(id=1)
    m.id = 2  # FrozenInstanceError if it were frozen
    m.extras["queue"] = "q"
    assert m == Message(id=2, extras={"queue": "q"})


def test_service_wrapper_holds_manager() -> None:
    mgr = Manager(max_running=1)
    assert ServiceWrapper(mgr).manager is mgr
