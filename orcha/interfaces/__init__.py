"""The data types of the original Orcha API: messages, petitions and the service entry.

A client sends a :class:`Message`; the service's :class:`orcha.lib.Manager` turns it
into a :class:`Petition`, which waits in a priority queue until its ``condition`` holds,
then its ``action`` runs. Output goes back to the client through ``petition.queue``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orcha.model import ActionCallbackT, Message, P, Petition

if TYPE_CHECKING:
    from orcha.service.manager import Manager

__all__ = [
    "ActionCallbackT",
    "Message",
    "P",
    "Petition",
    "ServiceWrapper",
    "start_service",
]


class ServiceWrapper:
    """Binds a :class:`orcha.lib.Manager` to the service that serves it."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager


def start_service(service: ServiceWrapper) -> int:
    """Serve ``service.manager`` in the foreground until SIGINT/SIGTERM; return the exit code.

    The address, key and limits come from the command line (``orcha --address ...``)
    or the environment, as for ``orcha serve``.
    """
    from orcha import settings
    from orcha.service.build import build_service
    from orcha.service.daemon import Daemon
    from orcha.service.guard import serve_guarded
    from orcha.service.systemd import Notifier

    current = settings.current()

    def run(guard_pid: int | None) -> int:
        built = build_service(current, manager=service.manager)
        return Daemon(built, Notifier(main_pid=guard_pid), guard_pid).run()

    # As ``orcha serve``: this process stays as the guard (orcha.service.guard).
    return serve_guarded(current.grace, run)
