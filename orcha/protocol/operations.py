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

from orcha.protocol.messages import StdinRequest, SubmitRequest

TYPE_CHECKING = False  # typing is not imported at run time: it costs start-up
if TYPE_CHECKING:
    from typing import Any

#: Longest plugin state key accepted (keys are printed and used on command lines).
MAX_KEY_LENGTH = 256


def check_state_key(key: object) -> str:
    """A valid plugin state key; ValueError saying what is wrong otherwise."""
    if not isinstance(key, str) or not key:
        raise ValueError("a state key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValueError(f"a state key is 1-{MAX_KEY_LENGTH} printable characters")
    return key


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class Request:
    """Base of the request types: plain data in ``__slots__``, compared field by field."""

    __slots__: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__
        )

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class MessageRequest(Request):
    """``send``: an ``orcha.interfaces.Message`` of the original Orcha API, as unpickled
    with the request (it may hold a proxy of a served ``Queue``); the service checks it."""

    __slots__ = ("message",)

    def __init__(self, message: Any) -> None:
        self.message = message

    @classmethod
    def from_wire(cls, obj: Any) -> MessageRequest:
        return cls(obj)


class NoRequest(Request):
    """An operation without request fields (``info``, ``health``)."""

    __slots__ = ()

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> NoRequest:
        return cls()


class IdsRequest(Request):
    """``wait``, ``follow``, ``watch``: petition IDs (``watch`` without any: all)."""

    __slots__ = ("ids",)

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> IdsRequest:
        ids = obj.get("ids", [])
        if not _strings(ids):
            raise ValueError("'ids' must be a list of strings")
        return cls(ids)


class StatusRequest(Request):
    """``status``: records of ``ids`` (all if none) in ``states`` (any if none)."""

    __slots__ = ("ids", "states")

    def __init__(self, ids: list[str], states: list[str]) -> None:
        self.ids = ids
        self.states = states

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> StatusRequest:
        ids, states = obj.get("ids", []), obj.get("states", [])
        if not _strings(ids) or not _strings(states):
            raise ValueError("'ids' and 'states' must be lists of strings")
        return cls(ids, states)


class CancelRequest(Request):
    """``cancel``: ``ids`` (``orcha cancel ID... [--force]``: says what happened to each),
    or one ``id`` (an attached client's Ctrl+C, or the original API's ``finish``)."""

    __slots__ = ("force", "id", "ids")

    def __init__(self, ids: list[str] | None, id: object = None, force: bool = False) -> None:
        self.ids = ids
        self.id = id  # as sent: the reply quotes it
        self.force = force

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> CancelRequest:
        if "ids" in obj:
            ids = obj["ids"]
            if not _strings(ids) or not ids:
                raise ValueError("'ids' must be a non-empty list of strings")
            return cls(ids, force=bool(obj.get("force")))
        return cls(None, obj.get("id"))


class CleanRequest(Request):
    """``clean``: drop records ended more than ``older_than`` seconds ago (all if None)."""

    __slots__ = ("older_than",)

    def __init__(self, older_than: float | None) -> None:
        self.older_than = older_than

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> CleanRequest:
        older = obj.get("older_than")
        if older is not None and (
            isinstance(older, bool) or not isinstance(older, (int, float)) or older < 0
        ):
            raise ValueError("'older_than' must be a number of seconds >= 0")
        return cls(older)


class LogsRequest(Request):
    """``logs``: the stored output of petition ``id`` (its last ``tail`` lines if given)."""

    __slots__ = ("id", "tail")

    def __init__(self, id: str, tail: int | None) -> None:
        self.id = id
        self.tail = tail

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> LogsRequest:
        petition_id, tail = obj.get("id"), obj.get("tail")
        if not isinstance(petition_id, str):
            raise ValueError("'id' must be a string")
        if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int) or tail < 0):
            raise ValueError("'tail' must be a whole number >= 0")
        return cls(petition_id, tail)


