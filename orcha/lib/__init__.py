"""Managers of the original Orcha API: :class:`Manager` (service side) and
:class:`ClientManager` (client side)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from orcha.errors import NoServiceError, UnknownKindError
from orcha.interfaces import Message, Petition

if TYPE_CHECKING:
    from orcha.client.session import Session
    from orcha.kinds import Kind
    from orcha.protocol.managed import QueueManager
    from orcha.protocol.messages import SubmitRequest
    from orcha.service.service import Service
    from orcha.settings import Settings

__all__ = ["ClientManager", "Manager"]


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

    def petition_from_request(self, request: SubmitRequest, queue: Any) -> Petition:
        """Build the petition for an orcha client's submit request (see ``orcha.kinds``)."""
        raise UnknownKindError(request.kind, list(self.kinds()))

    def on_start(self, petition: Petition) -> None:
        """Called in the petition's thread just before its action runs."""

    def on_finish(self, petition: Petition) -> None:
        """Called in the petition's thread after its action returned."""


class ClientManager:
    """A client's connection to the service.

    ``connect()`` opens it; ``manager.Queue()`` makes a queue in the service for a
    petition's output; ``send(message)`` submits; ``finish(message)`` cancels. If this
    process dies, the service cancels every petition it sent that has not finished.
    """

    def __init__(self, address: str | None = None, key: str | None = None) -> None:
        from orcha import settings

        if address is None and key is None:
            self.settings: Settings = settings.current()
        else:
            base = settings.current()
            self.settings = settings.resolve(
                address=address or str(base.address),
                key=key
                if key is not None
                else (base.key_override.decode() if base.key_override else None),
            )
        self.manager: QueueManager | None = None
        self._session: Session | None = None

    def connect(self) -> bool:
        """Connect to the service. Raises NoServiceError or AuthError."""
        from orcha.client.session import Session
        from orcha.protocol.managed import QueueManager

        self._session = Session.open(self.settings)
        key = self.settings.client_key()
        assert key is not None  # Session.open succeeded, so there is a key
        manager = QueueManager(address=self.settings.address.sockaddr, authkey=key)
        try:
            manager.connect()
        except OSError as e:
            raise NoServiceError(str(self.settings.address), str(e)) from e
        self.manager = manager
        return True

    @property
    def session(self) -> Session:
        if self._session is None:
            raise NoServiceError(str(self.settings.address), "call connect() first")
        return self._session

    def send(self, message: Message) -> None:
        """Submit ``message``. Raises PetitionError if the service refuses it."""
        self.session.send_message(message)

    def finish(self, message: Message | int | str) -> None:
        """Cancel the petition of ``message`` (or with that ID)."""
        petition_id = message.id if isinstance(message, Message) else message
        self.session.cancel(str(petition_id))

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
