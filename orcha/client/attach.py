"""Running a petition in the foreground: submit, stream its output live, send it this
process's stdin, say why it waits, handle Ctrl+C.

One loop, one thread: it selects on the connection, the signal wakeup descriptor and
(while the petition may take more input) stdin, and writes through a
:class:`~orcha.client.screen.Screen`, whose live line (progress bar, why it waits) never
shares a line with output.

Signal handling follows the service's rule: the SIGINT handler only counts, and the loop
(woken through the signal wakeup descriptor) acts. First Ctrl+C: ask the service to
cancel and keep printing until the petition has ended: everything it wrote, up to its
end, is printed (exit 130). Second Ctrl+C: print what has already arrived (for
_LAST_DRAIN_SECONDS at most) and stop waiting (exit 130; the service still stops the
petition, because the session closes).

A Ctrl+C that comes while the client is blocked writing output its reader does not take
(``orcha run ... | less``, never scrolled) interrupts that write (see
:class:`_WriteInterrupted`), and the client prints no more of the petition's output (its
log keeps it: ``orcha logs ID``): it goes on reading from the service instead, whose
session, blocked sending it output, could not otherwise hear the cancel. It ends once
the petition has ended (130), or at a second Ctrl+C.
"""

from __future__ import annotations

import _signal as signal  # signal's C module: signal.py builds enums on import
import os
import sys
import time

from orcha.client import poller as selectors  # selectors' epoll, without its imports
from orcha.client.endings import end_code
from orcha.client.piped import piped_stdin
from orcha.client.session import NOTHING, Session
from orcha.errors import ExitCode, LostServiceError
from orcha.protocol.messages import SubmitRequest

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from orcha.client.progress import ProgressView
    from orcha.client.screen import Screen
    from orcha.protocol.schedule import Schedule
    from orcha.settings import Settings


class _WriteInterrupted(Exception):
    """Raised by the SIGINT handler, only while the client writes output, in a write that
    has lasted :data:`_STUCK_WRITE_SECONDS` (a Ctrl+C in a younger one sets an alarm,
    whose handler raises it if that write is still not done then; see
    :meth:`_Interrupts.writing`).

    Counting is enough while the loop selects, since the wakeup descriptor wakes it. But
    a write to a pipe its reader has stopped reading blocks, and Python restarts a write
    interrupted by a signal once its handler returns (PEP 475): the loop would never
    look at the count, the petition never be cancelled, the client never end. Only a
    handler that raises ends that write. It raises only there, so the rest of the loop
    keeps the rule that a handler only counts; and it costs the stream nothing (no
    select before each write, no O_NONBLOCK on a stdout other processes share)."""


class _Interrupts:
    """Counts SIGINTs and makes them wake a selector.

    A client started with SIGINT ignored (``orcha run ... &`` in a script, ``nohup``)
    keeps ignoring it, as shells intend for background jobs: Ctrl+C in the terminal is
    then not meant for it, and its petition is not cancelled.
    """

    def __init__(self) -> None:
        self.count = 0
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._in_write = False  # the handler may raise _WriteInterrupted
        self._write_began = 0.0

    def _handler(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self._in_write:
            # Only a write that has lasted is stuck on its reader: one that a Ctrl+C
            # merely happened to meet goes on, and the petition's output is printed to
            # its end. A young one is looked at again once it would have lasted.
            lasted = time.monotonic() - self._write_began
            if lasted >= _STUCK_WRITE_SECONDS:
                self._give_up_write()
            signal.setitimer(signal.ITIMER_REAL, _STUCK_WRITE_SECONDS - lasted)

    def _on_alarm(self, signum: int, frame: Any) -> None:
        # Set by _handler: a Ctrl+C came while a write began; it is still not done.
        if self._in_write and self.count:
            self._give_up_write()

    def _give_up_write(self) -> None:
        self._in_write = False  # once: the write it interrupts is given up
        raise _WriteInterrupted

    def writing(self, write: Callable[..., object], *args: Any) -> bool:
        """Call ``write(*args)`` (a write to stdout or stderr, which may block); False if
        a SIGINT interrupted it."""
        try:
            self._write_began = time.monotonic()
            self._in_write = True
            try:
                write(*args)
            finally:
                self._in_write = False
        except _WriteInterrupted:  # raised in write(), or before the flag was cleared
            return False
        return True

    def __enter__(self) -> _Interrupts:
        self._old_handler = signal.getsignal(signal.SIGINT)
        if self._old_handler != signal.SIG_IGN:
            signal.signal(signal.SIGINT, self._handler)
            self._old_alarm = signal.signal(signal.SIGALRM, self._on_alarm)
        self._old_fd = signal.set_wakeup_fd(self.write_fd)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.set_wakeup_fd(self._old_fd)
        if self._old_handler != signal.SIG_IGN:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old_alarm)
            signal.signal(signal.SIGINT, self._old_handler)
        os.close(self.read_fd)
        os.close(self.write_fd)

    def drain(self) -> None:
        try:
            while os.read(self.read_fd, 64):
                pass
        except BlockingIOError:
            pass


