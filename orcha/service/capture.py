"""Ordered capture: a petition's stdout and stderr read back in the order it wrote them.

With two pipes (the default) the kernel keeps no order between them: when the service
finds both readable, it cannot tell whether ``echo 1; echo 2 >&2; echo 3`` wrote 1, 2, 3
or 1, 3, 2. A petition submitted with ``--ordered`` (``schedule.ordered``, or the
service's ``ordered_output`` default) gets instead one end of an ``AF_UNIX``
``SOCK_SEQPACKET`` socket pair as each of its fds 1 and 2. Every ``write`` is then one
message, and with ``SO_TIMESTAMPNS`` on the service's ends the kernel stamps each one
when it is written; the service merges the two streams by those stamps, so the log (and
with it ``logs``, ``logs --tail``, ``follow``) keeps the petition's order. The attached
client still gets stdout on its stdout and stderr on its stderr.

The price, and why it is not the default: a single ``write`` larger than the socket's
send buffer fails (EMSGSIZE) in the petition instead of blocking. The service raises the
petition's send buffers to the system's ``net.core.wmem_max`` (the kernel doubles it:
8 MiB for the usual 4 MiB), so only one write above that fails; ordinary programs
(stdio buffers of 4-64 KiB, ``cat``'s 128 KiB) never come near it. A petition that
needs more keeps pipes (order as read) or merges its streams itself (``2>&1``).

Merging is exact, not a guess: a round first notes the time, then reads everything both
sockets hold; every message stamped before that time (less ORDERED_SETTLE_NS: the kernel
stamps a message just before it queues it) was already queued, so all of them, from both
streams, are in hand and can be emitted in stamp order. Later ones wait for the next
round, at most ORDERED_SETTLE_NS later: ordered output reaches its readers that much
later at most.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from collections.abc import Callable
from typing import Any

from orcha.defaults import ORDERED_SETTLE_NS

#: ``SO_TIMESTAMPNS`` (= ``SCM_TIMESTAMPNS``) on Linux; Python's socket module lacks it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")
_WMEM_MAX = "/proc/sys/net/core/wmem_max"


def _send_buffer() -> int:
    """What the petition's ends ask for as send buffer: the system's maximum."""
    try:
        with open(_WMEM_MAX) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 4 << 20


class Channels:
    """The two capture channels of one process: ``child`` its fds 1 and 2 (closed by
    :meth:`started` once it has them), ``ours`` the service's read ends, in that order
    (stdout, stderr)."""

    def __init__(self) -> None:
        self.child: list[Any] = []
        self.ours: list[socket.socket] = []
        size = _send_buffer()
        try:
            for _ in range(2):
                ours, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                self.ours.append(ours)
                self.child.append(child)
                ours.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                ours.shutdown(socket.SHUT_WR)  # the petition reads nothing from its stdout
                child.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
                child.set_inheritable(True)
        except OSError:
            self.close()
            raise
        #: The largest message the petition can write: what a read must make room for.
        self.largest = max(c.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) for c in self.child)

    def started(self, proc: Any) -> None:
        """``proc`` has its ends: close ours of them (its exit is then our EOF); its
        ``stdout`` and ``stderr`` become the service's read ends."""
        for s in self.child:
            s.close()
        self.child.clear()
        proc.stdout, proc.stderr = self.ours

    def close(self) -> None:
        for s in (*self.child, *self.ours):
            s.close()
        self.child.clear()
        self.ours.clear()


class _Pipes:
    """The default capture: two pipes (``subprocess.PIPE``), as :class:`Channels` reads."""

    child = (subprocess.PIPE, subprocess.PIPE)

    def started(self, proc: Any) -> None:
        pass


def capture_channels(ordered: bool) -> Channels | _Pipes:
    """What a process gets as its fds 1 and 2 (``child``; Popen's ``stdout`` and
    ``stderr``), to be told once it is started (``started(proc)``): ordered capture
    channels, or pipes."""
    return Channels() if ordered else _Pipes()


