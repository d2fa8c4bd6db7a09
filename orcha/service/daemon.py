"""Daemon: the ``orcha serve`` process around the service core.

The main thread runs one event loop over three descriptors: the listening socket, the
signal wakeup pipe, and a waker pipe other threads write to when a petition ends. Idle,
it wakes only to look (one stat) at whether its unix socket is still there every
SOCKET_CHECK_SECONDS (orcha.service.socket_keeper). Signal handlers only count
signals; the loop acts on the count. The first SIGINT/SIGTERM (or ``orcha shutdown``)
stops admitting, keeps the queued petitions for the next start and cancels the running
ones (their trees get TERM, grace, KILL), then exits 0 once all have ended; meanwhile
clients are still answered (submissions refused). A second stop (a signal, or ``orcha
shutdown --force``) kills every tree at once and exits 1.

SIGHUP reloads the configuration file (``orcha.service.reload``): the handler only sets a
flag; the loop reloads. Only when the terminal the service was started from has hung up
(it can no longer be opened) does SIGHUP stop the service, as the first stop signal; not
under ``nohup`` (SIGHUP ignored at start), where it only reloads.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import selectors
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from orcha import __version__
from orcha.defaults import DELIVERY_DRAIN_SECONDS, RECHECK_SECONDS
from orcha.protocol import transport
from orcha.protocol.managed import registry
from orcha.service.lock import AddressLock, StateLock
from orcha.service.server import ManagerServer
from orcha.service.socket_keeper import SocketKeeper
from orcha.service.streams import reuse_output_buffers
from orcha.service.systemd import Notifier
from orcha.settings import ensure_runtime_dir, ensure_state_dir
from orcha.units import capped_wait

if TYPE_CHECKING:
    from orcha.service.service import Service

log = logging.getLogger("orcha.service")

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: Seconds the service waits, once every petition has ended, for sessions to deliver the
#: last output and end events to their clients before it exits.
_FLUSH_SECONDS = 2.0
#: Seconds a forced stop waits for the trees it killed to be reaped, so their ends are
#: recorded (CANCELLED) rather than found by the next start (INTERRUPTED).
_FORCED_SECONDS = 2.0


class Daemon:
    """Serves ``service`` at its settings' address until stopped by a signal."""

    def __init__(
        self, service: Service, systemd: Notifier | None = None, guard_pid: int | None = None
    ) -> None:
        self.service = service
        self.systemd = systemd or Notifier()
        self.guard_pid = guard_pid  # the guard above this process (orcha.service.guard)
        self._signals = 0
        self._hangups = 0  # SIGHUPs not yet acted on (a reload each, at most one at a time)
        self._terminal = _has_terminal()  # a hang-up then stops rather than reloads
        self.keeper: SocketKeeper | None = None  # of a unix socket, once listening

    def run(self) -> int:
        """Serve until stopped. Returns the exit code; raises OrchaError if it cannot start."""
        service = self.service
        reuse_output_buffers()  # streaming output costs half the CPU (see there)
        with contextlib.ExitStack() as stack:
            # Its machine started the process spawner: a service that cannot start (its
            # lock, its database) stops it too (a normal stop has, by then).
            stack.callback(_close_spawners)
            listener = self._listen(stack)
            service.open_store()
            stack.callback(service.close)
            self._serve_managers()
            signal_r = self._catch_signals(stack)
            service.start()  # plugins and recovery: before petitions run or clients come
            stack.callback(self.systemd.close)
            stack.callback(service.plugins.stop)
            # Only now: whoever waits for this line (a script, a test; systemd waits for
            # READY in the loop) may rely on clients being served, however long the
            # plugins' start hooks took.
            self._announce()
            sel = selectors.DefaultSelector()
            stack.callback(sel.close)
            sel.register(listener, selectors.EVENT_READ, "accept")
            sel.register(signal_r, selectors.EVENT_READ, "signal")
            sel.register(service.waker_r, selectors.EVENT_READ, "waker")
            code = self._loop(sel, listener)
        log.warning("stopped (exit code %d)", code)
        return code

    def _loop(self, sel: selectors.BaseSelector, listener: Any) -> int:
        service, scheduler, systemd = self.service, self.service.scheduler, self.systemd
        service.wake_on_submit = systemd.enabled  # systemd hears the new queue length
        systemd.ready(service.status_words())
        watchdog = systemd.watchdog_interval
        next_ping = time.monotonic()
        forced: float | None = None  # when a forced stop gives up waiting for its ends
        while True:
            # Wake up on a timer only while a petition waits for free memory or a
            # plugin's predicate, for the next start time (--delay, --at), or to feed
            # systemd's watchdog.
            # Not while another thread holds the scheduler (a plugin predicate that
            # blocks): this loop accepts clients, so it looks again a recheck later.
            if scheduler.lock.acquire(blocking=False):
                try:
                    recheck = RECHECK_SECONDS if scheduler.needs_recheck else None
                    start = scheduler.next_start()
                finally:
                    scheduler.lock.release()
            else:
                recheck, start = RECHECK_SECONDS, None
            if start is not None:
                recheck = _sooner(recheck, start - service.clock())
            now = time.monotonic()
            timeout = recheck
            if watchdog is not None:
                timeout = _sooner(timeout, next_ping - now)
            if forced is not None:
                timeout = _sooner(timeout, forced - now)
            keeper = self.keeper
            if keeper is not None:
                timeout = _sooner(timeout, keeper.wait())
            # A start weeks ahead would overflow epoll (INT_MAX ms): wait a day at most,
            # then look again (admitting early starts nothing: the predicates say when).
            events = sel.select(None if timeout is None else capped_wait(timeout))
            if not events and recheck is not None and scheduler.lock.acquire(blocking=False):
                try:
                    scheduler.admit()
                finally:
                    scheduler.lock.release()
            # Only a scheduler whose lock can be taken is alive: a stuck one stops the
            # pings, and systemd restarts the service.
            if watchdog is not None and time.monotonic() >= next_ping and _alive(service, watchdog):
                systemd.watchdog()
                next_ping = time.monotonic() + watchdog
            systemd.status(service.status_words())
            remade = keeper.check() if keeper is not None else None
            if remade is not None:  # the socket was deleted and made again
                sel.unregister(listener)
                _close(listener)
                sel.register(remade, selectors.EVENT_READ, "accept")
                listener = remade
            for key, _ in events:
                if key.data == "accept":
                    self._accept(listener)
                else:
                    _drain(key.fd)
            if self._hangups:
                self._hangups = 0
                self._hang_up()
            if (self._signals or service.stop_asked) and not service.stopping:
                # The listener stays open: while the trees stop, clients still see the
                # service ('status', 'shutdown --force'); submissions are refused.
                systemd.stopping(f"stopping; {service.status_words()}")
                service.begin_stop()
            # Force: a second stop signal; or one after a client's 'orcha shutdown'; or
            # 'orcha shutdown --force'.
            if self._signals + service.stop_asked >= 2 and forced is None:
                service.force_stop()
                forced = time.monotonic() + _FORCED_SECONDS
            if forced is not None and (scheduler.running_count == 0 or time.monotonic() >= forced):
                return 1
            if service.stopping and scheduler.running_count == 0:
                self._flush()
                return 0

    # -- start -----------------------------------------------------------------------------
    def _listen(self, stack: contextlib.ExitStack) -> Any:
        """Take the address (its lock first, for a unix socket) and the state directory
        (its lock: before the database is opened), then listen on the address."""
        settings = self.service.settings
        address = settings.address
        if address.is_unix:
            assert address.path is not None
            if os.path.dirname(address.path) == os.path.abspath(settings.runtime_dir):
                ensure_runtime_dir(settings)
            lock = AddressLock(address.path + ".lock")
            lock.acquire(str(address))
            stack.callback(lock.release)
        # Released after the database is closed (the stack unwinds in reverse).
        ensure_state_dir(settings)
        state_lock = StateLock(settings.state_dir)
        state_lock.acquire(str(address), address.path if address.is_unix else None)
        stack.callback(state_lock.release)
        # The key file exists before the socket does: a client that finds the socket of
        # a starting service finds its key too (and is not told it has none).
        settings.service_key()
        listener = transport.listen(address)
        if address.is_unix and address.path:
            # It makes the socket again if it is deleted, and removes it at the end.
            self.keeper = SocketKeeper(settings, listener)
            stack.callback(self.keeper.close)
        else:
            stack.callback(_close, listener)
        return listener

    def _serve_managers(self) -> None:
        """The ``multiprocessing.managers`` server that serves sessions and proxies."""
        service = self.service
        key = service.settings.service_key()
        multiprocessing.current_process().authkey = key  # proxies rebuilt here use our key
        # Actions of the original API start multiprocessing.Process children that get the
        # petition as an argument; it holds the manager, so it must be inherited by fork,
        # not pickled (Python 3.14 makes forkserver the default on Linux).
        multiprocessing.set_start_method("fork", force=True)
        service.server = ManagerServer(registry(), service.settings.address.sockaddr, key, service)
        service.server.install()
        os.register_at_fork(after_in_child=reset_child_signals)

    def _catch_signals(self, stack: contextlib.ExitStack) -> int:
        """Count stop signals from now on; the returned descriptor wakes the loop."""
        signal_r, signal_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        stack.callback(os.close, signal_w)
        stack.callback(os.close, signal_r)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _STOP_SIGNALS}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hangup)
        if previous[signal.SIGHUP] == signal.SIG_IGN:
            self._terminal = False  # started under nohup: a hang-up never stops it
        stack.callback(lambda: [signal.signal(sig, h) for sig, h in previous.items()])
        signal.set_wakeup_fd(signal_w)
        stack.callback(signal.set_wakeup_fd, -1)
        return signal_r

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only counts: the event loop acts on it (logging here could deadlock).
        self._signals += 1

    def _on_hangup(self, signum: int, frame: Any) -> None:
        # Only counts, as _on_signal: the loop reloads (or stops, if the terminal is gone).
        self._hangups += 1

    def _hang_up(self) -> None:
        """SIGHUP came: reload the configuration; but stop, as on a first stop signal, if
        the terminal the service runs in has hung up (its guard forwards that SIGHUP too:
        it counts once)."""
        from orcha.errors import OrchaError
        from orcha.service.reload import reload

        if self._terminal and not _has_terminal():
            log.warning("the terminal hung up: stopping")
            self._signals = max(self._signals, 1)
            return
        if self.service.stopping:
            return
        log.warning("SIGHUP: reloading the configuration")
        self.systemd.reloading()
        try:
            reload(self.service)  # logs what changed, or why the file was refused
        except OrchaError:
            pass  # refused and logged: the service keeps its configuration
        except Exception:
            log.exception("reload failed; the service keeps its configuration")
        self.systemd.ready(self.service.status_words())

    def _announce(self) -> None:
        service = self.service
        address = service.settings.address
        if not address.is_unix:
            from orcha.address import is_loopback

            if not is_loopback(address):
                log.warning(
                    "listening on %s, which is not loopback: anyone who can reach it and has "
                    "the key can run commands as this user",
                    address,
                )
        guard = f"guard {self.guard_pid}, " if self.guard_pid else ""
        if service.dask is not None:  # the workers run petitions, this host maybe
            where = str(service.dask.banner())
        else:
            where = (f"up to {service.manager.max_running} running, "
                     f"GPUs: {','.join(service.scheduler.inventory) or 'none'}")  # fmt: skip
        print(
            f"orcha {__version__}: listening on {address} (pid {os.getpid()}, {guard}"
            f"{where}, kinds: "
            f"{', '.join(sorted(service.manager.kinds())) or 'none'})",
            flush=True,
        )

    # -- while serving -----------------------------------------------------------------------
    def _accept(self, listener: Any) -> None:
        server = self.service.server
        assert server is not None
        server.accept_pending(listener)  # bounded: see orcha.service.server.Intake

    def _flush(self) -> None:
        """On a clean stop: let sessions send their clients the last output and ends, and
        queued webhooks, hooks and event sinks go out (a forced stop waits for neither)."""
        deadline = time.monotonic() + _FLUSH_SECONDS
        with self.service.peers_lock:
            peers = list(self.service.peers)
        for peer in peers:
            peer.idle.wait(max(0.0, deadline - time.monotonic()))
        for what in self.service.events.finish_deliveries(DELIVERY_DRAIN_SECONDS):
            log.warning("stopping: dropped %s still queued", what)


