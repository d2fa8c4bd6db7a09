"""Which plugin commands the fast path may run, without discovering plugins.

Plugin discovery (entry points, imports, click) costs several times a short petition's
latency, so the click application, after discovering, writes down which command names
belong to which plugin and which module declares each (a :class:`orcha.cli.grammar.Command`
it built its click command from; see :func:`orcha.cli.petition_options.command`). The
fast path reads that note. It holds only while what discovery saw is unchanged, so it is
keyed by orcha's version, the disabled plugins, ``ORCHA_PLUGIN_PATH`` and the
modification times of every folder discovery looks in (``sys.path``: installing or
removing a distribution or module changes them; for ``python -m orcha`` that includes the
current directory, so there the note holds only while that directory is unchanged). On
any other key, or a module that no longer declares the command, the fast path leaves the
command line to click, which writes the note afresh.

Cheap to import: no click, typing or re.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from collections.abc import Iterable

    from orcha.cli.grammar import Command

#: The note's file, in the user's state directory (private; per ORCHA_STATE_DIR).
FILE_NAME = "fast-commands"


def path() -> str:
    from orcha import defaults, settings

    state_dir = os.environ.get(defaults.ENV_STATE_DIR) or settings._platform_dir("state")
    return os.path.join(state_dir, FILE_NAME)


def key(disabled: Iterable[str]) -> str:
    """What discovery's result depends on, as one line."""
    from orcha import __version__

    plugin_path = os.environ.get("ORCHA_PLUGIN_PATH", "")
    parts = [__version__, ",".join(sorted(disabled)), plugin_path]
    for folder in [*sys.path, *(f for f in plugin_path.split(os.pathsep) if f)]:
        try:
            parts.append(f"{folder}={os.stat(folder or '.').st_mtime_ns}")
        except (OSError, ValueError):
            parts.append(f"{folder}=-")
    return "\t".join(parts).replace("\n", "\\n")


def read(disabled: Iterable[str]) -> dict[str, tuple[str, str, str]] | None:
    """command name -> (plugin, module, declared name); None if there is no note for
    what discovery would see now."""
    try:
        with open(path(), encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, ValueError):
        return None
    if lines[0] != key(disabled):
        return None
    table: dict[str, tuple[str, str, str]] = {}
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) == 4:
            table[fields[0]] = (fields[1], fields[2], fields[3])
    return table


def write(note_key: str, entries: Iterable[tuple[str, str, str, str]]) -> None:
    """Write the note (``note_key``, then command, plugin, module, declared name per
    line) unless it already says that; quietly nothing if the state directory is
    missing or not writable (the fast path then just stays off)."""
    save(path(), "\n".join([note_key, *("\t".join(entry) for entry in sorted(entries))]))


def save(target: str, text: str) -> None:
    """Write ``text`` to ``target`` (atomically) unless it already holds it; quietly
    nothing if its folder is missing or not writable."""
    try:
        with open(target, encoding="utf-8") as f:
            if f.read() == text:
                return
    except (OSError, ValueError):
        pass
    temporary = f"{target}.{os.getpid()}"
    try:
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, target)
    except (OSError, ValueError):
        try:
            os.unlink(temporary)
        except OSError:
            pass


def declared(module: str, name: str) -> Command | None:
    """The command ``name`` as ``module`` declares it; None if it does not (any more)."""
    from orcha.cli.grammar import Command

    try:
        __import__(module)
        found = vars(sys.modules[module]).values()
    except Exception:
        return None
    for value in found:
        if isinstance(value, Command) and value.name == name and value.module == module:
            return value
    return None


def disabled_plugins(config: object = None) -> frozenset[str]:
    """The plugins ``ORCHA_DISABLE_PLUGINS`` and the configuration (an
    :class:`orcha.config.Config`, if any) disable: the click application and the fast
    path both go by this."""
    names = {n.strip() for n in os.environ.get("ORCHA_DISABLE_PLUGINS", "").split(",")}
    if config is not None:
        plugins = config.data["plugins"]  # type: ignore[attr-defined]
        names |= {n for n in plugins if not config.plugin_enabled(n)}  # type: ignore[attr-defined]
    names.discard("")
    return frozenset(names)
