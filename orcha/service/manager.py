"""Manager: the service's policy, the original Orcha API's base class that the core uses.

A :class:`Manager` turns messages (and orcha's submit requests) into petitions and says
how many may run; :class:`orcha.service.kinds.KindManager` is the one ``orcha serve``
uses, serving the plugins' kinds. ``orcha.lib.Manager`` is this same class.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from orcha.errors import UnknownKindError

if TYPE_CHECKING:
    import subprocess

    from orcha.model import ActionCallbackT, Message, Petition
    from orcha.plugins.contract import Kind
    from orcha.protocol.messages import SubmitRequest
    from orcha.service.service import Service

__all__ = ["Manager"]


class Manager:
    """The service's policy: how messages become petitions, and when petitions may start.

    Subclass it and override :meth:`convert_to_petition` (and optionally
    :meth:`predicate`, :meth:`on_start`, :meth:`on_finish`), then serve it with
    ``start_service(ServiceWrapper(manager))``.
    """

    def __init__(self, max_running: int | None = None) -> None:
        self._max_running = max_running
        self._service: Service | None = None

    def attach(self, service: Service) -> None:
        """Called by the service that serves this manager, before it accepts clients."""
        self._service = service

    @property
    def max_running(self) -> int:
        """How many petitions :meth:`predicate` lets run at once (default: CPU cores)."""
        if self._max_running is not None:
            return self._max_running
        if self._service is not None and self._service.settings.max_running is not None:
            return self._service.settings.max_running
        return os.cpu_count() or 1

    @property
    def running_processes(self) -> int:
        """How many petitions are running now."""
        return self._service.scheduler.running_count if self._service is not None else 0

    def predicate(self, *_: Any) -> bool:
        """The default condition: fewer petitions running than :attr:`max_running`."""
        return self.running_processes < self.max_running

    def convert_to_petition(self, m: Message) -> Petition | None:
        """Turn a client's message into a petition; None if the message is invalid."""
        return None

    def kinds(self) -> dict[str, Kind]:
        """The petition kinds this manager serves to orcha's own clients, by name."""
        return {}

    def petition_from_request(
        self, request: SubmitRequest, queue: Any, *, checked: dict[str, Any] | None = None
    ) -> Petition:
        """Build the petition for an orcha client's submit request (see ``orcha.kinds``).
        This manager serves no kinds: UnknownKindError saying which service this is (a
        plugin's own, such as the tutorial's ``orcha hello-world serve``) and what to run
        instead."""
        kinds = list(self.kinds())
        if kinds:
            raise UnknownKindError(request.kind, kinds)
        command = started_as()
        manager = f"{type(self).__module__}.{type(self).__qualname__}"
        words = command.split()
        plugin_help = f" ('{' '.join(words[:2])} --help')" if len(words) > 2 else ""
        raise UnknownKindError(
            request.kind,
            [],
            served_by=f"this service is a plugin's own ('{command}', manager {manager}): it "
            f"takes only that plugin's messages and serves no petition kind, so not "
            f"{request.kind!r}. Send with that plugin's commands{plugin_help}, or start "
            "'orcha serve' at another address for orcha's own commands ('orcha serve "
            "--address PATH', then 'orcha --address PATH ...')",
        )

    def run(self, petition: Petition, register: ActionCallbackT) -> None:
        """Run one attempt of an admitted petition, blocking until it is done (the
        service calls it in the petition's own thread, once per attempt): the original
        API's way, the petition's ``action``. ``register(pid)`` hands the service each
        process the attempt starts, so a cancel stops its whole tree."""
        petition.action(register, petition)

    def startable(self, petition: Petition) -> bool:
        """Whether an attempt of ``petition`` can be run by :meth:`start` instead of
        :meth:`run` (never, here; orcha's kinds may: ``Kind.start``)."""
        return False

    def start(
        self, petition: Petition, register: ActionCallbackT
    ) -> subprocess.Popen[bytes] | None:
        """Start one attempt of a :meth:`startable` petition without waiting for it: its
        process, to be pumped, whose exit code then goes to :meth:`end`; None if it did
        not start (its code is set)."""
        raise NotImplementedError

    def end(self, petition: Petition, code: int | None) -> None:
        """The attempt :meth:`start` began has ended with ``code``."""
        raise NotImplementedError

    def on_start(self, petition: Petition) -> None:
        """Called in the petition's thread just before its action runs."""

    def on_finish(self, petition: Petition) -> None:
        """Called in the petition's thread after its action returned."""


def started_as() -> str:
    """The command that started this process, as the user typed it (``orcha hello-world
    serve``): its leading words up to the first option; the script's name when it was
    not started as ``orcha``."""
    import sys

    argv = list(sys.argv)
    program = os.path.basename(argv[0]) if argv else "python"
    if program in ("orcha", "__main__.py", "-m") or argv[0].endswith("orcha/__main__.py"):
        program = "orcha"
    words = [program]
    for word in argv[1:]:
        if word.startswith("-"):
            break
        words.append(word)
    return " ".join(words)