def _sooner(timeout: float | None, due: float | None) -> float | None:
    """The nearer of two waits in seconds (None: none; a past one is 0)."""
    if due is None:
        return timeout
    due = max(0.0, due)
    return due if timeout is None else min(timeout, due)


def _has_terminal() -> bool:
    """Whether this process has a controlling terminal that can still be opened."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    os.close(fd)
    return True


def _alive(service: Service, timeout: float) -> bool:
    """Whether the scheduler's lock can be taken within ``timeout`` seconds."""
    if not service.scheduler.lock.acquire(timeout=timeout):
        return False
    service.scheduler.lock.release()
    return True


def _close(listener: Any) -> None:
    if listener.fileno() >= 0:
        listener.close()


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _close_spawners() -> None:
    if "orcha.service.spawner" in sys.modules:  # imported only where cgroups are made
        from orcha.service.spawner import close_all

        close_all()


def reset_child_signals() -> None:
    """In a child forked from the service: default signal handling, no wakeup fd.

    Without this a forked worker would inherit the service's flag-setting handlers (so
    SIGTERM would not stop it) and its signal wakeup descriptor (so its signals would
    wake the service as if they were the service's own).
    """
    try:
        signal.set_wakeup_fd(-1)
    except (ValueError, OSError):
        pass
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE):
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (ValueError, OSError):
            pass
