"""The operations table: every operation a client may ask of the service, declared once.

Each :class:`Operation` names its request type (a class whose ``from_wire`` checks every
field of the request, plain data, and raises ValueError naming the bad one), its response
(the fields its reply may carry), the service's handler (``orcha.service.handlers``), the
client's function (``orcha.client.operations``), the error names (see
``orcha.errors.WIRE_ERRORS``) it can answer with, and whether items stream back through a
served queue after the reply. Each name is also a typeid of the service's
``multiprocessing.managers`` registry (``orcha.protocol.managed``). Adding an operation is
one declaration here, one handler there and one client function.

``submit``'s request, :class:`~orcha.protocol.messages.SubmitRequest`, lives with the
frames in ``orcha.protocol.messages``, as does ``stdin``'s: a client that only submits
(``orcha run``) does not import this table at start-up. Plain classes, no ``typing``
or ``dataclasses``.
"""

from __future__ import annotations

from orcha.protocol.arrays import ArrayRequest
from orcha.protocol.change_requests import EditRequest, ReleaseRequest, RestartRequest
from orcha.protocol.messages import StdinRequest, SubmitRequest
from orcha.protocol.requests import (
    CancelRequest,
    CleanRequest,
    FollowRequest,
    GroupRequest,
    IdsRequest,
    KindsRequest,
    LogsRequest,
    MessageRequest,
    NoRequest,
    PauseRequest,
    ShutdownRequest,
    StateRequest,
    StatusRequest,
    WatchRequest,
)

TYPE_CHECKING = False  # typing is not imported at run time: it costs start-up
if TYPE_CHECKING:
    from typing import Any


class Operation:
    """One operation: ``name`` (also its typeid); ``request``, the class that checks and
    holds its request; ``reply``, the fields its reply may carry; ``errors``, the wire
    error names it may answer with; ``refusal``, how a refusal of an invalid request
    begins; ``handler``, the name of the service's handler; ``client``, the name of the
    client's function in ``orcha.client.operations``; ``stream``: None, ``"output"`` (an
    attached submit: its output and end are read from the served queue the reply names in
    ``"queue"``) or ``"events"`` (what the service pushes to this client later, read from
    the served queue the reply names in ``"queue"``)."""

    __slots__ = ("client", "errors", "handler", "name", "refusal", "reply", "request", "stream")

    def __init__(
        self,
        name: str,
        request: Any,
        reply: tuple[str, ...],
        errors: tuple[str, ...] = ("refused",),
        refusal: str = "invalid request: ",
        stream: str | None = None,
        client: str | None = None,
    ) -> None:
        self.name = name
        self.request = request
        self.reply = reply
        self.errors = errors
        self.refusal = refusal
        self.stream = stream
        self.handler = name
        self.client = client or name

    def parse(self, obj: Any) -> Any:
        """The checked request; ValueError with the refusal's text otherwise."""
        if self.request is not MessageRequest and not isinstance(obj, dict):
            raise ValueError(f"{self.refusal}a request is a dict of its fields")
        try:
            return self.request.from_wire(obj)
        except ValueError as e:
            raise ValueError(f"{self.refusal}{e}") from None

    def __repr__(self) -> str:
        return f"Operation({self.name!r})"


_SUBMIT_ERRORS = ("refused", "duplicate", "unknown", "no_petition", "not_saved")
_INFO = ("version", "pid", "address", "kinds", "runtime_kinds", "running", "queued",
         "max_running", "cpus_in_use", "gpus", "groups", "paused", "petitions",
         "served_objects", "sessions", "output_peak_bytes")  # fmt: skip
_HEALTH = ("healthy", "state", "scheduler", "abandoned", "queued", "running", "cpus_in_use",
           "capacity", "paused", "plugins", "dask")  # fmt: skip

#: Every operation, by name.
OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("submit", SubmitRequest, ("handle", "id", "state", "queue"), _SUBMIT_ERRORS,
                  refusal="invalid petition: ", stream="output"),
        Operation("send", MessageRequest, ("id", "state"), _SUBMIT_ERRORS, refusal=""),
        Operation("cancel", CancelRequest, ("results", "id"), refusal=""),
        Operation("status", StatusRequest,
                  ("petitions", "missing", "arrays", "hidden", "hidden_queued", "next", "text",
                   "count"),
                  refusal=""),
        Operation("clean", CleanRequest, ("removed", "results"), ("refused", "not_saved"),
                  refusal=""),
        Operation("wait", IdsRequest, ("ended", "pending", "missing", "queue", "arrays"),
                  stream="events"),
        Operation("follow", FollowRequest, ("handles", "missing", "queue"), stream="events"),
        Operation("watch", WatchRequest, ("missing", "ends", "queue", "recent"), stream="events"),
        Operation("logs", LogsRequest, ("state", "code", "output"), ("refused", "no_petition")),
        Operation("group", GroupRequest, ("groups",), ("refused", "not_saved")),
        Operation("pause", PauseRequest, ("results", "groups")),
        Operation("resume", PauseRequest, ("results", "groups")),
        Operation("health", NoRequest, _HEALTH),
        Operation("state", StateRequest, ("plugin", "state", "key", "value", "removed"),
                  ("refused", "unknown", "no_petition", "not_saved")),
        Operation("kinds", KindsRequest, ("kinds", "kind", "removed"),
                  ("refused", "unknown", "not_saved")),
        Operation("info", NoRequest, _INFO),
        Operation("reload", NoRequest, ("path", "changed", "restart", "warnings")),
        Operation("shutdown", ShutdownRequest, ("pid", "running", "queued", "stopping")),
        Operation("release", ReleaseRequest, ("results",)),
        Operation("edit", EditRequest, ("id", "priority", "schedule", "edited"),
                  ("refused", "no_petition")),
        Operation("restart", RestartRequest, ("results", "restarted"),
                  ("refused", "no_petition", "duplicate", "unknown", "not_saved")),
        Operation("submit_array", ArrayRequest, ("name", "ids"), _SUBMIT_ERRORS,
                  refusal="invalid array: "),
        Operation("stdin", StdinRequest, ("buffered",)),
        Operation("workers", NoRequest, ("executor", "scheduler", "dashboard", "workers")),
    )
}  # fmt: skip
