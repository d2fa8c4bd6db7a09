"""An array's name in ``--after`` and ``--after-any``: it stands for every member of the
newest array of that name, as Slurm's ``afterok`` of an array job stands for all its
tasks. A dependant starts once every member has ended (successfully, unless
``--after-any``), and fails as soon as one member fails, is cancelled or interrupted.
A petition's own ID (a member's, ``NAME_3``) keeps naming that petition.

The dependant keeps the array's name as its dependency (its record has it, so a restart
looks the array up again). The name is unambiguous while the array has a member queued
or running: no petition may take it then. Looking an array's members up costs a query
and a look at each member, so :class:`ArrayEnds` does it once per live array and then
keeps count as its members end, the way the scheduler hears of single dependencies'
ends; once every member has ended and the dependants are settled, it forgets the array.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from orcha.protocol.ids import is_number
from orcha.states import State

if TYPE_CHECKING:
    from orcha.service.queued import Waiting


#: How many names found to be no array's are remembered (older ones are asked again).
RECENT_PLAIN = 4096


class _Array:
    """A live array as its dependants see it: its members not ended yet (by ID), how
    many it has, and its first member that ended without success ((ID, state, code))."""

    __slots__ = ("failed", "name", "pending", "size", "unknown")

    def __init__(self, name: str, size: int) -> None:
        self.name, self.size = name, size
        self.pending: set[str] = set()
        self.failed: tuple[str, State, int | None] | None = None
        self.unknown: str | None = None  # a member whose record is gone (cleaned)

    def outcome(self, any_end: bool) -> tuple[str, str] | None:
        """As :meth:`Dependencies.check <orcha.service.predicates.Dependencies.check>`,
        for this one dependency (``any_end``: ``--after-any``)."""
        if self.unknown is not None:
            return ("fail", f"dependency {self.unknown} (array {self.name}) is unknown "
                            "(its record was cleaned)")  # fmt: skip
        if self.failed is not None and not any_end:
            member, state, code = self.failed
            how = f"{state}" if code is None else f"{state} (code {code})"
            return ("fail", f"dependency {member} (array {self.name}) ended {how}")
        if self.pending:
            return ("hold", f"after {self.name} (array: {len(self.pending)} of {self.size} "
                            "not ended)")  # fmt: skip
        return None


class ArrayEnds:
    """The arrays dependants wait for (see the module's docstring). Used under the
    scheduler's lock."""

    def __init__(
        self,
        members: Callable[[str], list[str] | None],
        live: dict[str, Waiting],
        ended: Callable[[str], tuple[State, int | None] | None],
        recent: dict[str, tuple[State, int | None]],
    ) -> None:
        """``members(name)``: references to the members of the newest array ``name``
        (see :func:`orcha.service.arrays.expand`), None if ``name`` names none;
        ``live``, ``ended`` and ``recent``: the dependencies' (queued or running jobs by
        ID, how a reference's record ended, the ends heard of lately by ID)."""
        self._members, self._live, self._ended, self._recent = members, live, ended, recent
        self._arrays: dict[str, _Array] = {}  # live arrays looked at, by name
        self._member_of: dict[str, str] = {}  # their members not ended: ID -> array
        # Names found to be no array's (a petition's: most dependencies), so that their
        # dependants do not ask the records again; forgotten when an array takes one.
        self._plain: dict[str, None] = {}

    def look(self, name: str) -> _Array | None:
        """Array ``name`` as its dependants see it; None if ``name`` names no array."""
        array = self._arrays.get(name)
        if array is not None or name in self._plain:
            return array
        refs = self._members(name)
        if refs is None:
            self._plain[name] = None
            if len(self._plain) > RECENT_PLAIN:
                del self._plain[next(iter(self._plain))]
            return None
        array = _Array(name, len(refs))
        for ref in refs:
            if not is_number(ref) and ref in self._live:
                array.pending.add(ref)
                continue
            end = (None if is_number(ref) else self._recent.get(ref)) or self._ended(ref)
            if end is None:
                array.unknown = array.unknown or ref
            elif end[0] is not State.SUCCEEDED and array.failed is None:
                array.failed = (ref, *end)
        if array.pending:  # its members' ends keep it up to date from now on
            self._arrays[name] = array
            for member in array.pending:
                self._member_of[member] = name
        return array

    def queued(self, name: str) -> None:
        """An array called ``name`` was just queued: the name is an array's now."""
        self._plain.pop(name, None)

    def waiting(self, name: str) -> bool:
        """Whether ``name`` is a live array looked at (its members' ends are heard of)."""
        return name in self._arrays

    def members_waited_for(self, name: str) -> tuple[str, ...]:
        """The members of array ``name`` not ended yet (none if it is not one)."""
        array = self.look(name)
        return tuple(array.pending) if array is not None else ()

    def ended(self, job: Waiting) -> str | None:
        """``job`` has ended: the name of its array if that decides the array's
        dependants (its first member to fail, or its last to end), else None."""
        name = self._member_of.pop(job.id, None)
        if name is None:
            return None
        array = self._arrays[name]
        array.pending.discard(job.id)
        if job.state is not State.SUCCEEDED and array.failed is None:
            array.failed = (job.id, job.state, job.code)
            return name
        return None if array.pending else name

    def settled(self, name: str) -> None:
        """The dependants of array ``name`` have been looked at: forget it once every
        member has ended (a member run again later is looked up afresh)."""
        array = self._arrays.get(name)
        if array is not None and not array.pending:
            del self._arrays[name]
