"""Running a petition in the foreground: submit, stream its output live, handle Ctrl+C.

Signal handling follows the service's rule: the SIGINT handler only counts, and the loop
(woken through the signal wakeup descriptor) acts. First Ctrl+C: ask the service to
cancel and keep printing until the petition has ended (exit 130). Second Ctrl+C: stop
waiting at once (the service still stops the petition, because the session closes).
"""

from __future__ import annotations

import os
import selectors
import signal
import sys

from orcha.client.session import Session
from orcha.errors import ExitCode, LostServiceError
from orcha.protocol.messages import SubmitRequest

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import Any

    from orcha.client.progress import ProgressView
    from orcha.protocol.schedule import Schedule
    from orcha.settings import Settings


def notice(text: str) -> None:
    """One line for the user on stderr (stdout carries only the petition's output)."""
    try:
        sys.stderr.write(f"orcha: {text}\n")
        sys.stderr.flush()
    except OSError:
        pass


class _Interrupts:
    """Counts SIGINTs and makes them wake a selector.

    A client started with SIGINT ignored (``orcha run ... &`` in a script, ``nohup``)
    keeps ignoring it, as shells intend for background jobs: Ctrl+C in the terminal is
    then not meant for it, and its petition is not cancelled.
    """

    def __init__(self) -> None:
        self.count = 0
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def _handler(self, signum: int, frame: Any) -> None:
        self.count += 1

    def __enter__(self) -> _Interrupts:
        self._old_handler = signal.getsignal(signal.SIGINT)
        if self._old_handler is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, self._handler)
        self._old_fd = signal.set_wakeup_fd(self.write_fd)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.set_wakeup_fd(self._old_fd)
        if self._old_handler is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, self._old_handler)
        os.close(self.read_fd)
        os.close(self.write_fd)

    def drain(self) -> None:
        try:
            while os.read(self.read_fd, 64):
                pass
        except BlockingIOError:
            pass


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def run_attached(session: Session, request: SubmitRequest) -> int:
    """Submit ``request`` and stream its output until it ends; return the exit code.

    Raises PetitionError if the service refuses it, LostServiceError if the service goes
    away meanwhile.
    """
    progress: list[ProgressView] = []  # the view, once a progress report arrives
    try:
        return _stream(session, request, progress)
    finally:
        if progress:
            progress[0].close()  # whatever happened, the terminal gets its cursor back


def _stream(session: Session, request: SubmitRequest, progress_view: list[ProgressView]) -> int:
    with _Interrupts() as interrupts:
        reply = session.call("submit", request.to_wire())  # refusals raise here
        queue, request.id = reply["queue"], str(reply.get("id") or request.id)  # its ID
        # Two batched reads are always in flight: while this process writes one batch
        # out, the service already sends the next, and it never waits for a request.
        session.send(queue, "get_batch")
        session.send(queue, "get_batch")
        cancel_sent = False
        progress: ProgressView | None = None
        with selectors.DefaultSelector() as sel:
            sel.register(session.fileno(), selectors.EVENT_READ, "service")
            sel.register(interrupts.read_fd, selectors.EVENT_READ, "signal")
            while True:
                if interrupts.count >= 2:
                    notice(f"stopped waiting; petition {request.id} is being cancelled")
                    return int(ExitCode.INTERRUPTED)
                if interrupts.count == 1 and not cancel_sent:
                    cancel_sent = True
                    notice(f"cancelling petition {request.id} (press Ctrl+C again to stop waiting)")
                    # Its answer follows the batch in flight; the end says how it went.
                    session.send(None, "call", "cancel", {"id": request.id}, skip=True)
                ready = [k.data for k, _ in sel.select()]
                if "signal" in ready:
                    interrupts.drain()
                if "service" not in ready:
                    continue
                items = session.recv()
                last = items[-1] if items else None
                if not (type(last) is dict and last.get("event") in ("end", "detached")):
                    session.send(queue, "get_batch")
                for item in items:
                    if type(item) is tuple:
                        try:
                            _write(1 if item[0] == "stdout" else 2, item[1])
                        except BrokenPipeError:
                            # Our reader went away (``orcha run ... | head``): like a command
                            # killed by SIGPIPE. Closing the session cancels the petition.
                            return 128 + signal.SIGPIPE
                        continue
                    event = item.get("event")
                    if event == "progress":
                        if progress is None:
                            from orcha.client.progress import ProgressView

                            progress = ProgressView(request.id)
                            progress_view.append(progress)
                        progress.update(item.get("value"), item.get("target"),
                                        str(item.get("unit") or ""))  # fmt: skip
                        continue
                    if event in ("end", "detached") and progress is not None:
                        progress.close()
                        progress_view.clear()
                        progress = None
                    if event == "end":
                        return _end_code(item, request.id)
                    if event == "detached":
                        notice(str(item.get("message")))
                        return int(ExitCode.LOST_SERVICE)
                    # "started" needs no action


def _end_code(event: dict[str, Any], petition_id: str) -> int:
    state, code, message = event.get("state"), int(event.get("code", 1)), event.get("message")
    if event.get("outcome") is not None:
        import json

        notice(f"outcome: {json.dumps(event['outcome'])}")
    if state == "SUCCEEDED":
        return 0
    if state == "CANCELLED":
        if event.get("by_client"):
            return int(ExitCode.INTERRUPTED)
        notice(f"petition {petition_id} was cancelled: {message or 'by another client'}")
        return int(ExitCode.CANCELLED)
    if state == "INTERRUPTED":
        raise LostServiceError("the petition was interrupted")
    if message:
        notice(message)
    return code if code else int(ExitCode.FAILED)


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
) -> int:
    """Submit a petition of ``kind`` with this process's cwd and environment (``cwd``
    and ``env`` override them), stream its output and return the exit code the client
    should end with. With ``detach``, print its ID once it is queued and return 0: it
    runs whether or not this client stays (``as_json``: print ``{"id", "state"}`` as
    JSON instead, one line when piped). Without ``petition_id``, the service names it
    by its record number.

    Raises OrchaError subclasses (no service, wrong key, refused, lost service).
    """
    import pwd
    import socket

    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    environment = dict(os.environ)
    if env:
        environment.update(env)
    request = SubmitRequest(
        kind, petition_id, params, priority, cwd or os.getcwd(), environment,
        attach=not detach, user=user, host=socket.gethostname(), schedule=schedule,
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
        return run_attached(session, request)
    finally:
        session.close()
