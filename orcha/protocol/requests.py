"""Requests: the checked, plain-data request of each operation (see
:mod:`orcha.protocol.operations`, which names each operation's request class).

Each class's ``from_wire`` checks every field of a request (plain data) and raises
ValueError naming the bad one. Plain classes, no ``typing`` or ``dataclasses`` at run
time: clients import this.
"""

from __future__ import annotations

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


def are_strings(value: Any) -> bool:
    """Whether ``value`` is a list of strings (a request field of IDs or names)."""
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


class ShutdownRequest(Request):
    """``shutdown``: stop as a first SIGTERM does; ``force``: as a second one (every
    running tree killed at once)."""

    __slots__ = ("force",)

    def __init__(self, force: bool = False) -> None:
        self.force = force

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> ShutdownRequest:
        force = obj.get("force", False)
        if not isinstance(force, bool):
            raise ValueError("'force' must be true or false")
        return cls(force)


class IdsRequest(Request):
    """``wait``, ``follow``, ``watch``: petition IDs (``watch`` without any: all)."""

    __slots__ = ("ids",)

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> IdsRequest:
        ids = obj.get("ids", [])
        if not are_strings(ids):
            raise ValueError("'ids' must be a list of strings")
        return cls(ids)


class WatchRequest(IdsRequest):
    """``watch``: events of ``ids`` (all if none); ``usage``: also a ``usage`` event
    every so many seconds (the running petitions' CPU and memory, why the queue's head
    waits, GPUs, groups), None for none; ``output``: whether ``output`` events are
    wanted (``orcha top`` needs none)."""

    __slots__ = ("output", "usage")

    def __init__(self, ids: list[str], usage: float | None = None, output: bool = True) -> None:
        super().__init__(ids)
        self.usage = usage
        self.output = output

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> WatchRequest:
        from orcha.defaults import USAGE_MAX_INTERVAL, USAGE_MIN_INTERVAL

        ids = IdsRequest.from_wire(obj).ids
        usage, output = obj.get("usage"), obj.get("output", True)
        if usage is not None and (
            isinstance(usage, bool) or not isinstance(usage, (int, float))
            or not USAGE_MIN_INTERVAL <= usage <= USAGE_MAX_INTERVAL
        ):  # fmt: skip
            raise ValueError(
                f"'usage' must be a number of seconds from {USAGE_MIN_INTERVAL:g} "
                f"to {USAGE_MAX_INTERVAL:g}, or null"
            )
        if not isinstance(output, bool):
            raise ValueError("'output' must be true or false")
        return cls(ids, None if usage is None else float(usage), output)


class StatusRequest(Request):
    """``status``: records of ``ids`` (all if none) in ``states`` (any if none) and in
    ``groups`` (any if none); of those the ``last`` N submitted (all if None), and of
    those every queued or running one plus the ``ended`` N most recently ended (all if
    None; the reply's ``hidden`` counts those left out), and of the queued ones the
    ``queued`` first submitted (all if None; ``hidden_queued`` counts the others): see
    :mod:`orcha.protocol.selection`. Or, with ``page``, every record (of ``states`` and
    ``groups``) in pages of ``page``, numbered after ``after``; the reply's ``next`` is
    where the next page starts (None after the last): a long listing is never whole.
    With ``text`` too, as JSON text (:func:`orcha.service.listing.page_reply`)."""

    __slots__ = ("after", "ended", "groups", "ids", "last", "page", "queued", "states", "text")
    _COUNTS = ("last", "ended", "queued", "page", "after")

    def __init__(self, ids: list[str], states: list[str], groups: list[str] | None = None,
                 text: bool = False, **counts: int | None) -> None:  # fmt: skip
        self.ids, self.states, self.groups, self.text = ids, states, groups or [], text
        self.last, self.ended, self.queued, self.page, self.after = (
            counts.pop(name, None) for name in self._COUNTS
        )
        if counts:
            raise TypeError(f"unknown fields: {sorted(counts)}")

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> StatusRequest:
        ids, states, groups = obj.get("ids", []), obj.get("states", []), obj.get("groups", [])
        if not are_strings(ids) or not are_strings(states) or not are_strings(groups):
            raise ValueError("'ids', 'states' and 'groups' must be lists of strings")
        counts = {name: obj.get(name) for name in cls._COUNTS}
        for name, value in counts.items():
            if value is not None and (type(value) is not int or value < 0):  # not a bool
                raise ValueError(f"'{name}' must be a whole number >= 0 or null")
        limits = ids or any(counts[n] is not None for n in ("last", "ended", "queued"))
        if counts["page"] is not None and (limits or counts["page"] < 1):
            raise ValueError("'page' (>= 1) lists every record: not with 'ids' or limits")
        if not isinstance(obj.get("text", False), bool) or (obj.get("text") and not counts["page"]):
            raise ValueError("'text' (true or false) is only for a listing in pages ('page')")
        return cls(ids, states, groups, obj.get("text") is True, **counts)


