"""Starting a petition's process born in its cgroup, without a shell, from the service
itself: :class:`NativeProcess`, a ``subprocess.Popen`` whose child is created by
``clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP)`` (the compiled module
``orcha/service/_clone3.c``).

Why: a process is born in its parent's cgroup, and Python cannot make the one call that
creates it elsewhere. So, without this module, each petition's process first ran
``/bin/sh`` to move itself into its cgroup and then exec'd the command (about 1.4 ms of
shell start, cgroup move and second exec on a freed slot's path, and the move waits for
an RCU grace period after a quiet moment), or was started by the spawner process
(:mod:`orcha.service.spawner`, a hand-off and a copy of a Python process per start).
Here the child is born in the cgroup and execs the command at once: a plain
``Popen`` costs as much.

The child is what ``Popen(start_new_session=True, close_fds=True,
restore_signals=True)`` makes: a new session; fds 0-2 and no other; signal handlers
back to their defaults (SIGPIPE and SIGXFSZ too); the caller's signal mask. A command
that cannot be executed, or a working directory that cannot be entered, raises the
OSError Popen raises (same type, errno and filename).

:func:`usable` tells whether the module was built and works here (Linux on x86_64; the
build is optional: without a C compiler orcha installs without it). A kernel or sandbox
that refuses ``clone3`` raises :class:`CloneRefused` on the first spawn, before anything
ran: the caller then starts processes as before, and does not try again.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping, Sequence
from typing import Any

from orcha.service.popens import StartedPopen

try:
    from orcha.service import _clone3
except ImportError:  # not built here (no C compiler at install time)
    _clone3 = None  # type: ignore[assignment]

#: The errnos of a ``clone3`` that this kernel or sandbox will never allow (seccomp
#: filters answer ENOSYS or EPERM; E2BIG/EINVAL: a kernel before CLONE_INTO_CGROUP).
REFUSED = frozenset({errno.ENOSYS, errno.EPERM, errno.E2BIG, errno.EINVAL})


class CloneRefused(OSError):
    """The kernel refused the clone itself: nothing was started. ``permanent``: it
    always will here (see :data:`REFUSED`), else only this cgroup was refused (it is
    gone, say)."""

    @property
    def permanent(self) -> bool:
        return self.errno in REFUSED


#: Bounds of the caches below (refilled by what is in use once cleared).
_CACHED = 64
#: (command name, PATH) -> where to try it, as Popen would (os.get_exec_path's folders).
_PATHS: dict[tuple[bytes, str], tuple[bytes, ...]] = {}
#: id(shared base) -> (the base, kept alive so its id is not reused; its "K=V" block;
#: its keys in the block's order).
_BLOCKS: dict[int, tuple[Mapping[str, str], list[bytes], list[str]]] = {}


def exec_paths(name: bytes, env: Mapping[str, str]) -> tuple[bytes, ...]:
    """Where to try executing ``name``: itself if it has a slash, else in each folder
    of ``env``'s PATH (``os.defpath`` without), in order (as ``Popen`` and
    ``os.execvpe``). Cached: every member of an array asks for the same."""
    if os.path.dirname(name):
        return (name,)
    path = env.get("PATH", os.defpath)
    found = _PATHS.get((name, path))
    if found is None:
        if len(_PATHS) >= _CACHED:
            _PATHS.clear()
        folders = os.get_exec_path({"PATH": path})
        found = _PATHS[(name, path)] = tuple(os.path.join(os.fsencode(d), name) for d in folders)
    return found


def _encode(env: Mapping[str, str]) -> list[bytes]:
    """``env`` as ``KEY=value`` byte strings (ValueError for a key Popen would refuse)."""
    block = []
    for key, value in env.items():
        k = os.fsencode(key)
        if not k or b"=" in k:
            raise ValueError("illegal environment variable name")
        block.append(k + b"=" + os.fsencode(value))
    return block


def environ_block(
    env: Mapping[str, str],
) -> Mapping[str, str] | tuple[list[bytes], dict[str, str]]:
    """What :func:`_clone3.spawn` takes as the environment: ``env`` itself if it is a
    plain mapping (encoded in C), else, for an
    :class:`~orcha.service.environments.Environment` (a shared base with variables
    over it, in layers), the base's block encoded once and cached, with the rest after
    it (an array's members share their base: only their own few are encoded, in C:
    a (block, mapping) pair)."""
    from orcha.service.environments import Environment

    if not isinstance(env, Environment):
        return env
    over: dict[str, str] = {}
    layers = []
    while isinstance(env, Environment):
        layers.append(env.own)
        env = env.base
    for own in reversed(layers):
        over.update(own)
    cached = _BLOCKS.get(id(env))
    if cached is None or cached[0] is not env:
        if len(_BLOCKS) >= _CACHED:
            _BLOCKS.clear()
        cached = _BLOCKS[id(env)] = (env, _encode(env), list(env))
    _, block, keys = cached
    if not over.keys().isdisjoint(keys):
        block = [item for item, key in zip(block, keys, strict=True) if key not in over]
    return block, over


def usable() -> bool:
    """Whether :class:`NativeProcess` can start processes here (the compiled module is
    installed and this platform has the call)."""
    return _clone3 is not None and _clone3.available()


class NativeProcess(StartedPopen):
    """A ``subprocess.Popen`` started by ``clone3`` in the cgroup whose directory is open
    as ``cgroup`` (-1: the caller's); always in a new session, without the caller's fds
    (:class:`~orcha.service.popens.StartedPopen`). Waited for, polled and signalled as
    any Popen: it is the caller's own child."""

    def __init__(self, argv: Sequence[str], *, cgroup: int = -1, **kwargs: Any) -> None:
        self._cgroup = cgroup
        super().__init__(argv, **kwargs)

    def _start(
        self,
        args: list[str],
        executable: Any,
        cwd: Any,
        env: Mapping[str, str] | None,
        fds: tuple[int, int, int],
    ) -> int:
        name = os.fsencode(args[0] if executable is None else executable)
        environ = os.environ if env is None else env
        paths = exec_paths(name, environ)
        block = environ_block(environ)
        try:
            return _clone3.spawn(paths, args, block, cwd, self._cgroup, *fds)
        except OSError as e:
            code = e.errno or errno.EINVAL
            if e.filename == "cwd":
                raise OSError(code, os.strerror(code), cwd) from None
            if e.filename == "exec":
                raise OSError(code, os.strerror(code), args[0]) from None
            raise CloneRefused(code, f"clone3: {os.strerror(code)}") from None
