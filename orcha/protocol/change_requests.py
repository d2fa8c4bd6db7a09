"""The requests of the operations that change petitions after submission: ``release``,
``edit`` and ``restart`` (see :mod:`orcha.protocol.requests` for the others and the
contract: ``from_wire`` checks every field and raises ValueError naming the bad one).
"""

from __future__ import annotations

from orcha.protocol.requests import Request, are_strings

TYPE_CHECKING = False  # typing is not imported at run time: it costs start-up
if TYPE_CHECKING:
    from typing import Any


#: The requests ``edit`` and ``restart`` may change (the schedule's fields).
CHANGEABLE = ("cpus", "mem", "gpus", "group", "after", "after_any", "timeout", "retries",
              "retry_delay", "notify", "hold", "begin", "delay")  # fmt: skip


def _changes(obj: dict[str, Any]) -> tuple[int | None, dict[str, Any]]:
    """(new priority or None, schedule fields to change) of an ``edit`` or ``restart``;
    the fields' values are checked when applied (``Schedule.replace``)."""
    from orcha.defaults import MAX_PRIORITY

    priority = obj.get("priority")
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int)
        or not -MAX_PRIORITY <= priority <= MAX_PRIORITY
    ):  # fmt: skip
        raise ValueError(f"'priority' must be an integer from {-MAX_PRIORITY} to {MAX_PRIORITY}")
    changes = obj.get("changes", {})
    if not isinstance(changes, dict):
        raise ValueError("'changes' must be an object")
    unknown = set(changes) - set(CHANGEABLE)
    if unknown:
        raise ValueError(
            f"cannot change {', '.join(sorted(unknown))} (only {', '.join(CHANGEABLE)})"
        )
    return priority, changes


class ReleaseRequest(Request):
    """``release``: let held or delayed petitions ``ids`` start like any other."""

    __slots__ = ("ids",)

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> ReleaseRequest:
        ids = obj.get("ids")
        if not are_strings(ids) or not ids:
            raise ValueError("'ids' must be a non-empty list of strings")
        return cls(ids)


class EditRequest(Request):
    """``edit``: give the queued petition ``id`` a new ``priority`` and/or new requests
    (``changes``: schedule fields, see :data:`CHANGEABLE`)."""

    __slots__ = ("changes", "id", "priority")

    def __init__(self, id: str, priority: int | None, changes: dict[str, Any]) -> None:
        self.id = id
        self.priority = priority
        self.changes = changes

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> EditRequest:
        petition_id = obj.get("id")
        if not isinstance(petition_id, str):
            raise ValueError("'id' must be a string")
        priority, changes = _changes(obj)
        if priority is None and not changes:
            raise ValueError("nothing to change: give a new priority or requests")
        return cls(petition_id, priority, changes)


class RestartRequest(Request):
    """``restart``: run ended petitions again, each as a new record linked to its old
    one: ``ids``, or (without ids) every ``failed`` one, or the failed ones of ``group``;
    ``priority`` and ``changes`` (schedule fields) override what they asked for."""

    __slots__ = ("changes", "failed", "group", "ids", "priority")

    def __init__(
        self,
        ids: list[str],
        failed: bool = False,
        group: str | None = None,
        priority: int | None = None,
        changes: dict[str, Any] | None = None,
    ) -> None:
        self.ids = ids
        self.failed = failed
        self.group = group
        self.priority = priority
        self.changes = changes or {}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> RestartRequest:
        from orcha.protocol.schedule import check_group

        ids = obj.get("ids", [])
        if not are_strings(ids):
            raise ValueError("'ids' must be a list of strings")
        failed = obj.get("failed", False) is True
        group = obj.get("group")
        if group is not None:
            group = check_group(group)
        if not (ids or failed or group):
            raise ValueError("name petition IDs, or ask for the failed ones (of a group)")
        priority, changes = _changes(obj)
        return cls(ids, failed, group, priority, changes)
