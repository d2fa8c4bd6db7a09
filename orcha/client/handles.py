"""What :class:`orcha.Client` hands back for petitions: a submitted petition's handle,
the petitions being followed, and the exit code of an ended petition."""

from __future__ import annotations

from orcha.client import operations
from orcha.client.session import Session
from orcha.errors import ExitCode

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from orcha.client.api import Client

__all__ = ["Following", "PetitionHandle", "exit_code"]


def exit_code(summary: dict[str, Any]) -> int:
    """The exit code for a petition that ended as ``summary`` (``{"state", "code"}``)
    says, as ``orcha follow`` and ``orcha wait`` see it: 0 if it succeeded, 207 if it was
    cancelled, 206 if the service was interrupted, else its own code (1 if it has none)."""
    state, code = summary.get("state"), summary.get("code")
    if state == "SUCCEEDED":
        return 0
    if state == "CANCELLED":
        return int(ExitCode.CANCELLED)
    if state == "INTERRUPTED":
        return int(ExitCode.LOST_SERVICE)
    return int(code) if code else int(ExitCode.FAILED)


def _attached_code(end: dict[str, Any]) -> int:
    """The exit code of a petition that ended while attached, as ``orcha run`` ends."""
    if end.get("event") == "detached" or end.get("state") == "INTERRUPTED":
        return int(ExitCode.LOST_SERVICE)
    if end.get("state") == "CANCELLED" and end.get("by_client"):
        return int(ExitCode.INTERRUPTED)
    return exit_code(end)


class PetitionHandle:
    """A petition this client submitted.

    ``id`` is its ID. After :meth:`output` or :meth:`wait` has seen it end, ``state``
    (``SUCCEEDED``, ``FAILED``, ``CANCELLED``...), ``code`` (the exit code :meth:`wait`
    returns), ``message`` (why it failed, if it did) and ``outcome`` (what its kind
    returned, if anything) are set; before, they are None.
    """

    def __init__(
        self, client: Client, petition_id: str, session: Session | None, queue: str = ""
    ) -> None:
        self.id = petition_id
        self.detached = session is None
        self.state: str | None = None
        self.code: int | None = None
        self.message: str | None = None
        self.outcome: Any = None
        self._client = client
        self._session = session  # attached: the session its output and end arrive on
        self._queue = queue  # ... read from this served queue

    def __repr__(self) -> str:
        return f"<PetitionHandle {self.id!r} {self.state or 'submitted'}>"

    def output(self) -> Iterator[tuple[str, bytes]]:
        """Its output as it is written, ``(stream, data)`` chunks in order (``stream``
        is ``"stdout"`` or ``"stderr"``), until it ends. Of a detached petition, its
        whole output from the start (as ``orcha follow`` prints it)."""
        if self.code is not None:
            return
        if self._session is not None:
            for item in operations.attached_items(self._session, self._queue):
                if isinstance(item, tuple):
                    yield item
                elif item.get("event") in ("end", "detached"):
                    self._ended(item, _attached_code(item))
            return
        for _, stream, data in self._client.follow([self.id]):
            if stream == "end":
                self._ended(data, exit_code(data))
            elif stream != "skipped":
                yield stream, data

    def wait(self) -> int:
        """Block until it ends; its exit code, the code ``orcha run`` would exit with
        (0 succeeded; its command's code if it failed; 124 timed out; 130 cancelled by
        :meth:`cancel` or by closing this client; 207 cancelled by someone else...).
        Output not read yet is discarded."""
        if self.code is None:
            if self._session is not None:
                for _ in self.output():
                    pass
            else:
                summary = self._client.wait_summaries([self.id])[self.id]
                self._ended(summary, exit_code(summary))
        assert self.code is not None
        return self.code

    def cancel(self) -> None:
        """Ask the service to cancel it (its process tree is stopped); returns at once.
        :meth:`wait` then returns 130 (attached) or 207 (detached). Nothing happens if it
        has already ended."""
        if self.code is not None:
            return
        if self._session is not None:
            operations.request_cancel(self._session, self.id)
        else:
            self._client.cancel_each([self.id])

    def close(self) -> None:
        """Close its connection: an attached petition that has not ended is cancelled."""
        if self._session is not None:
            self._client._forget(self._session)

    def _ended(self, end: dict[str, Any], code: int) -> None:
        self.state, self.code = end.get("state"), code
        self.message, self.outcome = end.get("message"), end.get("outcome")
        if end.get("event") == "detached":
            self.state = "DETACHED"
        self.close()


class Following:
    """Petitions being followed (see :meth:`Client.follow`).

    ``ids`` are those followed, in the order asked; ``missing`` the IDs no petition has.
    Iterating yields ``(id, stream, data)``: output chunks (``stream`` ``"stdout"`` or
    ``"stderr"``, ``data`` bytes), and once per petition ``(id, "end", summary)`` with
    ``summary`` ``{"id", "state", "code", "message"}``. It stops after the last end.
    If this client read too slowly, ``(id, "skipped", {"message"})`` says where its
    output goes on from the petition's log instead of live (nothing is missing but
    what the log did not keep).
    """

    def __init__(
        self, client: Client, session: Session, ids: list[str], lines: int | None = None
    ) -> None:
        self._client = client
        self._session = session
        try:
            self._names, self.missing, self._queue = operations.follow(session, ids, lines)
        except BaseException:
            client._forget(session)
            raise
        self.ids = [self._names[h] for h in sorted(self._names)]

    def __iter__(self) -> Iterator[tuple[str, str, Any]]:
        ended: set[int] = set()
        try:
            items = operations.followed_items(self._session, self._queue)
            while len(ended) < len(self._names):
                item = next(items)
                if isinstance(item, tuple):
                    stream, handle, data = item
                    yield self._names.get(handle, "?"), stream, data
                    continue
                if item.get("event") == "skipped":
                    yield self._names.get(item["handle"], "?"), "skipped", item
                    continue
                ended.add(item["handle"])
                yield self._names.get(item["handle"], "?"), "end", item
        finally:
            self._client._forget(self._session)
