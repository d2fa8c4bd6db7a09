"""Session: a client's connection to the service (see ``orcha.protocol.messages``)."""

from __future__ import annotations

from orcha.defaults import SESSION_MAGIC
from orcha.errors import WIRE_ERRORS, ExitCode, LostServiceError, PetitionError
from orcha.protocol import messages, transport
from orcha.protocol.messages import SubmitRequest

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import Any

    from orcha.model import Message
    from orcha.protocol.wire import WireConnection as Connection
    from orcha.settings import Settings


class Session:
    """One authenticated connection; requests are answered in order.

    Frames that arrive while waiting for a reply (output of a petition already
    submitted) are kept in :attr:`pending` for the caller's stream loop.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pending: list[bytes] = []

    @classmethod
    def open(cls, settings: Settings) -> Session:
        """Connect to the service. Raises NoServiceError or AuthError."""
        conn = transport.connect(settings.address, settings.client_key())
        try:
            conn.send_bytes(SESSION_MAGIC)
        except OSError as e:
            conn.close()
            raise LostServiceError(str(e)) from e
        return cls(conn)

    def fileno(self) -> int:
        return self.conn.fileno()

    def recv(self) -> bytes:
        """Next frame from the service; LostServiceError if the connection broke."""
        if self.pending:
            return self.pending.pop(0)
        try:
            return self.conn.recv_bytes()
        except (EOFError, OSError) as e:
            raise LostServiceError(str(e) or "connection closed") from e

    def send(self, frame: bytes) -> None:
        try:
            self.conn.send_bytes(frame)
        except OSError as e:
            raise LostServiceError(str(e)) from e

    def request(
        self, obj: dict[str, Any] | None = None, raw: bytes | None = None
    ) -> dict[str, Any]:
        """Send a request and return its successful reply; PetitionError if refused."""
        self.send(raw if raw is not None else messages.encode(obj or {}))
        while True:
            try:
                frame = self.conn.recv_bytes()
            except (EOFError, OSError) as e:
                raise LostServiceError(str(e) or "connection closed") from e
            if frame[:1] == b"{":
                answer = messages.decode(frame)
                if "re" in answer:
                    if not answer.get("ok"):
                        code = WIRE_ERRORS.get(answer.get("error", ""), ExitCode.REFUSED)
                        raise PetitionError(str(answer.get("message")), code)
                    return answer
            self.pending.append(frame)

    def submit(self, request: SubmitRequest) -> dict[str, Any]:
        return self.request(request.to_wire())

    def send_message(self, message: Message) -> dict[str, Any]:
        """Submit an original-API message (it may hold proxies, so it travels pickled)."""
        import pickle

        return self.request(raw=bytes((messages.LEGACY,)) + pickle.dumps(message))

    def cancel(self, petition_id: str) -> dict[str, Any]:
        return self.request({"op": "cancel", "id": petition_id})

    def info(self) -> dict[str, Any]:
        return self.request({"op": "info"})

    def close(self) -> None:
        self.conn.close()
