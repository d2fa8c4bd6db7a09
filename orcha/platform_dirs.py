"""platformdirs' answers for orcha's state and runtime directories, without importing it
on every command.

Every client needs both directories (the key and the fast path's note live in the state
directory, the socket in the runtime directory) unless ``ORCHA_STATE_DIR`` and
``ORCHA_RUNTIME_DIR`` name them; importing platformdirs (with tempfile, shutil, pathlib,
re...) and asking it costs a client about 35 ms of CPU, several times Python's own
start-up. So:

- The state directory is worked out here on Linux where every platformdirs release gives
  the same answer (``$XDG_STATE_HOME/orcha`` for an absolute ``XDG_STATE_HOME``, else
  ``$HOME/.local/state/orcha`` for an absolute ``HOME``); platformdirs answers otherwise.
- The runtime directory depends on the file system and on platformdirs' release
  (``XDG_RUNTIME_DIR`` when it is a private directory, else a platform default or a
  temporary fallback), so platformdirs always decides it; its answer is remembered in
  the state directory (file :data:`FILE_NAME`, private like the directory), keyed by
  what it depends on in this process: the effective user, ``XDG_RUNTIME_DIR``,
  ``HOME`` and the modification times of the folders Python imports from (installing
  another platformdirs changes them). Every process that asks platformdirs writes the
  note, the service too when it starts, so clients follow the service's answer.
"""

from __future__ import annotations

import os
import sys

from orcha import defaults

#: The note of platformdirs' runtime directory, in the state directory.
FILE_NAME = "runtime-dir"


def _from_platformdirs(kind: str) -> str:
    import warnings

    import platformdirs

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to /tmp;
        # that fallback is private to the user, so the warning is noise for our users.
        warnings.simplefilter("ignore")
        if kind == "runtime":
            return platformdirs.user_runtime_dir(defaults.APP_NAME)
        return platformdirs.user_state_dir(defaults.APP_NAME)


def _simple_state_dir() -> str | None:
    """The state directory where every platformdirs release agrees on it; None elsewhere."""
    if not sys.platform.startswith("linux") or "ANDROID_DATA" in os.environ:
        return None
    xdg = os.environ.get("XDG_STATE_HOME", "")
    if xdg:  # releases differ on relative or padded values: platformdirs decides those
        if xdg.startswith("/") and xdg == xdg.strip():
            return os.path.join(xdg, defaults.APP_NAME)
        return None
    home = os.environ.get("HOME", "")
    if not home.startswith("/"):
        return None
    return os.path.join(os.path.expanduser("~/.local/state"), defaults.APP_NAME)


def state_dir() -> str:
    """platformdirs' ``user_state_dir`` for orcha."""
    return _simple_state_dir() or _from_platformdirs("state")


def _key() -> str:
    """What platformdirs' runtime directory depends on in this process, as one line."""
    parts = [str(os.geteuid()), os.environ.get("XDG_RUNTIME_DIR", "-"), os.environ.get("HOME", "-")]
    for folder in sys.path[1:]:  # the first is the script's folder (or the current one)
        try:
            parts.append(f"{folder}={os.stat(folder or '.').st_mtime_ns}")
        except (OSError, ValueError):
            parts.append(f"{folder}=-")
    return "\t".join(parts).replace("\n", "\\n")


def runtime_dir(folder: str | None = None) -> str:
    """platformdirs' ``user_runtime_dir`` for orcha: as noted in ``folder`` (default:
    :func:`note_dir`), if the note is for this process's circumstances; else
    platformdirs' answer, noted there if the folder exists."""
    note = os.path.join(folder or note_dir(), FILE_NAME)
    key = _key()
    try:
        with open(note, encoding="utf-8") as f:
            noted_key, _, noted = f.read().partition("\n")
        if noted_key == key and noted.startswith("/"):
            return noted
    except (OSError, ValueError):
        pass
    found = _from_platformdirs("runtime")
    write_note(note, f"{key}\n{found}".encode())
    return found


def note_dir() -> str:
    """Where orcha keeps its notes: the state directory (``ORCHA_STATE_DIR`` if set)."""
    return os.environ.get(defaults.ENV_STATE_DIR) or state_dir()


def write_note(path: str, content: bytes) -> None:
    """Write ``path`` whole, private to the user (another process reads either the old
    or the new note); quietly nothing where it cannot (no state directory yet,
    read-only)."""
    temporary = f"{path}.{os.getpid()}"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
