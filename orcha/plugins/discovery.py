"""Plugin discovery: finding, importing and checking the installed plugins.

A plugin is a :class:`~orcha.plugins.contract.BasePlugin` subclass found in one of three
ways, in this order:

1. the ``orcha.plugins`` entry-point group (orcha's own plugins in ``orcha_plugins``
   register there too), the entry point naming the class or a module with ``plugin``;
2. a top-level module named ``orcha_*`` with a ``plugin`` attribute, as in the original
   Orcha tutorial;
3. for development, every module (``NAME.py``) or package (``NAME/__init__.py``) with a
   ``plugin`` attribute in the folders of ``ORCHA_PLUGIN_PATH`` (separated by ``:``).

``ORCHA_DISABLE_PLUGINS=a,b`` (or ``enabled: false`` in the configuration file) blocks
plugins by name: one whose entry point or module has that name is not even imported.

A plugin that fails to import, or claims a plugin, command or kind name another plugin
has, is listed with its error and left out; everything else keeps working. Discovery imports
neither the CLI nor the service: the CLI builds commands from what it finds
(:func:`orcha.cli.bridge.discover`), the service its kinds and hooks
(:func:`orcha.service.plugin_host.load_plugins`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orcha.plugins.contract import BasePlugin, EventSink, Kind, Predicate
from orcha.plugins.predicates import as_predicate

__all__ = [
    "CORE_COMMANDS",
    "ENTRY_POINT_GROUP",
    "ENV_DISABLE_PLUGINS",
    "ENV_PLUGIN_PATH",
    "LoadedPlugin",
    "disabled_from_env",
    "discover",
    "plugins_by_name",
]

#: The entry-point group plugins register in.
ENTRY_POINT_GROUP = "orcha.plugins"

#: Folders (separated by os.pathsep) whose modules and packages are plugins too.
ENV_PLUGIN_PATH = "ORCHA_PLUGIN_PATH"

#: Plugin names (separated by commas) not to load.
ENV_DISABLE_PLUGINS = "ORCHA_DISABLE_PLUGINS"

#: Top-level packages whose plugins ship with orcha (marked ``*`` by ``orcha ls``).
EMBEDDED_PACKAGES = frozenset({"orcha", "orcha_plugins"})

#: Command names orcha itself provides; no plugin may take them.
CORE_COMMANDS = frozenset({"serve", "ls", "status", "cancel", "clean", "wait", "logs", "follow",
                           "watch", "group", "pause", "resume", "describe", "health",
                           "config", "state", "kinds", "completion"})  # fmt: skip


@dataclass
class LoadedPlugin:
    """What discovery found: the plugin and what it supplies, or why it cannot be used.

    ``commands`` maps command names to the command objects the plugin's ``commands()``
    hook gave; an argparse plugin's command (named after it) is added by the CLI, which
    bridges it (:func:`orcha.cli.bridge.discover`). ``command_names`` lists both.
    """

    name: str
    origin: str  # e.g. "entry point hello" or "module orcha_hello_world"
    module: str
    plugin: BasePlugin | None = None
    error: str | None = None
    commands: dict[str, Any] = field(default_factory=dict)  # name -> click.Command
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> command name
    kinds: dict[str, Kind] = field(default_factory=dict)
    predicates: list[Predicate] = field(default_factory=list)  # adapted to one shape
    sinks: list[EventSink] = field(default_factory=list)

    @property
    def embedded(self) -> bool:
        return self.module.split(".")[0] in EMBEDDED_PACKAGES

    @property
    def command_names(self) -> list[str]:
        """The names of the plugin's commands (its argparse command first), no aliases."""
        names = [self.plugin.name] if self.plugin is not None and self.plugin.is_argparse else []
        return names + [n for n in self.commands if n not in names]

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


def disabled_from_env() -> frozenset[str]:
    """The plugin names ``ORCHA_DISABLE_PLUGINS`` lists."""
    import os

    text = os.environ.get(ENV_DISABLE_PLUGINS, "")
    return frozenset(n.strip() for n in text.split(",") if n.strip())


