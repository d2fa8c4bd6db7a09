"""Which records ``status`` shows: by group, the last N, and how many ended ones.

The service applies :func:`select` to the records of a ``status`` request (so a long
history does not cross the wire to be thrown away), and the client applies it again to
the reply: idempotent on rows already selected, and right against a service too old to
know the request's ``groups``, ``last`` and ``ended`` fields.
"""

from __future__ import annotations

from orcha.states import FINISHED

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

_ENDED = frozenset(str(s.value) for s in FINISHED)


def group_of(row: dict[str, Any]) -> str:
    """The group a record's petition is in (``default`` unless its schedule names one)."""
    return str((row.get("schedule") or {}).get("group") or "default")


def is_ended(row: dict[str, Any]) -> bool:
    return str(row.get("state")) in _ENDED


def select(
    rows: Sequence[dict[str, Any]],
    groups: Sequence[str] = (),
    last: int | None = None,
    ended: int | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """``(kept, hidden)``: of ``rows`` (oldest first, and kept in that order), those in
    one of ``groups`` (any if none); of those, the ``last`` most recently submitted (all
    if None); of those, every queued or running one and the ``ended`` most recently ended
    ones (all if None). ``hidden`` counts the ended ones ``ended`` left out."""
    kept = [r for r in rows if group_of(r) in groups] if groups else list(rows)
    if last is not None:
        kept = kept[-last:] if last > 0 else []
    if ended is None:
        return kept, 0
    finished = [r for r in kept if is_ended(r)]
    if len(finished) <= ended:
        return kept, 0
    newest = sorted(finished, key=lambda r: (r.get("ended") or 0, r.get("seq") or 0))
    shown = {id(r) for r in newest[len(newest) - ended :]} if ended > 0 else set()
    out = [r for r in kept if not is_ended(r) or id(r) in shown]
    return out, len(finished) - ended


def first_queued(
    rows: Sequence[dict[str, Any]], queued: int | None = None
) -> tuple[list[dict[str, Any]], int]:
    """``(kept, hidden)``: ``rows`` (oldest first, and kept in that order) with only the
    ``queued`` first of the queued ones (all if None); ``hidden`` counts the others."""
    if queued is None:
        return list(rows), 0
    waiting = [r for r in rows if str(r.get("state")) == "QUEUED"]
    if len(waiting) <= queued:
        return list(rows), 0
    left = {id(r) for r in waiting[queued:]}
    return [r for r in rows if id(r) not in left], len(left)
