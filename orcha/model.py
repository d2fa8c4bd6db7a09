"""The design card's nouns, shared by every layer: a client sends a :class:`Message`; a
kind turns it into a :class:`Petition`, a comparable dataclass that waits in the
service's priority queue until the predicates let it start, then its ``action`` runs and
its output goes back through ``petition.queue``.

These are the classes of the original Orcha API (``orcha.interfaces`` re-exports them,
and the tutorial's petitions subclass :class:`Petition`) and the ones the service's core
queues: one model, not two. Part of the base layer: it imports nothing of orcha's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["ActionCallbackT", "Message", "P", "Petition"]

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
    #: The service's record of it (set when it is queued): how :meth:`finish` and
    #: :attr:`cancelled` reach the service. None outside a service.
    record: Any = field(init=False, default=None, compare=False, repr=False)

    def communicate(self, message: Any, blocking: bool = True) -> None:
        """Send ``message`` (text or bytes) to the client, in order."""
        self.queue.put(message, blocking)

    def finish(self, ret: int | None = None) -> None:
        """End the petition with exit code ``ret`` (None means 0) and tell the client."""
        if self.record is not None:
            self.record.finish_called(ret)  # the service decides what the client receives
        else:
            self.queue.put(ret)

    @property
    def cancelled(self) -> bool:
        """Whether the petition has been asked to stop (for actions that poll)."""
        return bool(self.record is not None and self.record.cancel_requested)


P = TypeVar("P", bound=Petition)