class CancelRequest(Request):
    """``cancel``: petitions named by ``ids`` (an array's name: its members not ended)
    and the queued or running ones the filters select (``groups``, ``states``: QUEUED
    and/or RUNNING, each narrowing the other; ``all``: every one), saying what happened to
    each (``orcha cancel ID... [--force]``); with ``signal``, that signal is sent to
    the running trees instead (``orcha cancel --signal USR1``). Or one ``id`` (an
    attached client's Ctrl+C, or the original API's ``finish``)."""

    __slots__ = ("all", "force", "groups", "id", "ids", "signal", "states")

    def __init__(
        self,
        ids: list[str] | None,
        id: object = None,
        force: bool = False,
        groups: list[str] | None = None,
        states: list[str] | None = None,
        all: bool = False,
        signal: int | None = None,
    ) -> None:
        self.ids = ids
        self.id = id  # as sent: the reply quotes it
        self.force = force
        self.groups = groups or []
        self.states = states or []
        self.all = all
        self.signal = signal

    @property
    def selects(self) -> bool:
        """Whether filters select petitions (not only IDs)."""
        return bool(self.groups or self.states or self.all)

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> CancelRequest:
        from orcha.protocol.schedule import check_group

        if not any(k in obj for k in ("ids", "groups", "states", "all")):
            return cls(None, obj.get("id"))
        ids, groups, states = obj.get("ids", []), obj.get("groups", []), obj.get("states", [])
        if not are_strings(ids) or not are_strings(groups) or not are_strings(states):
            raise ValueError("'ids', 'groups' and 'states' must be lists of strings")
        groups = [check_group(g) for g in groups]
        if not set(states) <= {"QUEUED", "RUNNING"}:
            raise ValueError("only QUEUED and RUNNING petitions can be cancelled or signalled")
        everything = obj.get("all", False) is True
        if not (ids or groups or states or everything):
            raise ValueError("name petition IDs, groups, states, or all")
        sig = obj.get("signal")
        if sig is not None and (isinstance(sig, bool) or not isinstance(sig, int)
                                or not 1 <= sig <= 64):  # fmt: skip
            raise ValueError("'signal' must be a signal number from 1 to 64")
        return cls(ids, force=bool(obj.get("force")), groups=groups, states=states,
                   all=everything, signal=sig)  # fmt: skip


class CleanRequest(Request):
    """``clean``: drop ended records (and their logs): those of ``ids`` (an array's
    name: its members), narrowed by ``states``, ``groups`` and ``older_than`` (seconds
    since they ended); with no IDs, every ended record those filters keep."""

    __slots__ = ("groups", "ids", "older_than", "states")

    def __init__(
        self,
        older_than: float | None,
        ids: list[str] | None = None,
        states: list[str] | None = None,
        groups: list[str] | None = None,
    ) -> None:
        self.older_than = older_than
        self.ids = ids or []
        self.states = states or []
        self.groups = groups or []

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> CleanRequest:
        from orcha.protocol.schedule import check_group

        older = obj.get("older_than")
        if older is not None and (
            isinstance(older, bool) or not isinstance(older, (int, float)) or older < 0
        ):
            raise ValueError("'older_than' must be a number of seconds >= 0")
        ids, groups, states = obj.get("ids", []), obj.get("groups", []), obj.get("states", [])
        if not are_strings(ids) or not are_strings(groups) or not are_strings(states):
            raise ValueError("'ids', 'groups' and 'states' must be lists of strings")
        if not set(states) <= {"SUCCEEDED", "FAILED", "CANCELLED", "INTERRUPTED"}:
            raise ValueError("only ended petitions are cleaned: SUCCEEDED, FAILED, "
                             "CANCELLED or INTERRUPTED")  # fmt: skip
        return cls(older, ids, states, [check_group(g) for g in groups])


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
        if not are_strings(ids) or not are_strings(groups):
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


class FollowRequest(IdsRequest):
    """``follow``: petition ``ids``; ``lines``: replay only the last N lines of each
    log before the live output (as ``tail -n``; None: all of it)."""

    __slots__ = ("lines",)

    def __init__(self, ids: list[str], lines: int | None = None) -> None:
        super().__init__(ids)
        self.lines = lines

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> FollowRequest:
        lines = obj.get("lines")
        if lines is not None and (isinstance(lines, bool) or not isinstance(lines, int)
                                  or lines < 0):  # fmt: skip
            raise ValueError("'lines' must be a whole number >= 0")
        return cls(IdsRequest.from_wire(obj).ids, lines)
