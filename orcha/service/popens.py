"""``subprocess.Popen`` for a child that orcha starts its own way (born in a cgroup):
:class:`StartedPopen` keeps Popen's pipes, ``wait``, ``poll``, ``communicate`` and
signals, and hands the start itself to a subclass's :meth:`~StartedPopen._start`
(:class:`orcha.service.native.NativeProcess`, :class:`orcha.service.spawner.SpawnedProcess`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from typing import Any


class StartedPopen(subprocess.Popen[bytes]):
    """A ``subprocess.Popen`` whose child :meth:`_start` starts. The child is always in
    a session of its own, without the caller's fds, with SIGPIPE and SIGXFSZ at their
    defaults (whatever ``start_new_session``, ``close_fds`` and ``restore_signals``
    say): as the service's own Popen makes it. It needs its stdin, stdout and stderr."""

    def _start(
        self,
        args: list[str],
        executable: Any,
        cwd: Any,
        env: Mapping[str, str] | None,
        fds: tuple[int, int, int],
    ) -> int:
        """Start the child with ``fds`` as its 0, 1 and 2; its PID. Raises OSError as
        Popen does (filename: the command, or ``cwd``)."""
        raise NotImplementedError

    def _execute_child(
        self,
        args: Sequence[str],
        executable: Any,
        preexec_fn: Any,
        close_fds: bool,
        pass_fds: Any,
        cwd: Any,
        env: Mapping[str, str] | None,
        startupinfo: Any,
        creationflags: Any,
        shell: bool,
        p2cread: int,
        p2cwrite: int,
        c2pread: int,
        c2pwrite: int,
        errread: int,
        errwrite: int,
        *rest: Any,
    ) -> None:
        try:
            if -1 in (p2cread, c2pwrite, errwrite):
                raise ValueError(f"{type(self).__name__} needs its stdin, stdout and stderr")
            self.pid = self._start(list(args), executable, cwd, env, (p2cread, c2pwrite, errwrite))
            self._child_created = True
        finally:
            self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)  # type: ignore[attr-defined]
