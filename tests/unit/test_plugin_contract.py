"""The extension contract: defaults of every hook, predicates of both shapes, the names
the original API and earlier releases import."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from orcha.plugins.contract import BasePlugin, Context, Kind
from orcha.plugins.predicates import DEFAULT_REASON, as_predicate, reason_of

PETITION = SimpleNamespace(id="p1", kind="hello", params={}, cwd="/", env={})
MACHINE = SimpleNamespace(name="local")


class OnlyKinds(BasePlugin):
    """A plugin that implements one hook and relies on the defaults for the rest."""

    name = "only-kinds"

    def kinds(self) -> list[Kind]:
        class Echo(Kind):
            name = "echo"

        return [Echo()]


def test_a_plugin_with_only_some_hooks_gets_the_defaults() -> None:
    plugin = OnlyKinds()
    assert [k.name for k in plugin.kinds()] == ["echo"]
    assert plugin.commands() == []
    assert plugin.predicates() == []
    assert plugin.event_sinks() == []
    assert plugin.version() == "unknown"
    assert plugin.health() == (True, {})
    assert plugin.is_argparse is False
    assert plugin.config_schema is None
    plugin.load({})  # the lifecycle hooks do nothing by default, and raise nothing
    plugin.start(SimpleNamespace(name="only-kinds", config={}, log=None, state=None))
    plugin.stop()
    assert plugin.handle(SimpleNamespace()) == 0


def test_a_plugin_with_only_some_hooks_is_discovered_whole() -> None:
    from orcha.plugins.discovery import LoadedPlugin, _collect

    entry = LoadedPlugin("only-kinds", "path x", "only_kinds", plugin=OnlyKinds())
    _collect([entry], frozenset())
    assert entry.error is None
    assert list(entry.kinds) == ["echo"]
    assert (entry.commands, entry.aliases, entry.predicates, entry.sinks) == ({}, {}, [], [])
    assert entry.command_names == []


def test_the_original_and_earlier_import_paths_are_the_contract() -> None:
    import orcha.kinds
    import orcha.plugins
    import orcha.service.context
    from orcha.utils import version

    assert orcha.plugins.BasePlugin is BasePlugin
    assert orcha.kinds.Kind is Kind
    assert orcha.kinds.Context is Context
    assert orcha.service.context.Context is Context  # type hints of earlier plugins
    assert callable(version)


def test_kind_defaults() -> None:
    class Bare(Kind):
        name = "bare"

    class Closing(Bare):
        def close(self, ctx: Context) -> Any:
            return {"closed": True}

    assert Bare().check({"a": 1}) == {"a": 1}
    assert Bare().closable is False and Closing().closable is True
    with pytest.raises(NotImplementedError):
        Bare().run(SimpleNamespace())  # type: ignore[arg-type]


# -- predicates ----------------------------------------------------------------------------


def test_a_bool_predicate_is_adapted_to_the_new_shape_with_a_reason() -> None:
    gate = {"open": False}
    seen: list[Any] = []

    def licence_free(petition: Any) -> bool:
        seen.append(petition)
        return gate["open"]

    predicate = as_predicate(licence_free)
    assert predicate(PETITION, MACHINE) == DEFAULT_REASON
    assert DEFAULT_REASON == "waiting for a plugin's predicate to hold"
    gate["open"] = True
    assert predicate(PETITION, MACHINE) is None
    assert seen == [PETITION, PETITION]  # asked with the petition alone, as it expects
    assert getattr(predicate, "__name__", None) == "licence_free"  # orcha ls names it


def test_a_new_shape_predicate_gets_the_machine_and_gives_its_reason() -> None:
    asked: list[tuple[Any, Any]] = []

    def quiet_hours(petition: Any, machine: Any) -> str | None:
        asked.append((petition, machine))
        return "waiting for quiet hours" if machine.name == "local" else None

    predicate = as_predicate(quiet_hours)
    assert predicate(PETITION, MACHINE) == "waiting for quiet hours"
    assert predicate(PETITION, SimpleNamespace(name="other")) is None
    assert asked[0] == (PETITION, MACHINE)


def test_callable_objects_and_lambdas_of_either_shape() -> None:
    class Limit:
        def __call__(self, petition: Any, machine: Any) -> str | None:
            return "over the limit"

    assert as_predicate(Limit())(PETITION, MACHINE) == "over the limit"
    assert as_predicate(lambda p: False)(PETITION, MACHINE) == DEFAULT_REASON
    assert as_predicate(lambda *_: True)(PETITION, MACHINE) is None


def test_adapting_twice_changes_nothing() -> None:
    predicate = as_predicate(lambda p: True)
    assert as_predicate(predicate) is predicate


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (None, None),
        (True, None),
        (False, DEFAULT_REASON),
        ("", DEFAULT_REASON),
        ("waiting for a licence", "waiting for a licence"),
    ],
)
def test_answers_are_read_leniently(answer: Any, reason: str | None) -> None:
    assert reason_of(answer) == reason


def test_a_predicate_that_raises_propagates() -> None:
    """The scheduler decides what a raising predicate means (not now, logged once)."""

    def boom(petition: Any) -> bool:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        as_predicate(boom)(PETITION, MACHINE)


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (42, "is not callable"),
        (lambda: True, "must take (petition, machine) or (petition)"),
        (lambda a, b, c: True, "must take (petition, machine) or (petition)"),
    ],
    ids=["not-callable", "no-arguments", "three-arguments"],
)
def test_a_predicate_of_neither_shape_is_refused(fn: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        as_predicate(fn)
