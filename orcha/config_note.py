"""The configuration file as last loaded and validated, noted so that clients need not
parse it again.

A configuration file costs every command that reads it a YAML parser, the schema
checks and what they import: about 50 ms of CPU, several times Python's own start-up.
So :func:`orcha.config.load` notes what it validated in the state directory (file
:data:`FILE_NAME`, private to the user, in ``marshal``'s format: plain data only, no
import needed to read it), keyed by the file's path and what ``stat`` says of it
(device, inode, size, modification and change times: any edit, replacement or ``chmod``
changes them) and of the modules that validate it (a new orcha rewrites them). On a
match, :func:`orcha.config.load` checks again only what lies outside the file: the
secret files it names.
"""

from __future__ import annotations

import marshal
import os

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import Any

#: The note's file, in the state directory.
FILE_NAME = "config-note"
#: The modules whose code decides what a file validates to.
_VALIDATORS = ("config.py", "schema.py", "units.py", "defaults.py")


def key(path: str) -> str | None:
    """What the note of the file at ``path`` must match; None if it cannot be stat'ed."""
    here = os.path.dirname(os.path.abspath(__file__))
    parts = [path]
    try:
        for name in (path, *(os.path.join(here, module) for module in _VALIDATORS)):
            st = os.stat(name)
            parts += map(str, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                               st.st_ctime_ns))  # fmt: skip
    except (OSError, ValueError):
        return None
    return "\t".join(parts)


def _note() -> str:
    from orcha.platform_dirs import note_dir

    return os.path.join(note_dir(), FILE_NAME)


def read(expected: str | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(validated data, data as written) noted under the key ``expected``; None without."""
    if expected is None:
        return None
    try:
        with open(_note(), "rb") as f:
            noted_key, data, raw = marshal.loads(f.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if noted_key != expected or not isinstance(data, dict) or not isinstance(raw, dict):
        return None
    return data, raw


def write(expected: str | None, data: dict[str, Any], raw: dict[str, Any]) -> None:
    """Note a file's ``data`` and ``raw``, loaded from the file whose key was ``expected``
    before it was read (a file changed meanwhile has another key: read again next time)."""
    if expected is None:
        return
    try:
        content = marshal.dumps((expected, data, raw))
    except ValueError:  # not plain data: nothing to note
        return
    from orcha.platform_dirs import write_note

    write_note(_note(), content)