class GroupRequest(Request):
    """``group``: without ``name``, list the groups; with it, set its ``max_running``
    (None removes the limit)."""

    __slots__ = ("max_running", "name")

    def __init__(self, name: str | None, max_running: int | None = None) -> None:
        self.name = name
        self.max_running = max_running

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> GroupRequest:
        from orcha.protocol.schedule import check_group

        if "name" not in obj:
            return cls(None)
        name = check_group(obj["name"])
        limit = obj.get("max_running")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):  # fmt: skip
            raise ValueError("'max_running' must be an integer >= 1 or null")
        return cls(name, limit)


class PauseRequest(Request):
    """``pause`` and ``resume``: petition ``ids``, ``groups`` or ``all``; ``running``
    (pause) also stops the running trees (SIGSTOP)."""

    __slots__ = ("all", "groups", "ids", "running")

    def __init__(
        self, ids: list[str], groups: list[str], all: bool = False, running: bool = False
    ) -> None:
        self.ids = ids
        self.groups = groups
        self.all = all
        self.running = running

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> PauseRequest:
        from orcha.protocol.schedule import check_group

        ids, groups = obj.get("ids", []), obj.get("groups", [])
        if not _strings(ids) or not _strings(groups):
            raise ValueError("'ids' and 'groups' must be lists of strings")
        groups = [check_group(g) for g in groups]
        everything = obj.get("all", False) is True
        if not (ids or groups or everything):
            raise ValueError("name petition IDs, groups, or all")
        return cls(ids, groups, everything, obj.get("running", False) is True)


class StateRequest(Request):
    """``state``: a plugin's state: ``ls`` every key, ``get``/``set``/``rm`` one."""

    __slots__ = ("action", "key", "plugin", "value")

    def __init__(self, action: str, plugin: str, key: str | None = None, value: Any = None):
        self.action = action
        self.plugin = plugin
        self.key = key
        self.value = value

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> StateRequest:
        action, plugin, key = obj.get("action"), obj.get("plugin"), obj.get("key")
        if action not in ("ls", "get", "set", "rm"):
            raise ValueError("'action' must be ls, get, set or rm")
        if not isinstance(plugin, str) or not plugin:
            raise ValueError("'plugin' must be a plugin name")
        if action != "ls":
            key = check_state_key(key)
        return cls(action, plugin, key, obj.get("value"))


class KindsRequest(Request):
    """``kinds``: ``ls`` the runtime kinds (templates), ``add`` one (``from`` a kind,
    ``set`` its settings) or ``rm`` one."""

    __slots__ = ("action", "name", "parent", "settings")

    def __init__(
        self,
        action: str,
        name: str | None = None,
        parent: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.action = action
        self.name = name
        self.parent = parent
        self.settings = settings

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> KindsRequest:
        action, name = obj.get("action", "ls"), obj.get("name")
        if action == "ls":
            return cls("ls")
        if not isinstance(name, str) or not name:
            raise ValueError("'name' must be a kind name")
        if action == "add":
            parent, settings = obj.get("from"), obj.get("set", {})
            if not isinstance(parent, str) or not isinstance(settings, dict):
                raise ValueError("'from' must be a kind and 'set' an object")
            return cls("add", name, parent, settings)
        if action == "rm":
            return cls("rm", name)
        raise ValueError("'action' must be ls, add or rm")


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
         "served_objects", "sessions")  # fmt: skip
_HEALTH = ("healthy", "state", "queued", "running", "cpus_in_use", "capacity", "paused",
           "plugins")  # fmt: skip

#: Every operation, by name.
OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("submit", SubmitRequest, ("handle", "id", "state", "queue"), _SUBMIT_ERRORS,
                  refusal="invalid petition: ", stream="output"),
        Operation("send", MessageRequest, ("id", "state"), _SUBMIT_ERRORS, refusal=""),
        Operation("cancel", CancelRequest, ("results", "id"), refusal=""),
        Operation("status", StatusRequest, ("petitions", "missing"), refusal=""),
        Operation("clean", CleanRequest, ("removed",), ("refused", "not_saved"), refusal=""),
        Operation("wait", IdsRequest, ("ended", "pending", "missing", "queue"),
                  stream="events"),
        Operation("follow", IdsRequest, ("handles", "missing", "queue"), stream="events"),
        Operation("watch", IdsRequest, ("missing", "queue"), stream="events"),
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
        Operation("stdin", StdinRequest, ("buffered",)),
    )
}  # fmt: skip