class _StdinForwarder:
    """Sends this client's stdin to its petition (``orcha run`` with piped input), never
    more than STDIN_WINDOW_BYTES ahead of what the petition has read (the service says,
    in ``stdin`` events): however large the input, the service buffers one window.

    A chunk read is sent only once the connection can take it without blocking: a
    client blocked sending input while the service is blocked sending it output (a
    ``cat`` of a large input) would wait for ever."""

    def __init__(self, session: Session, handle: int) -> None:
        from orcha.defaults import STDIN_CHUNK_BYTES, STDIN_WINDOW_BYTES

        self.session = session
        self.handle = handle
        self.window, self.chunk = STDIN_WINDOW_BYTES, STDIN_CHUNK_BYTES
        self.sent = 0  # bytes sent
        self.read = 0  # bytes the petition has read
        self.pending: bytes | None = None  # read, not sent yet (b"": the end of input)
        self.done = False  # EOF sent, or the petition reads no more

    def wants_input(self) -> bool:
        """Whether to read more input now."""
        return not self.done and self.pending is None and self.sent - self.read < self.window

    def wants_to_send(self) -> bool:
        return not self.done and self.pending is not None

    def read_input(self) -> None:
        """Read what stdin has (it is readable); b"" at its end."""
        room = min(self.chunk, self.window - (self.sent - self.read))
        try:
            self.pending = os.read(0, room)
        except BlockingIOError:
            return
        except OSError:
            self.pending = b""  # unreadable: as if it had ended

    def send(self) -> None:
        """Send what was read (the connection is writable); at the end of input, EOF."""
        data, self.pending = self.pending, None
        if data is None or self.done:
            return
        self.session.send(None, "call", "stdin",
                          {"handle": self.handle, "data": data, "eof": not data},
                          skip=True)  # fmt: skip
        self.sent += len(data)
        self.done = not data

    def credit(self, event: dict[str, Any]) -> None:
        """A ``stdin`` event: how much the petition has read, whether it reads more."""
        self.read = max(self.read, int(event.get("read") or 0))
        if event.get("closed"):
            self.done = True
            self.pending = None


#: Seconds a client that stopped waiting (a second Ctrl+C) still prints what the service
#: had already sent, at most.
_LAST_DRAIN_SECONDS = 0.5
#: A write of output that has lasted this long when Ctrl+C comes is taken as stuck on a
#: reader that takes nothing, and given up (see _WriteInterrupted); a shorter one is not.
_STUCK_WRITE_SECONDS = 0.2

#: Seconds between two redraws of the live line (its spinner and clock).
_TICK_SECONDS = 0.1


def run_attached(session: Session, request: SubmitRequest, forward_stdin: bool = False) -> int:
    """Submit ``request`` and stream its output until it ends; return the exit code.
    With ``forward_stdin`` (``request.stdin``), this process's stdin goes to the petition.

    Raises PetitionError if the service refuses it, LostServiceError if the service goes
    away meanwhile.
    """
    from orcha.client.screen import Screen

    screen = Screen()
    attached = _Attached(session, request, screen, forward_stdin)
    try:
        return attached.run()
    except LostServiceError as e:
        if not forward_stdin or attached.began:
            raise
        # Its input was this client's: neither a restart nor the service keeps it.
        then = (f"petition {request.id} had not started, and its stdin came from this "
                "client: it will not run without it; submit it again")  # fmt: skip
        raise LostServiceError(e.detail, then) from None
    finally:
        screen.close()  # whatever happened, the terminal gets its cursor back


