"""Petition states, their named groups and the transitions allowed between them.

Imports nothing else from orcha. Every state change goes through :func:`transition`,
which refuses a change the lifecycle does not allow.
"""

from __future__ import annotations

import enum


class State(str, enum.Enum):
    """Where a petition is in its lifecycle."""

    QUEUED = "QUEUED"  # accepted, waiting for its condition to hold
    RUNNING = "RUNNING"  # its action has started
    SUCCEEDED = "SUCCEEDED"  # ended with exit code 0
    FAILED = "FAILED"  # ended with a non-zero code, or could not start
    CANCELLED = "CANCELLED"  # stopped by a client, by ``cancel`` or by the service stopping
    INTERRUPTED = "INTERRUPTED"  # was running when the service died

    def __str__(self) -> str:
        return self.value


WAITING = frozenset({State.QUEUED})
ACTIVE = frozenset({State.RUNNING})
FINISHED = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED, State.INTERRUPTED})

#: Every transition the lifecycle allows, with what causes it (the docs draw this).
TRANSITIONS: dict[tuple[State, State], str] = {
    (State.QUEUED, State.RUNNING): "admitted: its resources, group and predicates allow it",
    (State.QUEUED, State.CANCELLED): "cancelled before it started, or not queued again "
    "after a restart",
    (State.QUEUED, State.FAILED): "a petition it runs --after failed or was cancelled",
    (State.RUNNING, State.SUCCEEDED): "its action ended with code 0",
    (State.RUNNING, State.FAILED): "non-zero code, timeout, or retries used up",
    (State.RUNNING, State.CANCELLED): "Ctrl+C in its client, 'orcha cancel', service stop",
    (State.RUNNING, State.INTERRUPTED): "the service died while it ran",
    (State.RUNNING, State.QUEUED): "the service died while it ran, and it asked for "
    "--retries and has an attempt left (the interrupted one counts)",
}

_ALLOWED: dict[State, frozenset[State]] = {
    state: frozenset(new for old, new in TRANSITIONS if old is state) for state in State
}


class InvalidTransition(RuntimeError):
    """A state change the lifecycle does not allow (a bug in orcha or a plugin)."""

    def __init__(self, old: State, new: State) -> None:
        super().__init__(f"petition cannot go from {old} to {new}")


def can_transition(old: State, new: State) -> bool:
    """Whether the lifecycle allows going from ``old`` to ``new``."""
    return new in _ALLOWED[old]


def transition(old: State, new: State) -> State:
    """Return ``new`` if the lifecycle allows ``old`` -> ``new``; raise InvalidTransition."""
    if not can_transition(old, new):
        raise InvalidTransition(old, new)
    return new
