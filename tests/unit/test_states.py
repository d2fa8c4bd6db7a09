"""Petition states: the transition table, terminal states and the named groups."""

from __future__ import annotations

import itertools

import pytest

from orcha.states import (
    ACTIVE,
    FINISHED,
    WAITING,
    InvalidTransition,
    State,
    can_transition,
    transition,
)

S = State

#: The lifecycle as documented: QUEUED -> RUNNING -> an end; a waiting petition may also be
#: cancelled, fail to start, or be interrupted (and queued again if it has --retries left);
#: ends are terminal.
EXPECTED: dict[State, set[State]] = {
    S.QUEUED: {S.RUNNING, S.CANCELLED, S.FAILED},
    S.RUNNING: {
        S.SUCCEEDED,
        S.FAILED,
        S.CANCELLED,
        S.INTERRUPTED,
        S.QUEUED,
    },  # QUEUED: retried after a restart
    S.SUCCEEDED: set(),
    S.FAILED: set(),
    S.CANCELLED: set(),
    S.INTERRUPTED: set(),
}

ALLOWED_PAIRS = [(old, new) for old, news in EXPECTED.items() for new in sorted(news)]
FORBIDDEN_PAIRS = [
    (old, new) for old, new in itertools.product(State, State) if new not in EXPECTED[old]
]


def test_expected_table_covers_every_state() -> None:
    assert set(EXPECTED) == set(State)
    assert len(ALLOWED_PAIRS) + len(FORBIDDEN_PAIRS) == len(State) ** 2


@pytest.mark.parametrize(("old", "new"), ALLOWED_PAIRS, ids=lambda s: str(s))
def test_allowed_transition(old: State, new: State) -> None:
    assert can_transition(old, new) is True
    assert transition(old, new) is new


@pytest.mark.parametrize(("old", "new"), FORBIDDEN_PAIRS, ids=lambda s: str(s))
def test_forbidden_transition_raises(old: State, new: State) -> None:
    assert can_transition(old, new) is False
    with pytest.raises(InvalidTransition) as info:
        transition(old, new)
    assert str(old) in str(info.value)
    assert str(new) in str(info.value)


@pytest.mark.parametrize("end", sorted(FINISHED))
def test_finished_states_are_terminal(end: State) -> None:
    for new in State:
        assert not can_transition(end, new)
        with pytest.raises(InvalidTransition):
            transition(end, new)


def test_no_state_transitions_to_itself() -> None:
    for state in State:
        assert not can_transition(state, state)


def test_invalid_transition_is_runtime_error() -> None:
    err = InvalidTransition(S.SUCCEEDED, S.RUNNING)
    assert isinstance(err, RuntimeError)
    assert str(err) == "petition cannot go from SUCCEEDED to RUNNING"


def test_groups_are_disjoint_and_cover_all_states() -> None:
    assert not WAITING & ACTIVE
    assert not WAITING & FINISHED
    assert not ACTIVE & FINISHED
    assert set(State) == WAITING | ACTIVE | FINISHED
    assert {S.QUEUED} == WAITING
    assert {S.RUNNING} == ACTIVE
    assert {S.SUCCEEDED, S.FAILED, S.CANCELLED, S.INTERRUPTED} == FINISHED


def test_only_finished_states_have_no_way_out() -> None:
    for state in State:
        has_exit = any(can_transition(state, new) for new in State)
        assert has_exit is (state not in FINISHED)


def test_state_is_its_text() -> None:
    for state in State:
        assert str(state) == state.value == state.name
        assert State(state.value) is state
        assert state == state.value  # a str enum: compares equal to its JSON form