class OrderedReader:
    """Reads both channels and hands out their messages in the order they were written.

    :meth:`read` takes what one channel holds now (it is readable); :meth:`ready` the
    messages that can be emitted, in order. ``stamp`` is the clock the kernel stamps
    with (``time.time_ns``: CLOCK_REALTIME); a seam for tests.
    """

    def __init__(
        self,
        largest: int | None = None,
        stamp: Callable[[], int] = time.time_ns,
        settle_ns: int = ORDERED_SETTLE_NS,
    ) -> None:
        """``largest``: the longest message a petition can write (default: what
        :class:`Channels` allows)."""
        import mmap

        # Room for the largest message, in pages that stay unused until a write that
        # large comes (a bytearray would be zero-filled: resident at once).
        self._buffer = mmap.mmap(-1, (largest or 2 * _send_buffer()) + 1)
        self._view = memoryview(self._buffer)
        self._pending: list[tuple[int, int, int, bytes]] = []  # (stamp, order, stream, data)
        self._order = 0  # ties (same nanosecond): the order read
        self._stamp = stamp
        self._settle = settle_ns
        self._horizon = stamp()

    def due_in(self) -> float | None:
        """Seconds until the next round can emit what is held (None: nothing held)."""
        if not self._pending:
            return None
        first = min(self._pending)[0]
        return max(0.0, (first + self._settle - self._stamp()) / 1e9)

    def begin(self) -> None:
        """A round starts: everything stamped before now (less ``settle_ns``: a message
        is stamped just before it is queued) is in the sockets already."""
        self._horizon = self._stamp() - self._settle

    def read(self, sock: Any, stream: int) -> bool:
        """Take the messages ``sock`` holds now, up to the first one stamped after the
        round began (later ones can wait: a process writing without end cannot keep a
        round going); False once the petition has closed it and all was taken."""
        while True:
            try:
                size, ancdata, flags, _ = sock.recvmsg_into(
                    [self._view], socket.CMSG_SPACE(_TIMESPEC.size), socket.MSG_DONTWAIT
                )
            except (BlockingIOError, InterruptedError):
                return True
            except ConnectionResetError:
                return False
            stamp = None
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanoseconds = _TIMESPEC.unpack(data[: _TIMESPEC.size])
                    stamp = seconds * 1_000_000_000 + nanoseconds
            if stamp is None:
                if size == 0:
                    return False  # no message, no stamp: the end of the stream
                stamp = self._stamp()  # never without one on Linux; keep the data anyway
            if size:
                if flags & socket.MSG_TRUNC:  # cannot happen: the buffer holds the largest
                    size = len(self._buffer)
                self._order += 1
                self._pending.append((stamp, self._order, stream, bytes(self._view[:size])))
                if stamp > self._horizon:
                    return True

    def ready(self, final: bool = False) -> list[tuple[int, bytes]]:
        """The ``(stream, data)`` messages that are due, in the order written: those
        stamped before the round began (``final``: all, nothing more will come)."""
        if not self._pending:
            return []
        self._pending.sort()
        if final:
            due, self._pending = self._pending, []
        else:
            cut = 0
            while cut < len(self._pending) and self._pending[cut][0] <= self._horizon:
                cut += 1
            due, self._pending = self._pending[:cut], self._pending[cut:]
        return [(stream, data) for _, _, stream, data in due]

    def round(self, sel: Any, emit: Callable[[int, bytes], None], final: bool = False) -> int:
        """One round over the channels registered in ``sel`` (data: their stream; None
        for anything else): read them all, emit what is due (``final``: everything).
        How many channels ended (they are unregistered)."""
        self.begin()
        ended = 0
        for key in list(sel.get_map().values()):
            if key.data is not None and not self.read(key.fileobj, key.data):
                sel.unregister(key.fileobj)
                ended += 1
        final = final or not any(k.data is not None for k in sel.get_map().values())
        for stream, data in self.ready(final):
            emit(stream, data)
        return ended

    def close(self) -> None:
        self._view.release()
        self._buffer.close()


def is_ordered(proc: Any) -> bool:
    """Whether ``proc`` was spawned with ordered capture (its stdout is a socket)."""
    return isinstance(getattr(proc, "stdout", None), socket.socket)
