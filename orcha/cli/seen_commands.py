"""The commands each plugin had when it was last loaded, so that those of a disabled one
(which is not imported) can still be told apart from a mistyped command.

The click application, after discovering, writes down the command names and aliases of
every plugin it loaded, one line per plugin, keyed by where discovery found it (its
entry point or module); a plugin it did not load (disabled, broken) keeps its last line.
:meth:`orcha.cli.app.OrchaGroup` reads it when a command is unknown: a disabled plugin
is said to "may provide it" only if it had that command, or was never seen loaded here.
"""

from __future__ import annotations

import os
from typing import Any

#: The note's file, in the user's state directory (beside orcha.cli.fast_commands's).
FILE_NAME = "plugin-commands"


def path() -> str:
    from orcha.cli import fast_commands

    return os.path.join(os.path.dirname(fast_commands.path()), FILE_NAME)


def key(entry: Any) -> str:
    """Where discovery found ``entry`` (a LoadedPlugin), the same before its import and
    after: its name may change on import, this does not."""
    return f"{entry.origin} {entry.module}".replace("\t", " ").replace("\n", " ")


def read() -> dict[str, list[str]]:
    """key -> the plugin's command names and aliases when last loaded."""
    try:
        with open(path(), encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, ValueError):
        return {}
    return {fields[0]: fields[1:] for fields in (line.split("\t") for line in lines) if fields[0]}


def remember(entries: list[Any]) -> None:
    """Note the commands of every loaded plugin of ``entries``, keeping what the note says
    of the others; quietly nothing if the state directory cannot be written."""
    from orcha.cli import fast_commands

    seen = read()
    for entry in entries:
        if entry.plugin is not None:
            seen[key(entry)] = sorted({*entry.commands, *entry.aliases})
    text = "\n".join("\t".join([k, *names]) for k, names in sorted(seen.items()))
    fast_commands.save(path(), text)
