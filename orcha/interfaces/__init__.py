"""The data types of the original Orcha API: messages, petitions and the service entry.

A client sends a :class:`Message`; the service's :class:`orcha.lib.Manager` turns it
into a :class:`Petition`, which waits in a priority queue until its ``condition`` holds,
then its ``action`` runs. Output goes back to the client through ``petition.queue``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from orcha.lib import Manager

__all__ = [
    "ActionCallbackT",
    "Message",
    "P",
    "Petition",
    "ServiceWrapper",
    "start_service",
]

#: The callback an action calls with the PID of each process it starts, so the service
#: can stop that process (and everything it started) when the petition is cancelled.
ActionCallbackT = Callable[[int], None]


@dataclass
class Message:
    """What a client sends: the petition's ``id`` and free-form ``extras``."""

    id: int | str
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(order=True)
class Petition:
    """One unit of work in the service's queue.

    Contract for subclasses (as in the original Orcha):

    * decorate with ``@dataclass(order=True)`` and mark every new field
      ``field(compare=False)``: petitions compare by ``priority`` (lower runs first);
      once queued by the service, by their :attr:`rank` (see below);
    * ``priority`` is not an ``__init__`` argument; set it in ``__post_init__``;
    * ``action(cb, petition)`` does the work, blocking until it is done; it calls ``cb(pid)``
      for each process it starts and may call :meth:`finish` with an exit code;
    * ``condition(petition)`` says whether the petition may start now.

    Order: petitions compare by ``(rank, priority)``. ``rank`` is empty until the service
    queues the petition, so petitions never queued compare by ``priority`` alone; at
    enqueue the service sets it to ``(effective priority at arrival, arrival sequence)``
    (:meth:`orcha.service.scheduler.Scheduler.order_key`), unique per petition, so queued
    petitions run by effective priority, first come first served among equals, and the
    order (aging included) is fixed at arrival: the queue never needs re-sorting.
    """

    rank: tuple[Any, ...] = field(init=False, default=(), compare=True, repr=False)
    priority: int = field(init=False, default=0, compare=True)
    id: int | str = field(compare=False)
    queue: Any = field(compare=False, repr=False)
    action: Callable[[ActionCallbackT, Any], None] = field(compare=False, repr=False)
    condition: Callable[[Any], bool] = field(compare=False, repr=False)

    def communicate(self, message: Any, blocking: bool = True) -> None:
        """Send ``message`` (text or bytes) to the client, in order."""
        self.queue.put(message, blocking)

    def finish(self, ret: int | None = None) -> None:
        """End the petition with exit code ``ret`` (None means 0) and tell the client."""
        job = getattr(self, "_orcha_job", None)
        if job is not None:
            job.finish_called(ret)  # the service decides what the client receives
        else:
            self.queue.put(ret)

    @property
    def cancelled(self) -> bool:
        """Whether the petition has been asked to stop (for actions that poll)."""
        job = getattr(self, "_orcha_job", None)
        return bool(job is not None and job.cancel_requested)


P = TypeVar("P", bound=Petition)


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

    return Daemon(build_service(settings.current(), manager=service.manager)).run()