def discover(disabled: frozenset[str] = frozenset()) -> list[LoadedPlugin]:
    """Find, import and check every plugin, in discovery order. Never raises for a
    plugin's fault: a broken, conflicting or disabled plugin has ``error`` set and
    ``plugin`` None."""
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


def plugins_by_name(entries: list[LoadedPlugin]) -> dict[str, BasePlugin | None]:
    """Each plugin name ``entries`` have, and its plugin (None if none of that name is
    loaded): of two plugins of one name, the one discovery kept."""
    out: dict[str, BasePlugin | None] = {}
    for entry in entries:
        if out.get(entry.name) is None:
            out[entry.name] = entry.plugin
    return out


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
        module = sys.modules[name]
        if getattr(module, "__file__", None) == location:
            return module  # imported by an earlier discovery in this process
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
    """Ask each plugin what it supplies; a later plugin claiming a taken name gets an
    error. Command names are checked here (not only in the CLI) so that the service
    leaves out the same plugins ``orcha ls`` reports."""
    owners: dict[str, str] = {name: "orcha" for name in CORE_COMMANDS}
    kind_owners: dict[str, str] = {}
    # A plugin's name is its key everywhere (the configuration file, its state, health):
    # two of one name would share (and overwrite) them.
    named: dict[str, LoadedPlugin] = {}
    for entry in found:
        plugin = entry.plugin
        if plugin is None:
            continue
        if entry.name in disabled:  # a plugin whose own name differs from its module's
            entry.error = "disabled"
            entry.plugin = None
            continue
        first = named.get(entry.name)
        if first is not None:
            entry.error = (
                f"conflict: plugin {entry.name} of module {entry.module} claims the name "
                f"{entry.name!r} (already taken by module {first.module}, {first.origin})"
            )
            entry.plugin = None
            continue
        try:
            commands, aliases = _commands_of(plugin)
            kinds = _kinds_of(plugin)
            predicates = [as_predicate(p) for p in plugin.predicates()]
            sinks = list(plugin.event_sinks())
            for sink in sinks:
                if not callable(sink):
                    raise TypeError(f"{sink!r} (an event sink) is not callable")
        except Exception as e:
            entry.error = f"{type(e).__name__}: {e}"
            entry.plugin = None
            continue
        names = ([plugin.name] if plugin.is_argparse else []) + list(commands) + list(aliases)
        clash = [n for n in names if n in owners]
        clash_kinds = [k for k in kinds if k in kind_owners]
        if clash or clash_kinds:
            what = [f"command {n!r} (already provided by {owners[n]})" for n in clash]
            what += [f"kind {k!r} (already provided by {kind_owners[k]})" for k in clash_kinds]
            entry.error = f"conflict: plugin {entry.name} claims " + ", ".join(what)
            entry.plugin = None
            continue
        named[entry.name] = entry
        for name in names:
            owners[name] = entry.name
        for name in kinds:
            kind_owners[name] = entry.name
        entry.commands, entry.aliases, entry.kinds = commands, aliases, kinds
        entry.predicates = predicates
        entry.sinks = sinks


def _commands_of(plugin: BasePlugin) -> tuple[dict[str, Any], dict[str, str]]:
    """The plugin's own command objects by name, and its aliases (argparse plugins)."""
    commands: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    if plugin.is_argparse:
        for alias in plugin.aliases:
            aliases[alias] = plugin.name
    for command in plugin.commands():
        name = getattr(command, "name", None)
        if not name:
            raise TypeError(f"plugin {plugin.name} supplies a command without a name")
        commands[name] = command
    return commands, aliases


def _kinds_of(plugin: BasePlugin) -> dict[str, Kind]:
    kinds: dict[str, Kind] = {}
    for kind in plugin.kinds():
        if not isinstance(getattr(kind, "name", None), str) or not kind.name:
            raise TypeError(f"plugin {plugin.name} supplies a kind without a name: {kind!r}")
        if kind.schema is not None:
            from orcha.schema import check_schema

            check_schema(kind.schema, f"the schema of kind {kind.name}")
        kinds[kind.name] = kind
    return kinds
