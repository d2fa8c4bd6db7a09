"""KindRegistry: built-in, plugin and runtime kinds looked up in one place, by name, and
the "unknown kind" error listing what exists; KindManager over it; the service's plugins
loaded by load_plugins."""

from __future__ import annotations

from typing import Any

import pytest

from orcha.errors import ExitCode, PetitionError, UnknownKindError
from orcha.kinds import Kind
from orcha.lib import Manager
from orcha.protocol.messages import SubmitRequest
from orcha.protocol.outputs import OutputQueue
from orcha.protocol.schedule import Schedule
from orcha.service.kinds import KindManager, KindRegistry, RuntimeKinds, templates_of
from orcha_plugins.hello import HelloKind
from orcha_plugins.shell import ShellKind


class Greet(Kind):
    """A third-party plugin's kind."""

    name = "greet"
    schema = {
        "type": "object",
        "properties": {"who": {"type": "string", "default": "world"}},
        "additionalProperties": False,
    }


class FakeStore:
    """Stands in for the service's Store: one dict of values per service."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], Any] = {}

    def get_value(self, service: str, key: str, default: Any) -> Any:
        return self.values.get((service, key), default)

    def set_value(self, service: str, key: str, value: Any) -> None:
        self.values[(service, key)] = value


def request(kind: str, params: dict[str, Any] | None = None, **schedule: Any) -> SubmitRequest:
    return SubmitRequest(
        kind, "p1", params or {}, None, "/", {},
        schedule=Schedule.from_wire(schedule) if schedule else None,
    )  # fmt: skip


@pytest.fixture
def registry() -> KindRegistry:
    """Built-in kinds (shell, hello) and a plugin's (greet), one template over shell."""
    reg = KindRegistry([HelloKind(), ShellKind(), Greet()], service="svc")
    reg.templates.add("build", "shell", {"argv": ["make"], "cpus": 2})
    return reg


def test_built_in_plugin_and_runtime_kinds_in_one_place(registry: KindRegistry) -> None:
    assert registry.names() == ["build", "greet", "hello", "shell"]
    assert isinstance(registry.get("shell"), ShellKind)  # built in
    assert isinstance(registry.get("greet"), Greet)  # a plugin's
    assert isinstance(registry.get("build"), ShellKind)  # a template runs as its parent
    assert set(registry.kinds()) == {"greet", "hello", "shell"}
    assert registry.plugin_kind("build") is None


def test_unknown_kind_lists_every_kind(registry: KindRegistry) -> None:
    with pytest.raises(UnknownKindError) as info:
        registry.get("nope")
    assert str(info.value) == (
        "the service has no petition kind 'nope' (it has: build, greet, hello, shell); "
        "install the plugin that provides it and restart 'orcha serve'"
    )
    assert info.value.exit_code == ExitCode.UNKNOWN
    with pytest.raises(UnknownKindError, match="it has: build, greet, hello, shell"):
        registry.resolve(request("nope"))


def test_an_empty_registry_says_none() -> None:
    with pytest.raises(UnknownKindError, match=r"\(it has: none\)"):
        KindRegistry().get("shell")


def test_resolve_a_template_gives_its_parent_and_merged_settings(
    registry: KindRegistry,
) -> None:
    resolved, kind = registry.resolve(request("build", {"argv": ["make", "test"]}))
    assert isinstance(kind, ShellKind)
    assert resolved.kind == "shell"
    assert resolved.params["argv"] == ["make", "test"]  # the submission's own wins
    assert resolved.schedule is not None and resolved.schedule.cpus == 2
    plain, kind = registry.resolve(request("greet"))
    assert plain.kind == "greet" and isinstance(kind, Greet)


def test_a_template_whose_parent_is_gone_is_hidden_and_refused() -> None:
    shared = KindRegistry([ShellKind()], service="svc")
    store = FakeStore()
    shared.templates.load(store)  # type: ignore[arg-type]
    shared.templates.add("build", "shell", {"argv": ["make"]})
    without_shell = KindRegistry([HelloKind()], service="svc")
    without_shell.templates.load(store)  # type: ignore[arg-type]  # the next start
    assert without_shell.names() == ["hello"]
    assert without_shell.templates.listing()[0]["available"] is False
    with pytest.raises(UnknownKindError, match="it has: hello"):
        without_shell.get("build")
    with pytest.raises(PetitionError, match="template of 'shell'"):
        without_shell.resolve(request("build"))


def test_a_plugin_kind_name_cannot_become_a_template(registry: KindRegistry) -> None:
    with pytest.raises(PetitionError, match="provided by a plugin"):
        registry.templates.add("greet", "shell", {"argv": ["true"]})


def test_kind_manager_uses_the_registry(registry: KindRegistry) -> None:
    manager = KindManager(registry)
    assert manager.registry is registry
    petition: Any = manager.petition_from_request(request("greet"), OutputQueue())
    assert (petition.kind, petition.params) == ("greet", {"who": "world"})
    # Templates are resolved before a petition is built; their name alone is not a kind.
    with pytest.raises(UnknownKindError, match="it has: build, greet, hello, shell"):
        manager.petition_from_request(request("build"), OutputQueue())


def test_kind_manager_asks_predicates_in_order_for_a_reason() -> None:
    asked: list[str] = []

    def licence(petition: Any, machine: Any) -> str | None:
        asked.append("licence")
        return "waiting for a licence" if machine == "busy" else None

    def legacy(petition: Any) -> bool:
        asked.append("legacy")
        return False

    manager = KindManager({"hello": HelloKind()}, predicates=[licence, legacy])
    petition = manager.petition_from_request(request("hello"), OutputQueue())
    assert manager.why_not(petition, "busy") == "waiting for a licence"
    assert asked == ["licence"]  # the first "no" decides
    assert manager.why_not(petition, "free") == "waiting for a plugin's predicate to hold"
    assert petition.condition(petition) is True  # the scheduler asks the predicates
    assert KindManager({"hello": HelloKind()}).why_not(petition) is None


def test_templates_of_a_kind_manager_are_its_registrys() -> None:
    manager = KindManager({"shell": ShellKind()})
    templates = templates_of(manager, "addr")
    assert templates is manager.registry.templates
    assert templates.service == "addr"
    other = templates_of(Manager(), "addr")  # the original API's manager: none of its own
    assert isinstance(other, RuntimeKinds) and other.listing() == []