class _Attached:
    """One attached petition's output, events and input (see :func:`run_attached`)."""

    def __init__(
        self, session: Session, request: SubmitRequest, screen: Screen, forward_stdin: bool
    ) -> None:
        self.session = session
        self.request = request
        self.screen = screen
        self.forward_stdin = forward_stdin
        self.progress: ProgressView | None = None
        self.queued: str | None = None  # why it waits, while it is known to wait
        self.began = False  # it is known to have started
        self.queue = ""
        self.interrupts: _Interrupts | None = None
        self.cancel_sent = False
        # A Ctrl+C interrupted a write: its reader takes nothing, print no more.
        self.drop_output = False

    def run(self) -> int:
        session, request = self.session, self.request
        with _Interrupts() as interrupts:
            self.interrupts = interrupts
            reply = session.call("submit", request.to_wire())  # refusals raise here
            self.queue = queue = reply["queue"]
            request.id = str(reply.get("id") or request.id)  # named by the service if unnamed
            stdin = _StdinForwarder(session, reply["handle"]) if self.forward_stdin else None
            # Two batched reads are always in flight: while this process writes one batch
            # out, the service already sends the next, and it never waits for a request.
            session.send(queue, "get_batch")
            session.send(queue, "get_batch")
            reading = False  # stdin is registered
            writing = False  # the connection is registered for writing too
            # A file or /dev/null cannot be polled (epoll refuses them): always readable.
            polled = True
            service_fd = session.fileno()
            with selectors.DefaultSelector() as sel:
                sel.register(service_fd, selectors.EVENT_READ, "service")
                sel.register(interrupts.read_fd, selectors.EVENT_READ, "signal")
                while True:
                    if interrupts.count >= 2:
                        return self._stop_waiting(sel)
                    if interrupts.count == 1:
                        self._cancel()
                    timeout = _TICK_SECONDS if self.screen.has_live else None
                    if stdin is not None:
                        wants = stdin.wants_input()
                        if wants and not polled:
                            stdin.read_input()
                            wants = False
                        if polled and wants != reading:
                            reading = wants
                            try:
                                if reading:
                                    sel.register(0, selectors.EVENT_READ, "stdin")
                                else:
                                    sel.unregister(0)
                            except PermissionError:
                                polled = reading = False
                                timeout = 0  # read it at once, on the next turn
                        if stdin.wants_to_send() != writing:
                            writing = not writing
                            mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if writing else 0)
                            sel.modify(service_fd, mask, "service")
                    events = sel.select(timeout)
                    if not events:
                        self.screen.tick()
                        continue
                    for key, mask in events:
                        if key.data == "signal":
                            interrupts.drain()
                        elif key.data == "stdin" and stdin is not None:
                            stdin.read_input()
                        elif mask & selectors.EVENT_WRITE and stdin is not None:
                            stdin.send()
                    if not any(k.data == "service" and m & selectors.EVENT_READ for k, m in events):
                        continue
                    items = session.recv(wait=False, views=True)
                    if items is NOTHING:
                        continue  # only the answers of input sent (dropped) had arrived
                    code = self._batch(items, stdin)
                    if code is not None:
                        return code

    def _cancel(self) -> None:
        """The first Ctrl+C: ask the service to cancel the petition (once)."""
        if self.cancel_sent:
            return
        self.cancel_sent = True
        # Its answer follows the batch in flight; the end says how it went.
        self.session.send(None, "call", "cancel", {"id": self.request.id}, skip=True)
        text = f"cancelling petition {self.request.id} (press Ctrl+C again to stop waiting)"
        self._write(self.screen.notice, text)

    def _write(self, write: Callable[..., object], *args: Any) -> None:
        """Call ``write(*args)``, which may block on a reader that takes nothing. A
        Ctrl+C interrupts it: the petition is cancelled and no more of its output is
        printed (the service, blocked sending the next batch to this client, hears the
        cancel only once the client reads again)."""
        assert self.interrupts is not None
        if not self.interrupts.writing(write, *args):
            self.drop_output = True
            self._cancel()

    def _batch(self, items: list[Any], stdin: _StdinForwarder | None) -> int | None:
        """Show one batch; the exit code once the petition has ended (else None)."""
        last = items[-1] if items else None
        if not (type(last) is dict and last.get("event") in ("end", "detached")):
            self.session.send(self.queue, "get_batch")
        screen = self.screen
        for item in items:
            if type(item) is tuple:
                self.began = True
                if self.queued is not None:
                    self._started()
                if self.drop_output:
                    continue
                fd, data = (1 if item[0] == "stdout" else 2), item[1]
                try:
                    self._write(screen.output, fd, data)
                except BrokenPipeError:
                    # Our reader went away (``orcha run ... | head``): like a command
                    # killed by SIGPIPE. Closing the session cancels the petition.
                    return 128 + signal.SIGPIPE
                continue
            event = item.get("event")
            if event == "stdin":
                if stdin is not None:
                    stdin.credit(item)
                continue
            if event == "queued":
                self._waits(str(item.get("reason") or "waiting"))
                continue
            self.began = True  # any other event comes once it has started
            if self.queued is not None:
                self._started()
            if event == "progress":
                if self.progress is None:
                    from orcha.client.progress import ProgressView

                    self.progress = ProgressView(self.request.id or "", screen)
                self.progress.update(item.get("value"), item.get("target"),
                                     str(item.get("unit") or ""))  # fmt: skip
                continue
            if event in ("end", "detached") and self.progress is not None:
                self.progress.close()
                self.progress = None
            if event == "end":
                return end_code(item, self.request.id or "", screen)
            if event == "detached":
                screen.notice(str(item.get("message")))
                return int(ExitCode.LOST_SERVICE)
            # "started" needs no more
        return None

    def _waits(self, reason: str) -> None:
        """It waits, and why: on a terminal the live line says so (kept up to date);
        otherwise one line, the first time."""
        from orcha.units import local_reason  # a start time in the user's zone

        reason = local_reason(reason, getattr(self.request.schedule, "begin", None), time.time())
        first, self.queued = self.queued is None, reason
        if self.screen.tty:
            text = f"orcha: queued ({reason})"
            self.screen.live(lambda width: text[:width])
        elif first:
            self.screen.notice(f"queued ({reason})")

    def _started(self) -> None:
        self.queued = None
        if self.screen.tty:
            self.screen.live(None)

    def _stop_waiting(self, sel: selectors.BaseSelector) -> int:
        """A second Ctrl+C: print what the service has sent already (for a moment at
        most), then stop waiting; the service still stops the petition."""
        deadline = time.monotonic() + _LAST_DRAIN_SECONDS
        try:
            sel.modify(self.session.fileno(), selectors.EVENT_READ, "service")  # no input
            while (left := deadline - time.monotonic()) > 0:
                if not any(k.data == "service" and m & selectors.EVENT_READ
                           for k, m in sel.select(left)):  # fmt: skip
                    continue
                items = self.session.recv(wait=False, views=True)
                if items is NOTHING:
                    continue
                code = self._batch(items, None)
                if code is not None:
                    return code
        except (LostServiceError, OSError):
            pass
        self._write(
            self.screen.notice, f"stopped waiting; petition {self.request.id} is being cancelled"
        )
        return int(ExitCode.INTERRUPTED)


