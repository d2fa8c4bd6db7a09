"""KindManager: petitions from submit requests and legacy messages; the default predicate."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest

from orcha.errors import ExitCode, InvalidPetitionError, UnknownKindError
from orcha.interfaces import Message, Petition
from orcha.kinds import Kind
from orcha.lib import Manager
from orcha.protocol.messages import SubmitRequest
from orcha.protocol.outputs import OutputQueue
from orcha.service.kinds import KindManager, KindPetition
from orcha_plugins.hello import HelloKind
from orcha_plugins.shell import ShellKind


@pytest.fixture
def manager() -> KindManager:
    return KindManager({"hello": HelloKind(), "shell": ShellKind()})


def request(
    kind: str, params: dict[str, Any], priority: int | None = None, pid: str = "p1"
) -> SubmitRequest:
    return SubmitRequest(kind, pid, params, priority, "/work/dir", {"LANG": "C"})


def test_kinds_are_a_copy(manager: KindManager) -> None:
    kinds = manager.kinds()
    assert set(kinds) == {"hello", "shell"}
    kinds.clear()
    assert set(manager.kinds()) == {"hello", "shell"}


def test_hello_petition(manager: KindManager) -> None:
    queue = OutputQueue()
    petition = manager.petition_from_request(
        request("hello", {"counter": 3, "sleep_time": 1}), queue
    )
    assert isinstance(petition, KindPetition)
    assert isinstance(petition, Petition)
    assert petition.id == "p1"
    assert petition.kind == "hello"
    assert petition.params == {"counter": 3, "sleep_time": 1.0}
    assert isinstance(petition.params["sleep_time"], float)
    assert petition.cwd == "/work/dir"
    assert petition.env == {"LANG": "C"}
    assert petition.queue is queue
    assert petition.priority == 0
    assert callable(petition.action)
    assert petition.condition(petition) is True  # no plugin predicates: resources decide


def test_hello_defaults(manager: KindManager) -> None:
    petition = manager.petition_from_request(request("hello", {}), OutputQueue())
    assert petition.params == {"counter": 1, "sleep_time": 0.0}  # type: ignore[attr-defined]


def test_shell_petition_with_priority(manager: KindManager) -> None:
    petition = manager.petition_from_request(
        request("shell", {"argv": ["echo", "hi"]}, priority=-4), OutputQueue()
    )
    assert petition.kind == "shell"  # type: ignore[attr-defined]
    assert petition.params == {"argv": ["echo", "hi"]}  # type: ignore[attr-defined]
    assert petition.priority == -4


def test_priority_orders_petitions(manager: KindManager) -> None:
    low = manager.petition_from_request(request("hello", {}, 1, "a"), OutputQueue())
    high = manager.petition_from_request(request("hello", {}, 9, "b"), OutputQueue())
    default = manager.petition_from_request(request("hello", {}, None, "c"), OutputQueue())
    assert sorted([high, low, default]) == [default, low, high]


def test_request_params_are_not_mutated(manager: KindManager) -> None:
    params = {"counter": 2, "sleep_time": 3}
    manager.petition_from_request(request("hello", params), OutputQueue())
    assert params == {"counter": 2, "sleep_time": 3}


def test_unknown_kind_lists_known_kinds(manager: KindManager) -> None:
    with pytest.raises(UnknownKindError) as info:
        manager.petition_from_request(request("nope", {}), OutputQueue())
    message = str(info.value)
    assert "'nope'" in message
    assert "hello, shell" in message
    assert info.value.exit_code == ExitCode.UNKNOWN


@pytest.mark.parametrize(
    "params",
    [
        {"counter": -1},
        {"counter": "x"},
        {"counter": 1.5},
        {"counter": True},
        {"counter": None},
        {"sleep_time": math.nan},
        {"sleep_time": math.inf},
        {"sleep_time": -0.5},
        {"sleep_time": "1"},
        {"sleep_time": False},
    ],
)
def test_invalid_hello_params(manager: KindManager, params: dict[str, Any]) -> None:
    with pytest.raises(InvalidPetitionError) as info:
        manager.petition_from_request(request("hello", params), OutputQueue())
    assert next(iter(params)) in str(info.value)
    assert info.value.exit_code == ExitCode.REFUSED


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"argv": []},
        {"argv": "echo hi"},
        {"argv": ("echo",)},
        {"argv": ["echo", 3]},
        {"argv": [""]},
        {"argv": None},
    ],
)
def test_invalid_shell_params(manager: KindManager, params: dict[str, Any]) -> None:
    with pytest.raises(InvalidPetitionError, match="argv"):
        manager.petition_from_request(request("shell", params), OutputQueue())


def test_validator_crash_becomes_invalid_petition() -> None:
    class Broken(Kind):
        name = "broken"

        def validate(self, params: dict[str, Any]) -> dict[str, Any]:
            raise KeyError("oops")

    km = KindManager({"broken": Broken()})
    with pytest.raises(InvalidPetitionError, match=r"'broken'.*oops"):
        km.petition_from_request(request("broken", {}), OutputQueue())


def test_huge_sleep_time_is_invalid_not_a_crash(manager: KindManager) -> None:
    with pytest.raises(InvalidPetitionError):
        manager.petition_from_request(request("hello", {"sleep_time": 10**400}), OutputQueue())


def test_convert_legacy_message_with_kind(manager: KindManager) -> None:
    queue = OutputQueue()
    message = Message(
        id=17,
        extras={
            "kind": "hello",
            "queue": queue,
            "params": {"counter": 2},
            "priority": 5,
            "cwd": "/srv",
            "env": {"A": "b"},
        },
    )
    petition = manager.convert_to_petition(message)
    assert isinstance(petition, KindPetition)
    assert petition.id == "17"
    assert petition.kind == "hello"
    assert petition.params == {"counter": 2, "sleep_time": 0.0}
    assert petition.priority == 5
    assert petition.cwd == "/srv"
    assert petition.env == {"A": "b"}
    assert petition.queue is queue


def test_convert_legacy_message_defaults(manager: KindManager) -> None:
    petition = manager.convert_to_petition(
        Message(
            id="m", extras={"kind": "shell", "queue": OutputQueue(), "params": {"argv": ["true"]}}
        )
    )
    assert petition is not None
    assert petition.priority == 0
    assert (petition.cwd, petition.env) == ("/", {})  # type: ignore[attr-defined]


@pytest.mark.parametrize("extras", [{}, {"kind": "hello"}, {"counter": 3, "sleep_time": 1}])
def test_convert_legacy_message_without_kind_or_queue(
    manager: KindManager, extras: dict[str, Any]
) -> None:
    assert manager.convert_to_petition(Message(id="m", extras=extras)) is None


def test_a_legacy_message_with_a_queue_but_no_kind_is_told_which_service_runs_it(
    manager: KindManager,
) -> None:
    """What a plugin's own client sends (the tutorial's 'orcha hello-world send'):
    refused with the kinds this service has and where such messages go."""
    with pytest.raises(InvalidPetitionError, match="message 'm' names no kind"):
        manager.convert_to_petition(Message(id="m", extras={"queue": OutputQueue()}))


def test_convert_legacy_message_bad_fields_raise(manager: KindManager) -> None:
    with pytest.raises(UnknownKindError):
        manager.convert_to_petition(Message(id="m", extras={"kind": "x", "queue": OutputQueue()}))
    with pytest.raises(ValueError):
        manager.convert_to_petition(
            Message(id="m", extras={"kind": "hello", "queue": OutputQueue(), "cwd": "rel"})
        )


# -- Manager's default predicate ---------------------------------------------------------


def fake_service(running: int = 0, max_running: int | None = None) -> Any:
    return SimpleNamespace(
        scheduler=SimpleNamespace(running_count=running),
        settings=SimpleNamespace(max_running=max_running),
    )


def test_predicate_is_running_below_max_running() -> None:
    mgr = Manager(max_running=2)
    service = fake_service()
    mgr.attach(service)
    seen = []
    for running in range(4):
        service.scheduler.running_count = running
        assert mgr.running_processes == running
        seen.append(mgr.predicate())
    assert seen == [True, True, False, False]
    assert mgr.predicate(object()) is False  # called with the petition as an argument


def test_predicate_without_service() -> None:
    mgr = Manager(max_running=1)
    assert mgr.running_processes == 0
    assert mgr.predicate() is True
    assert Manager(max_running=0).predicate() is False


def test_max_running_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert Manager().max_running == 6
    mgr = Manager()
    mgr.attach(fake_service(max_running=3))
    assert mgr.max_running == 3
    explicit = Manager(max_running=2)
    explicit.attach(fake_service(max_running=3))
    assert explicit.max_running == 2
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert Manager().max_running == 1


def test_kind_manager_condition_is_all_plugin_predicates() -> None:
    seen: list[str] = []
    gate = {"open": False}

    def quiet_hours(petition: Any) -> bool:
        seen.append(petition.id)
        return True

    def licence_free(petition: Any) -> bool:
        return gate["open"]

    manager = KindManager({"hello": HelloKind()}, predicates=[quiet_hours, licence_free])
    petition = manager.petition_from_request(request("hello", {}), OutputQueue())
    # The scheduler asks the predicates (with the first "no"'s reason), not the petition.
    assert petition.condition(petition) is True
    assert manager.why_not(petition) == "waiting for a plugin's predicate to hold"
    gate["open"] = True
    assert manager.why_not(petition) is None  # all hold
    assert seen == [petition.id, petition.id]
    # An original-API message naming a kind carries them as its condition, as before.
    legacy = manager.convert_to_petition(
        Message(id="m", extras={"kind": "hello", "queue": OutputQueue()})
    )
    assert legacy is not None and legacy.condition(legacy) is True
    gate["open"] = False
    assert legacy.condition(legacy) is False


def test_base_manager_defaults() -> None:
    mgr = Manager()
    assert mgr.convert_to_petition(Message(id=1)) is None
    assert mgr.kinds() == {}
    with pytest.raises(UnknownKindError):
        mgr.petition_from_request(request("hello", {}), OutputQueue())
