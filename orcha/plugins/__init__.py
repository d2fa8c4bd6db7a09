"""Plugins: how petition kinds and CLI commands get into orcha.

A plugin is a :class:`BasePlugin` subclass found in one of three ways, in this order:

1. the ``orcha.plugins`` entry-point group (orcha's own plugins in ``orcha_plugins``
   register there too), the entry point naming the class or a module with ``plugin``;
2. a top-level module named ``orcha_*`` with a ``plugin`` attribute, as in the original
   Orcha tutorial;
3. for development, every module (``NAME.py``) or package (``NAME/__init__.py``) with a
   ``plugin`` attribute in the folders of ``ORCHA_PLUGIN_PATH`` (separated by ``:``).

``ORCHA_DISABLE_PLUGINS=a,b`` (or ``enabled: false`` in the configuration file) blocks
plugins by name: one whose entry point or module has that name is not even imported.

A plugin either supplies click commands (:meth:`BasePlugin.commands`) or, like the
tutorial's, an argparse parser (:meth:`BasePlugin.create_parser` and
:meth:`BasePlugin.handle`), which orcha bridges into a command named after the plugin.
It may also supply petition kinds (:meth:`BasePlugin.kinds`) that ``orcha serve`` runs.

A plugin that fails to import, or claims a name another plugin has, is listed by
``orcha ls`` with its error and left out; everything else keeps working.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import click

    from orcha.kinds import Kind

__all__ = ["ENTRY_POINT_GROUP", "BasePlugin", "LoadedPlugin", "discover"]

log = logging.getLogger("orcha.plugins")

#: The entry-point group plugins register in.
ENTRY_POINT_GROUP = "orcha.plugins"

#: Folders (separated by os.pathsep) whose modules and packages are plugins too.
ENV_PLUGIN_PATH = "ORCHA_PLUGIN_PATH"

#: Top-level packages whose plugins ship with orcha (marked ``*`` by ``orcha ls``).
EMBEDDED_PACKAGES = frozenset({"orcha", "orcha_plugins"})

#: Command names orcha itself provides; no plugin may take them.
CORE_COMMANDS = frozenset({"serve", "ls", "status", "cancel", "clean", "wait", "logs", "follow",
                           "watch", "group", "pause", "resume", "describe", "health",
                           "config", "state", "kinds", "completion"})  # fmt: skip


class BasePlugin:
    """Base class of orcha plugins.

    Contract (names as in the original Orcha):

    * ``name``: the plugin's name; for argparse plugins also the command's name;
    * ``aliases``: other names for that command; ``help``: one line for ``--help``;
    * ``create_parser(parser)``: add arguments/subparsers to an ``argparse`` parser;
      ``handle(namespace)``: run the command, returning the exit code;
    * ``version()``: the line ``orcha ls`` prints, e.g. ``"my-plugin - 1.0.0"``;
    * ``commands()``: click commands added to ``orcha`` (instead of create_parser);
    * ``kinds()``: petition kinds (:class:`orcha.kinds.Kind`) served by ``orcha serve``;
    * ``predicates()``: callables ``predicate(petition) -> bool`` that every petition of
      an orcha kind must satisfy to start, besides its resource requests (all must hold;
      one that raises counts as "not now" and is logged once). They run in the service,
      under its scheduler's lock, so they must be quick and must not block.

    Service-side lifecycle (``orcha serve`` calls these in its own process, each within a
    time limit; an exception or a hook that overruns is logged and the service goes on):

    * ``config_schema``: the schema (:mod:`orcha.schema`) of the plugin's settings in
      the configuration file (``plugins: {NAME: {config: ...}}``), with defaults;
    * ``load(config)``: the validated settings, defaults filled in, once at start;
    * ``start(service)``: the service is about to accept clients; ``service`` is a
      :class:`orcha.service.plugin_host.PluginService` (logger, the plugin's state);
    * ``stop()``: the service is stopping (plugins are stopped in reverse order);
    * ``health()``: ``(healthy, details)`` for ``orcha health``; must be quick.
    """

    name: str = ""
    aliases: tuple[str, ...] = ()
    help: str = ""

    def create_parser(self, parser: argparse.ArgumentParser) -> None:
        """Add this plugin's arguments to ``parser`` (argparse plugins only)."""

    def handle(self, namespace: argparse.Namespace) -> int:
        """Run the command parsed by :meth:`create_parser`; return its exit code."""
        return 0

    @staticmethod
    def version() -> str:
        return "unknown"

    def commands(self) -> list[click.Command]:
        return []

    def kinds(self) -> list[Kind]:
        return []

    def predicates(self) -> list[Callable[[Any], bool]]:
        return []

    def event_sinks(self) -> list[Callable[[dict[str, Any]], None]]:
        """Callables the service hands every event envelope to (state changes, custom
        events; output and progress too), in a delivery thread of their own: a slow or
        failing sink delays and harms nothing else."""
        return []

    config_schema: dict[str, Any] | None = None

    def load(self, config: dict[str, Any]) -> None:
        """Receive the plugin's validated settings (service side)."""

    def start(self, service: Any) -> None:
        """The service is about to accept clients."""

    def stop(self) -> None:
        """The service is stopping."""

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the plugin works, with details for people (``orcha health``)."""
        return True, {}

    @property
    def is_argparse(self) -> bool:
        """Whether the plugin brings an argparse CLI (it overrides create_parser)."""
        return type(self).create_parser is not BasePlugin.create_parser


@dataclass
class LoadedPlugin:
    """What discovery found: the plugin, or why it could not be used."""

    name: str
    origin: str  # e.g. "entry point hello" or "module orcha_hello_world"
    module: str
    plugin: BasePlugin | None = None
    error: str | None = None
    commands: dict[str, Any] = field(default_factory=dict)  # name -> click.Command
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> command name
    kinds: dict[str, Kind] = field(default_factory=dict)
    predicates: list[Callable[[Any], bool]] = field(default_factory=list)
    sinks: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)

    @property
    def embedded(self) -> bool:
        return self.module.split(".")[0] in EMBEDDED_PACKAGES

    @property
    def version(self) -> str:
        if self.plugin is None:
            return "unknown"
        try:
            return str(self.plugin.version())
        except Exception as e:
            return f"unknown ({type(e).__name__}: {e})"

    @property
    def display(self) -> str:
        """``name - version`` as the tutorial prints it, ``*`` after embedded names."""
        line = self.version
        if " - " not in line:
            line = f"{self.name} - {line}"  # a bare version, or none: still name the plugin
        if self.embedded:
            head, _, tail = line.partition(" - ")
            return f"{head}* - {tail}"
        return line


def _instantiate(obj: Any) -> BasePlugin:
    """Accept a plugin class, a plugin instance, or a module exporting ``plugin``."""
    import types

    if isinstance(obj, types.ModuleType):
        if not hasattr(obj, "plugin"):
            raise TypeError(f"module {obj.__name__} has no 'plugin' attribute")
        obj = obj.plugin
    if isinstance(obj, type):
        obj = obj()
    if not isinstance(obj, BasePlugin):
        raise TypeError(f"{obj!r} is not a subclass of orcha.plugins.BasePlugin")
    if not isinstance(obj.name, str) or not obj.name:
        raise TypeError(f"plugin {type(obj).__name__} has no name")
    return obj


def _entry_points() -> list[Any]:
    from importlib import metadata

    eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    # Embedded plugins first, then by name, so conflicts resolve the same way every time.
    return sorted(eps, key=lambda ep: (ep.value.split(".")[0] not in EMBEDDED_PACKAGES, ep.name))


def _legacy_modules(seen: set[str]) -> list[str]:
    import pkgutil

    names = {
        m.name
        for m in pkgutil.iter_modules()
        if m.name.startswith("orcha_") and m.name not in EMBEDDED_PACKAGES
    }
    return sorted(names - seen)


def discover(disabled: frozenset[str] = frozenset()) -> list[LoadedPlugin]:
    """Find, import and check every plugin. Never raises for a plugin's fault."""
    import functools
    import importlib

    found: list[LoadedPlugin] = []
    seen_modules: set[str] = set()
    for ep in _entry_points():
        module = ep.value.split(":")[0]
        seen_modules.add(module.split(".")[0])
        entry = LoadedPlugin(name=ep.name, origin=f"entry point {ep.name}", module=module)
        found.append(_load(entry, ep.load, disabled))
    for module in _legacy_modules(seen_modules):
        seen_modules.add(module)
        entry = LoadedPlugin(name=module, origin=f"module {module}", module=module)
        found.append(_load(entry, functools.partial(importlib.import_module, module), disabled))
    for folder, name, location in _path_modules(seen_modules):
        entry = LoadedPlugin(name=name, origin=f"path {folder}", module=name)
        found.append(_load(entry, functools.partial(_import_file, name, location), disabled))
    _collect(found, disabled)
    return found


def _load(entry: LoadedPlugin, load: Callable[[], Any], disabled: frozenset[str]) -> LoadedPlugin:
    """Import and instantiate the plugin of ``entry`` unless its name is disabled; its
    error recorded otherwise."""
    if entry.name in disabled or entry.module in disabled:
        entry.error = "disabled"
        return entry
    try:
        entry.plugin = _instantiate(load())
        entry.name = entry.plugin.name
    except BaseException as e:  # a plugin's SystemExit must not end orcha either
        if isinstance(e, KeyboardInterrupt):
            raise
        entry.error = f"{type(e).__name__}: {e}"
    return entry


def _path_modules(seen: set[str]) -> list[tuple[str, str, str]]:
    """(folder, module name, file) of every module or package in ORCHA_PLUGIN_PATH."""
    import os

    out: list[tuple[str, str, str]] = []
    for folder in os.environ.get(ENV_PLUGIN_PATH, "").split(os.pathsep):
        if not folder or not os.path.isdir(folder):
            continue
        folder = os.path.abspath(folder)
        for item in sorted(os.listdir(folder)):
            name, ext = os.path.splitext(item)
            path = os.path.join(folder, item)
            if item.startswith((".", "_")) or not name.isidentifier() or name in seen:
                continue
            if ext == ".py" and os.path.isfile(path):
                out.append((folder, name, path))
            elif not ext and os.path.isfile(os.path.join(path, "__init__.py")):
                out.append((folder, name, os.path.join(path, "__init__.py")))
            else:
                continue
            seen.add(name)
    return out


def _import_file(name: str, location: str) -> Any:
    """Import module ``name`` from ``location`` (a package's __init__.py or a module);
    its folder joins sys.path so it can import its own siblings."""
    import importlib.util
    import os
    import sys

    if name in sys.modules:
        raise ImportError(f"a module named {name!r} is already imported; rename the plugin")
    package = os.path.basename(location) == "__init__.py"
    spec = importlib.util.spec_from_file_location(
        name, location,
        submodule_search_locations=[os.path.dirname(location)] if package else None,
    )  # fmt: skip
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {location}")
    folder = os.path.dirname(os.path.dirname(location)) if package else os.path.dirname(location)
    if folder not in sys.path:
        sys.path.append(folder)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _collect(found: list[LoadedPlugin], disabled: frozenset[str]) -> None:
    """Gather commands and kinds; a later plugin claiming a taken name gets an error."""
    owners: dict[str, str] = {name: "orcha" for name in CORE_COMMANDS}
    kind_owners: dict[str, str] = {}
    for entry in found:
        plugin = entry.plugin
        if plugin is None:
            continue
        if entry.name in disabled:  # a plugin whose own name differs from its module's
            entry.error = "disabled"
            entry.plugin = None
            continue
        try:
            commands, aliases = _commands_of(plugin)
            kinds = {k.name: k for k in plugin.kinds()}
            predicates = list(plugin.predicates())
            sinks = list(plugin.event_sinks())
            for hook in predicates + sinks:
                if not callable(hook):
                    raise TypeError(f"{hook!r} (a predicate or event sink) is not callable")
            for kind in kinds.values():
                if kind.schema is not None:
                    from orcha.schema import check_schema

                    check_schema(kind.schema, f"the schema of kind {kind.name}")
        except Exception as e:
            entry.error = f"{type(e).__name__}: {e}"
            entry.plugin = None
            continue
        clash = [n for n in list(commands) + list(aliases) if n in owners]
        clash_kinds = [k for k in kinds if k in kind_owners]
        if clash or clash_kinds:
            what = [f"command {n!r} (already provided by {owners[n]})" for n in clash]
            what += [f"kind {k!r} (already provided by {kind_owners[k]})" for k in clash_kinds]
            entry.error = f"conflict: plugin {entry.name} claims " + ", ".join(what)
            entry.plugin = None
            continue
        for name in list(commands) + list(aliases):
            owners[name] = entry.name
        for name in kinds:
            kind_owners[name] = entry.name
        entry.commands, entry.aliases, entry.kinds = commands, aliases, kinds
        entry.predicates = predicates
        entry.sinks = sinks


def _commands_of(plugin: BasePlugin) -> tuple[dict[str, Any], dict[str, str]]:
    commands: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    if plugin.is_argparse:
        from orcha.cli.bridge import bridge

        commands[plugin.name] = bridge(plugin)
        for alias in plugin.aliases:
            aliases[alias] = plugin.name
    for command in plugin.commands():
        if not command.name:
            raise TypeError(f"plugin {plugin.name} supplies a command without a name")
        commands[command.name] = command
    return commands, aliases
