"""The sd_notify protocol, spoken by the service itself when systemd starts it.

With ``Type=notify`` systemd sets ``NOTIFY_SOCKET`` (a datagram socket: a path, or an
abstract name written ``@name``) and, with ``WatchdogSec=``, ``WATCHDOG_USEC``. The
service sends ``READY=1`` once it accepts clients, ``STATUS=...`` when its queue or its
running count change, ``WATCHDOG=1`` at half the watchdog interval from its main loop,
and only after taking the scheduler's lock (so a stuck scheduler stops the pings and
systemd restarts the service), and ``STOPPING=1`` when it begins to stop. Without
``NOTIFY_SOCKET`` every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

from orcha.defaults import NOTIFY_SEND_TIMEOUT

log = logging.getLogger("orcha.service.systemd")


class Notifier:
    """Sends sd_notify messages; a no-op outside systemd."""

    def __init__(
        self, environ: Mapping[str, str] | None = None, main_pid: int | None = None
    ) -> None:
        """``main_pid``: the process systemd started, if not this one (the guard above
        the service): its watchdog is taken over, and READY names it as MAINPID (so
        ``systemctl stop`` signals the guard, which forwards the signal); the unit then
        needs ``NotifyAccess=all``."""
        env = os.environ if environ is None else environ
        self.main_pid = main_pid or os.getpid()
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self._address = address if address.startswith(("/", "\0")) else ""
        self.watchdog_interval: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # The watchdog is for this process, or for the guard that forked it.
        for_us = not pid or pid in (str(os.getpid()), str(self.main_pid))
        if self._address and usec.isdigit() and int(usec) > 0 and for_us:
            self.watchdog_interval = int(usec) / 1e6 / 2
        self._last_status = ""
        self._sock: socket.socket | None = None
        if environ is None:
            # As sd_notify(unset_environment=1): what the service starts (plugins'
            # processes, hooks) must not speak for it, all the more as the units accept
            # notifications from any of the unit's processes (NotifyAccess=all).
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                os.environ.pop(name, None)

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def _send(self, message: str, wait: bool = True) -> bool:
        """Send one notification; whether it was sent. The main loop (which also accepts
        clients) must never wedge on a notify socket nobody reads: a full one (10
        datagrams queued by default) makes a send with ``wait`` give up after
        NOTIFY_SEND_TIMEOUT seconds, one without ``wait`` at once."""
        if not self._address:
            return False
        import time

        deadline = time.monotonic() + NOTIFY_SEND_TIMEOUT
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            while True:
                try:
                    self._sock.sendto(message.encode(), self._address)
                    return True
                except BlockingIOError:
                    # Full. A datagram socket's peer has no "writable" to poll for: look
                    # again shortly, until the deadline (a ping or status: not at all).
                    if not wait or time.monotonic() >= deadline:
                        return False
                    time.sleep(0.01)
        except OSError as e:
            log.warning("cannot notify systemd at %r: %s", self._address, e)
            return False

    def ready(self, status: str) -> None:
        self._last_status = status
        self._send(f"READY=1\nSTATUS={status}\nMAINPID={self.main_pid}")

    def status(self, status: str) -> None:
        """``STATUS=`` if it changed since the last one sent (one not sent is tried again
        at the next call)."""
        if status != self._last_status and self._send(f"STATUS={status}", wait=False):
            self._last_status = status

    def watchdog(self) -> None:
        self._send("WATCHDOG=1", wait=False)

    def reloading(self) -> None:
        """``RELOADING=1`` (with the monotonic time systemd asks for): a configuration
        reload begins; :meth:`ready` says it is over."""
        import time

        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(f"RELOADING=1\nMONOTONIC_USEC={now}")

    def stopping(self, status: str = "stopping") -> None:
        self._last_status = status
        self._send(f"STOPPING=1\nSTATUS={status}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