def run_in_foreground(
    settings: Settings,
    kind: str,
    petition_id: str | None,
    params: dict[str, Any],
    priority: int | None,
    detach: bool = False,
    schedule: Schedule | None = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    as_json: bool = False,
    stdin: bool = False,
) -> int:
    """Submit a petition of ``kind`` with this process's cwd and environment (``cwd``
    and ``env`` override them), stream its output and return the exit code the client
    should end with. With ``detach``, print its ID once it is queued and return 0: it
    runs whether or not this client stays (``as_json``: print ``{"id", "state"}`` as
    JSON instead, one line when piped). Without ``petition_id``, the service names it
    by its record number. With ``stdin``, this process's stdin goes to the petition,
    unless it is a terminal (or there is none) or ``detach`` is given: then the petition
    reads /dev/null.

    Raises OrchaError subclasses (no service, wrong key, refused, lost service).
    """
    from orcha.client.requests import host_name, user_name, working_directory

    environment = dict(os.environ)
    if env:
        environment.update(env)
    forward = stdin and not detach and piped_stdin()
    request = SubmitRequest(
        kind, petition_id, params, priority, working_directory(cwd), environment,
        attach=not detach, user=user_name(), host=host_name(), schedule=schedule,
        stdin=forward,
    )  # fmt: skip
    session = Session.open(settings)
    try:
        if detach:
            reply = session.call("submit", request.to_wire())
            if as_json:  # as orcha.cli.output prints JSON: indented only on a terminal
                import json

                doc = {"id": reply["id"], "state": reply["state"]}
                sys.stdout.write(json.dumps(doc, indent=2 if sys.stdout.isatty() else None) + "\n")
            else:
                sys.stdout.write(f"{reply.get('id') or petition_id}\n")
            return 0
        return run_attached(session, request, forward)
    finally:
        session.close()
