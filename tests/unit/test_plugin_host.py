"""PluginHost: plugins' service-side hooks (load, start, stop, health) run in order, each
within a time limit, their failures contained and reported by health()."""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from orcha.plugins import BasePlugin
from orcha.service.plugin_host import PluginHost, PluginService

LIMIT = 0.2  # hook and health time limits in these tests
SLOW = 5.0  # far more than LIMIT: what a blocked hook would take if the host waited for it


class Recorder(BasePlugin):
    """Records every hook call in a list shared by all plugins of a test."""

    def __init__(self, name: str, calls: list[tuple[str, str, Any]]) -> None:
        self.name = name
        self.calls = calls

    def load(self, config: dict[str, Any]) -> None:
        self.calls.append((self.name, "load", config))

    def start(self, service: Any) -> None:
        self.calls.append((self.name, "start", service))

    def stop(self) -> None:
        self.calls.append((self.name, "stop", None))


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """What blocked hooks wait for; set at the end of the test so no thread is left."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def calls() -> list[tuple[str, str, Any]]:
    return []


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# -- start -----------------------------------------------------------------------------------
def test_start_loads_then_starts_each_plugin_in_order(calls: list[tuple[str, str, Any]]) -> None:
    host = PluginHost(
        {"a": Recorder("a", calls), "b": Recorder("b", calls)},
        {"a": {"x": 1}},
        hook_timeout=LIMIT,
    )
    host.start()
    assert [(name, hook) for name, hook, _ in calls] == [
        ("a", "load"), ("a", "start"), ("b", "load"), ("b", "start"),
    ]  # fmt: skip
    assert calls[0][2] == {"x": 1}
    assert calls[2][2] == {}  # no settings given: an empty dict
    service = calls[1][2]
    assert isinstance(service, PluginService)
    assert (service.name, service.config) == ("a", {"x": 1})
    assert service.log.name == "orcha.plugin.a"
    assert service.state is None  # no store given
    assert calls[3][2].name == "b"
    assert host.failed == {}


def test_a_load_that_raises_marks_the_plugin_failed_and_skips_its_start(
    calls: list[tuple[str, str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Recorder):
        def load(self, config: dict[str, Any]) -> None:
            super().load(config)
            raise RuntimeError("no database")

    host = PluginHost({"a": Broken("a", calls), "b": Recorder("b", calls)}, {}, hook_timeout=LIMIT)
    with caplog.at_level(logging.ERROR, logger="orcha.service.plugins"):
        host.start()
    assert [(n, h) for n, h, _ in calls] == [("a", "load"), ("b", "load"), ("b", "start")]
    assert host.failed == {"a": "load failed: RuntimeError: no database"}
    assert errors(caplog) == [
        "plugin a: load failed: RuntimeError: no database; the service goes on"
    ]


def test_a_start_that_raises_marks_the_plugin_failed(calls: list[tuple[str, str, Any]]) -> None:
    class Broken(Recorder):
        def start(self, service: Any) -> None:
            raise ValueError("bad port")

    host = PluginHost({"a": Broken("a", calls), "b": Recorder("b", calls)}, {}, LIMIT)
    host.start()
    assert host.failed == {"a": "start failed: ValueError: bad port"}
    assert ("b", "start") in [(n, h) for n, h, _ in calls]


def test_a_hook_that_blocks_is_given_up_on_and_the_host_goes_on(
    calls: list[tuple[str, str, Any]], gate: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    class Blocking(Recorder):
        def start(self, service: Any) -> None:
            gate.wait(SLOW)
            calls.append((self.name, "start returned", None))

    host = PluginHost({"a": Blocking("a", calls), "b": Recorder("b", calls)}, {}, LIMIT)
    began = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="orcha.service.plugins"):
        host.start()
    took = time.monotonic() - began
    assert LIMIT <= took < LIMIT + 1.0, took
    assert [(n, h) for n, h, _ in calls] == [("a", "load"), ("b", "load"), ("b", "start")]
    assert host.failed == {"a": "start did not return within 0.2s"}
    assert errors(caplog) == ["plugin a: start did not return within 0.2s; the service goes on"]
    gate.set()  # the abandoned hook ends now, in its own thread


def test_a_load_that_blocks_skips_the_start(
    calls: list[tuple[str, str, Any]], gate: threading.Event
) -> None:
    class Blocking(Recorder):
        def load(self, config: dict[str, Any]) -> None:
            gate.wait(SLOW)

    host = PluginHost({"a": Blocking("a", calls)}, {}, LIMIT)
    host.start()
    assert calls == []
    assert host.failed == {"a": "load did not return within 0.2s"}


@pytest.mark.parametrize("code", [0, 3, "bye"])
def test_a_hook_calling_sys_exit_is_contained(calls: list[tuple[str, str, Any]], code: Any) -> None:
    class Exiting(Recorder):
        def load(self, config: dict[str, Any]) -> None:
            sys.exit(code)

    host = PluginHost({"a": Exiting("a", calls), "b": Recorder("b", calls)}, {}, LIMIT)
    host.start()  # does not raise SystemExit
    assert host.failed == {"a": f"load failed: SystemExit: {code}"}
    assert [(n, h) for n, h, _ in calls] == [("b", "load"), ("b", "start")]


def test_the_default_hooks_of_base_plugin_do_nothing() -> None:
    class Plain(BasePlugin):
        name = "plain"

    host = PluginHost({"plain": Plain()}, {"plain": {}}, LIMIT, LIMIT)
    host.start()
    host.stop()
    assert host.failed == {}
    assert host.health() == {"plain": {"healthy": True, "details": {}}}


# -- stop ------------------------------------------------------------------------------------
def test_stop_runs_in_reverse_order_and_contains_errors(
    calls: list[tuple[str, str, Any]], gate: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    class Raising(Recorder):
        def stop(self) -> None:
            super().stop()
            raise OSError("disk gone")

    class Exiting(Recorder):
        def stop(self) -> None:
            super().stop()
            sys.exit(1)

    class Blocking(Recorder):
        def stop(self) -> None:
            super().stop()
            gate.wait(SLOW)

    plugins = {
        "a": Recorder("a", calls),
        "b": Raising("b", calls),
        "c": Exiting("c", calls),
        "d": Blocking("d", calls),
    }
    host = PluginHost(plugins, {}, LIMIT)
    with caplog.at_level(logging.ERROR, logger="orcha.service.plugins"):
        host.stop()
    assert [n for n, h, _ in calls if h == "stop"] == ["d", "c", "b", "a"]
    assert errors(caplog) == [
        "plugin d: stop did not return within 0.2s; the service goes on",
        "plugin c: stop failed: SystemExit: 1; the service goes on",
        "plugin b: stop failed: OSError: disk gone; the service goes on",
    ]
    assert host.failed == {}  # stop problems are logged, not reported as failed plugins


# -- health ----------------------------------------------------------------------------------
class Health(BasePlugin):
    def __init__(self, name: str, answer: Any) -> None:
        self.name = name
        self.answer = answer

    def health(self) -> Any:
        if isinstance(self.answer, BaseException):
            raise self.answer
        if callable(self.answer):
            return self.answer()
        return self.answer


def health_of(answer: Any) -> dict[str, Any]:
    host = PluginHost({"p": Health("p", answer)}, {}, LIMIT, LIMIT)
    result: dict[str, Any] = host.health()["p"]
    return result


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            (True, {"queue": 3, "ok": ["x"]}),
            {"healthy": True, "details": {"queue": 3, "ok": ["x"]}},
        ),
        ((False, {"why": "no disk"}), {"healthy": False, "details": {"why": "no disk"}}),
        (True, {"healthy": True, "details": {}}),
        (False, {"healthy": False, "details": {}}),
        ((1, {}), {"healthy": True, "details": {}}),
        (
            None,
            {
                "healthy": False,
                "details": {"error": "health() returned None (NoneType), not (healthy, details)"},
            },
        ),
        (
            "junk",
            {
                "healthy": False,
                "details": {"error": "health() returned 'junk' (str), not (healthy, details)"},
            },
        ),
        (
            (True, {}, 3),
            {
                "healthy": False,
                "details": {
                    "error": "health() returned (True, {}, 3) (tuple), not (healthy, details)"
                },
            },
        ),
    ],
)
def test_health_answers(answer: Any, expected: dict[str, Any]) -> None:
    assert health_of(answer) == expected


def test_an_unhealthy_answer_with_text_details_is_unhealthy() -> None:
    assert health_of((False, "disk full"))["healthy"] is False


def test_health_details_that_are_not_json_are_shown_as_text() -> None:
    result = health_of((True, {"since": object, "n": {1, 2}}))
    assert result["healthy"] is True
    assert list(result["details"]) == ["details"]
    text = result["details"]["details"]
    assert isinstance(text, str) and "'since'" in text and "{1, 2}" in text


@pytest.mark.parametrize("error", [RuntimeError("db down"), SystemExit(4)])
def test_a_health_check_that_raises_is_unhealthy(error: BaseException) -> None:
    assert health_of(error) == {
        "healthy": False,
        "details": {"error": f"{type(error).__name__}: {error}"},
    }


def test_a_slow_health_check_is_unhealthy(gate: threading.Event) -> None:
    began = time.monotonic()
    result = health_of(lambda: gate.wait(SLOW) and (True, {}))
    assert time.monotonic() - began < LIMIT + 1.0
    assert result == {
        "healthy": False,
        "details": {"error": "health check did not answer within 0.2s"},
    }


def test_health_checks_run_at_the_same_time() -> None:
    def slowish() -> tuple[bool, dict[str, Any]]:
        time.sleep(LIMIT / 2)
        return True, {}

    plugins = {f"p{i}": Health(f"p{i}", slowish) for i in range(8)}
    began = time.monotonic()
    result = PluginHost(plugins, {}, LIMIT, LIMIT).health()
    assert time.monotonic() - began < LIMIT * 2.5  # not 8 x LIMIT/2 one after the other
    assert all(r["healthy"] for r in result.values())


def test_hung_health_checks_do_not_add_up(gate: threading.Event) -> None:
    plugins = {f"p{i}": Health(f"p{i}", lambda: gate.wait(SLOW)) for i in range(4)}
    began = time.monotonic()
    result = PluginHost(plugins, {}, LIMIT, LIMIT).health()
    took = time.monotonic() - began
    assert not any(r["healthy"] for r in result.values())
    assert took < LIMIT * 2, f"{took:.2f}s for 4 hung checks with a {LIMIT}s limit"


def test_a_hung_health_check_is_not_started_again_while_it_runs(gate: threading.Event) -> None:
    started: list[int] = []
    lock = threading.Lock()

    def hangs() -> bool:
        with lock:
            started.append(threading.get_ident())
        return gate.wait(SLOW)

    host = PluginHost(
        {"hung": Health("hung", hangs), "fine": Health("fine", True)}, {}, LIMIT, LIMIT
    )
    threads = threading.active_count()
    first = host.health()
    assert first["hung"]["details"] == {"error": "health check did not answer within 0.2s"}
    for _ in range(20):
        result = host.health()
        assert result["fine"] == {"healthy": True, "details": {}}  # checked every time
        assert result["hung"]["healthy"] is False
        assert re.fullmatch(
            r"its health check has not returned for \d+s", result["hung"]["details"]["error"]
        ), result
    assert len(started) == 1  # one check in flight, not one per call
    # At most the hung check's thread (and a finished check still exiting) are left.
    assert threading.active_count() <= threads + 2
    gate.set()
    deadline = time.monotonic() + SLOW
    while time.monotonic() < deadline:  # once it has returned, the next call checks again
        if host.health()["hung"]["healthy"]:
            break
    assert host.health()["hung"] == {"healthy": True, "details": {}}
    assert len(started) >= 2


def test_a_plugin_whose_start_failed_is_unhealthy_with_that_error(
    calls: list[tuple[str, str, Any]],
) -> None:
    class FailsToStart(Recorder):
        def start(self, service: Any) -> None:
            raise RuntimeError("port 80 taken")

        def health(self) -> tuple[bool, dict[str, Any]]:
            return True, {"looks": "fine"}  # what it says does not matter any more

    host = PluginHost({"a": FailsToStart("a", calls), "b": Recorder("b", calls)}, {}, LIMIT, LIMIT)
    host.start()
    assert host.health() == {
        "a": {"healthy": False, "details": {"error": "start failed: RuntimeError: port 80 taken"}},
        "b": {"healthy": True, "details": {}},
    }


def test_a_plugin_whose_load_timed_out_is_unhealthy(
    calls: list[tuple[str, str, Any]], gate: threading.Event
) -> None:
    class Blocking(Recorder):
        def load(self, config: dict[str, Any]) -> None:
            gate.wait(SLOW)

    host = PluginHost({"a": Blocking("a", calls)}, {}, LIMIT, LIMIT)
    host.start()
    assert host.health() == {
        "a": {"healthy": False, "details": {"error": "load did not return within 0.2s"}}
    }


def test_health_of_no_plugins() -> None:
    assert PluginHost({}, {}).health() == {}


# -- load_plugins: the service loads its own plugins -----------------------------------------


def _config(plugins: dict[str, Any]) -> Any:
    from orcha.config import Config

    return Config("/etc/orcha.yaml", True, {"plugins": plugins})


class Supplier(BasePlugin):
    """A plugin with a kind, a predicate and an event sink."""

    def __init__(self, name: str) -> None:
        self.name = name

    def kinds(self) -> list[Any]:
        from orcha.kinds import Kind

        return [type(f"K{self.name}", (Kind,), {"name": f"{self.name}-kind"})()]

    def predicates(self) -> list[Any]:
        return [lambda petition: True]

    def event_sinks(self) -> list[Any]:
        return [print]


class NeedsSettings(Supplier):
    config_schema = {
        "type": "object",
        "properties": {"token": {"type": "string"}},
        "required": ["token"],
    }


def _entries(*plugins: BasePlugin, errors: dict[str, str] | None = None) -> list[Any]:
    from orcha.plugins.discovery import LoadedPlugin, _collect

    entries = [LoadedPlugin(p.name, "path x", p.name, plugin=p) for p in plugins]
    for name, error in (errors or {}).items():
        entries.append(LoadedPlugin(name, "path x", name, error=error))
    _collect(entries, frozenset())
    return entries


def test_load_plugins_gathers_what_the_loaded_plugins_supply() -> None:
    from orcha.service.plugin_host import load_plugins

    entries = _entries(
        Supplier("a"), NeedsSettings("b"), Supplier("c"),
        errors={"broken": "ImportError: needs libfoo", "off": "disabled"},
    )  # fmt: skip
    host = load_plugins(_config({}), entries=entries)
    assert list(host.plugins) == ["a", "c"]
    assert list(host.kinds) == ["a-kind", "c-kind"]
    assert len(host.predicates) == 2
    assert [(name, sink) for name, sink in host.sinks] == [("a", print), ("c", print)]
    assert host.not_loaded == {
        "b": "needs settings in /etc/orcha.yaml: plugins.b.config.token: is required",
        "broken": "ImportError: needs libfoo",
    }  # a disabled plugin is left out silently
    assert host.settings == {"a": {}, "c": {}}


def test_load_plugins_names_a_plugin_the_file_names_but_nobody_installed() -> None:
    from orcha.service.plugin_host import load_plugins

    host = load_plugins(_config({"greet": {"enabled": False}}), entries=_entries(Supplier("a")))
    assert list(host.plugins) == ["a"]
    assert host.not_loaded == {
        "greet": "no installed plugin is named 'greet' (installed: a); its settings in "
        "/etc/orcha.yaml are ignored"
    }


def test_load_plugins_gives_each_its_settings() -> None:
    from orcha.service.plugin_host import load_plugins

    config = _config({"b": {"enabled": True, "config": {"token": "s3cret"}}})
    host = load_plugins(config, entries=_entries(NeedsSettings("b")))
    assert list(host.plugins) == ["b"] and host.not_loaded == {}
    assert host.settings["b"] == {"token": "s3cret"}


def test_load_plugins_discovers_and_disables_by_env_and_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orcha.service.plugin_host import load_plugins

    monkeypatch.delenv("ORCHA_PLUGIN_PATH", raising=False)
    monkeypatch.setenv("ORCHA_DISABLE_PLUGINS", "hello")
    host = load_plugins(_config({"shell": {"enabled": False}}))
    assert "hello" not in host.plugins and "shell" not in host.plugins
    assert not {"hello", "shell"} & set(host.kinds)
    monkeypatch.delenv("ORCHA_DISABLE_PLUGINS")
    host = load_plugins(_config({}))
    assert {"hello", "shell"} <= set(host.plugins)
    assert {"hello", "shell"} <= set(host.kinds)
