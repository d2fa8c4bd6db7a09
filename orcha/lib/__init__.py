"""Managers of the original Orcha API: :class:`Manager` (service side) and
:class:`ClientManager` (client side)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orcha.errors import NoServiceError
from orcha.model import Message
from orcha.service.manager import Manager

if TYPE_CHECKING:
    from orcha.client.session import Session
    from orcha.protocol.managed import QueueManager
    from orcha.settings import Settings

__all__ = ["ClientManager", "Manager"]


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
                else (
                    base.key_override.decode("utf-8", "surrogateescape")
                    if base.key_override
                    else None
                ),
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
        """Submit ``message`` (the ``send`` operation, on this client's connection: if
        the connection closes, the petition is cancelled). Raises PetitionError if the
        service refuses it."""
        self.session.call("send", message)

    def finish(self, message: Message | int | str) -> None:
        """Cancel the petition of ``message`` (or with that ID)."""
        petition_id = message.id if isinstance(message, Message) else message
        self.session.call("cancel", {"id": str(petition_id)})

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
