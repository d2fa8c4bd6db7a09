"""PluginHost: the service's plugins, and their service-side hooks run contained.

:func:`load_plugins` is how a service gets its plugins: it discovers them itself
(:mod:`orcha.plugins.discovery`), leaves out those disabled or short of settings, and
returns the host with what the rest supply (kinds, predicates, event sinks).

Every hook runs in a thread of its own with a time limit: a plugin that raises, blocks or
calls ``sys.exit`` is logged and the service goes on. A plugin whose ``load`` or ``start``
fails is marked failed (``orcha health`` says so); its kinds keep being served, since a
kind may not depend on its plugin's hooks.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orcha.defaults import HEALTH_TIMEOUT, PLUGIN_HOOK_TIMEOUT, PREDICATE_STUCK_SECONDS
from orcha.service.plugin_state import PluginState

if TYPE_CHECKING:
    from orcha.config import Config
    from orcha.plugins.contract import EventSink, Kind, PluginServiceSpec, Predicate
    from orcha.plugins.discovery import LoadedPlugin
    from orcha.service.store import Store

log = logging.getLogger("orcha.service.plugins")


def load_plugins(
    config: Config,
    disabled: frozenset[str] | None = None,
    entries: list[LoadedPlugin] | None = None,
) -> PluginHost:
    """The plugins of a service configured by ``config``, in a host.

    ``disabled``: names not to load (default: ``ORCHA_DISABLE_PLUGINS`` plus those the
    file marks ``enabled: false``); ``entries``: what an earlier discovery in this
    process found, instead of discovering again. A plugin that is broken, in conflict, or
    lacks settings it requires is left out and named in ``not_loaded`` with the reason.
    ConfigError if the file's settings for a plugin are invalid.
    """
    from orcha.config import check_plugins
    from orcha.plugins.discovery import disabled_from_env, discover, plugins_by_name

    if entries is None:
        if disabled is None:
            disabled = disabled_from_env() | {
                name for name in config.data["plugins"] if not config.plugin_enabled(name)
            }
        entries = discover(disabled)
    by_name = plugins_by_name(entries)
    settings, unconfigured = check_plugins(config, by_name)
    host = PluginHost({}, settings)
    for name, reason in unconfigured.items():
        if name not in by_name:  # the file names it, nobody installed it
            host.not_loaded[name] = reason
    for entry in entries:
        why = entry.error or unconfigured.get(entry.name)
        if why is not None or entry.plugin is None:
            if why != "disabled":
                host.not_loaded[entry.name] = why or "not loaded"
            continue
        host.plugins[entry.name] = entry.plugin
        host.kinds.update(entry.kinds)
        host.owners.update(dict.fromkeys(entry.kinds, entry.name))
        host.predicates.extend(entry.predicates)
        host.predicate_owners.extend((entry.name, p) for p in entry.predicates)
        host.sinks.extend((entry.name, sink) for sink in entry.sinks)
    return host


class PluginService:
    """What a plugin's ``start`` hook receives: its name, settings, logger and state
    (a :class:`~orcha.service.plugin_state.PluginState`, None without a store); the
    contract is :class:`orcha.plugins.contract.PluginServiceSpec`."""

    def __init__(self, name: str, config: dict[str, Any], state: PluginState | None = None):
        self.name = name
        self.config = config
        self.log = logging.getLogger(f"orcha.plugin.{name}")
        self.state = state


class _Outcome:
    def __init__(self) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.started = time.monotonic()


def call_with_timeout(fn: Callable[[], Any], timeout: float, name: str) -> _Outcome:
    """Run ``fn`` in a daemon thread; wait up to ``timeout`` s. ``done`` says if it ended."""
    outcome = _Outcome()

    def run() -> None:
        try:
            outcome.value = fn()
        except BaseException as e:  # a plugin's SystemExit is contained too
            outcome.error = e
        finally:
            outcome.done.set()

    threading.Thread(target=run, name=name, daemon=True).start()
    outcome.done.wait(timeout)
    return outcome


class PluginHost:
    """The loaded plugins of a service, in discovery order."""

    def __init__(
        self,
        plugins: dict[str, Any],
        settings: dict[str, dict[str, Any]],
        hook_timeout: float = PLUGIN_HOOK_TIMEOUT,
        health_timeout: float = HEALTH_TIMEOUT,
    ) -> None:
        self.plugins = dict(plugins)  # name -> plugin object
        self.settings = settings
        self.failed: dict[str, str] = {}  # name -> what went wrong in load/start
        # What load_plugins found besides the plugins (empty for a host built directly).
        self.kinds: dict[str, Kind] = {}
        self.predicates: list[Predicate] = []
        self.sinks: list[tuple[str, EventSink]] = []  # (plugin name, sink)
        self.not_loaded: dict[str, str] = {}  # name -> why (disabled ones are not here)
        self.owners: dict[str, str] = {}  # kind name -> the plugin that provides it
        self.predicate_owners: list[tuple[str, Predicate]] = []  # (plugin name, predicate)
        # Plugin name -> how many of its kinds' actions ignored a stop, were abandoned and
        # have not returned (orcha.service.runner): each makes it unhealthy.
        self._abandoned: dict[str, int] = {}
        # The same for actions of no plugin's kind (an original-API manager's petitions).
        self._abandoned_elsewhere = 0
        self.hook_timeout = hook_timeout
        self.health_timeout = health_timeout
        # Each plugin's last health check, kept while it runs: one in flight per plugin,
        # so a check that never returns costs one thread, not one per 'orcha health'.
        self._checks: dict[str, _Outcome] = {}
        self._checks_lock = threading.Lock()

    def _hook(self, name: str, hook: str, fn: Callable[[], Any]) -> bool:
        outcome = call_with_timeout(fn, self.hook_timeout, f"plugin-{name}-{hook}")
        if not outcome.done.is_set():
            why = f"{hook} did not return within {self.hook_timeout:g}s"
        elif outcome.error is not None:
            e = outcome.error
            why = f"{hook} failed: {type(e).__name__}: {e}"
        else:
            return True
        log.error("plugin %s: %s; the service goes on", name, why)
        if hook in ("load", "start"):
            self.failed.setdefault(name, why)
        return False

    def start(self, store: Store | None = None) -> None:
        """``load`` then ``start`` of every plugin, in order; each gets its namespace of
        ``store`` as its state."""
        for name, plugin in self.plugins.items():
            config = self.settings.get(name, {})
            if self._hook(name, "load", functools.partial(plugin.load, config)):
                state = PluginState(store, name) if store is not None else None
                service: PluginServiceSpec = PluginService(name, config, state)
                self._hook(name, "start", functools.partial(plugin.start, service))

    def stop(self) -> None:
        """``stop`` of every plugin, in reverse order."""
        for name, plugin in reversed(list(self.plugins.items())):
            self._hook(name, "stop", plugin.stop)

    def owner_of(self, kind: str) -> str | None:
        """The name of the plugin that provides ``kind`` (None: no plugin's)."""
        return self.owners.get(kind)

    def action_abandoned(self, kind: str, n: int) -> None:
        """``n`` (1, or -1 when it returns after all) actions of ``kind`` that ignored a
        stop run on abandoned in the service: counted against the plugin that provides
        ``kind``, or (no plugin's: the original API's) by :meth:`abandoned_elsewhere`."""
        owner = self.owners.get(kind)
        with self._checks_lock:
            if owner is None:
                self._abandoned_elsewhere = max(0, self._abandoned_elsewhere + n)
                return
            left = self._abandoned.get(owner, 0) + n
            if left > 0:
                self._abandoned[owner] = left
            else:
                self._abandoned.pop(owner, None)

    def abandoned_elsewhere(self) -> str | None:
        """How many abandoned actions of no plugin's kind still run, in words (None:
        none): 'orcha health' says so and counts the service unhealthy meanwhile."""
        with self._checks_lock:
            n = self._abandoned_elsewhere
        return _abandoned_words(n) if n else None

    def health(self) -> dict[str, dict[str, Any]]:
        """Each plugin's health check, run with a time limit and its errors caught.

        At most one check per plugin is in flight: while the previous one has not
        returned, the plugin is reported unhealthy without starting another. A plugin
        whose ``load`` or ``start`` failed is reported as such, its check not run."""
        with self._checks_lock:
            checks: dict[str, _Outcome] = {}
            stuck: dict[str, float] = {}  # name -> for how long its check has been running
            for name, plugin in self.plugins.items():
                if name in self.failed:
                    continue
                previous = self._checks.get(name)
                if previous is not None and not previous.done.is_set():
                    stuck[name] = time.monotonic() - previous.started
                    continue
                # All started at once: one slow plugin does not add up with others.
                checks[name] = self._checks[name] = call_with_timeout(
                    plugin.health, 0, f"plugin-{name}-health"
                )
        deadline = time.monotonic() + self.health_timeout  # one limit for all of them
        out: dict[str, dict[str, Any]] = {}
        for name in self.plugins:
            if name in self.failed:
                out[name] = {"healthy": False, "details": {"error": self.failed[name]}}
                continue
            if name in stuck:
                why = f"its health check has not returned for {stuck[name]:.0f}s"
                out[name] = {"healthy": False, "details": {"error": why}}
                continue
            outcome = checks[name]
            outcome.done.wait(max(0.0, deadline - time.monotonic()))
            if not outcome.done.is_set():
                why = f"health check did not answer within {self.health_timeout:g}s"
                out[name] = {"healthy": False, "details": {"error": why}}
            elif outcome.error is not None:
                e = outcome.error
                out[name] = {"healthy": False, "details": {"error": f"{type(e).__name__}: {e}"}}
            else:
                out[name] = _health_result(outcome.value)
        self._stuck_predicates(out)
        with self._checks_lock:
            abandoned = dict(self._abandoned)
        for name, n in abandoned.items():
            if name in out:
                details = {**out[name]["details"], "abandoned": _abandoned_words(n)}
                out[name] = {"healthy": False, "details": details}
        return out

    def _stuck_predicates(self, out: dict[str, dict[str, Any]]) -> None:
        """Mark in ``out`` the plugins with a predicate asked for more than
        PREDICATE_STUCK_SECONDS: the scheduler's lock is held meanwhile (no petition
        starts; submissions and 'status' wait)."""
        now = time.monotonic()
        for name, predicate in self.predicate_owners:
            since = getattr(predicate, "since", None)
            if name in out and since is not None and now - since > PREDICATE_STUCK_SECONDS:
                why = (
                    f"predicate {getattr(predicate, '__name__', predicate)} has not returned "
                    f"for {now - since:.0f}s; the scheduler waits for it (no petition "
                    "starts; submissions and 'status' wait)"
                )
                out[name] = {"healthy": False, "details": {**out[name]["details"], "stuck": why}}


def _abandoned_words(n: int) -> str:
    if n == 1:
        return "1 action that ignored its cancel still runs"
    return f"{n} actions that ignored their cancel still run"


def _health_result(value: Any) -> dict[str, Any]:
    """A plugin's ``health()`` answer as {"healthy": bool, "details": {...}}: a pair
    ``(healthy, details)``, or a bare bool. Anything else is the plugin's error: unhealthy,
    saying what it returned."""
    if isinstance(value, tuple) and len(value) == 2:
        healthy, details = value
        if not isinstance(details, dict):
            details = {"details": details}
    elif isinstance(value, bool):
        healthy, details = value, {}
    else:
        # A string or None is no answer: counting it as healthy (or as unhealthy with
        # nothing said) would hide a broken check.
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        why = f"health() returned {shown} ({type(value).__name__}), not (healthy, details)"
        return {"healthy": False, "details": {"error": why}}
    import json

    try:
        json.dumps(details)
    except (TypeError, ValueError):
        details = {"details": repr(details)}
    return {"healthy": bool(healthy), "details": details}
