"""Schedule: defaults, the wire form (only what differs), validation naming the bad field."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from orcha.protocol.schedule import (
    DEFAULT_GROUP,
    MAX_CPUS,
    MAX_DEPENDENCIES,
    MAX_GROUP_LENGTH,
    MAX_RETRIES,
    Schedule,
    check_group,
)


def _round_trip(schedule: Schedule) -> Schedule:
    return Schedule.from_wire(json.loads(json.dumps(schedule.to_wire())))


def _refused(obj: Any) -> str:
    with pytest.raises(ValueError) as info:
        Schedule.from_wire(obj)
    return str(info.value)


# -- defaults and the wire form -----------------------------------------------------------------
def test_defaults() -> None:
    s = Schedule()
    assert (s.cpus, s.mem, s.gpus, s.group) == (1, 0, 0, DEFAULT_GROUP)
    assert (s.after, s.after_any, s.dependencies) == ((), (), ())
    assert (s.timeout, s.retries, s.retry_delay) == (None, 0, 0.0)
    assert DEFAULT_GROUP == "default"


def test_defaults_go_on_the_wire_as_an_empty_object() -> None:
    assert Schedule().to_wire() == {}


def test_to_wire_holds_only_the_fields_that_differ() -> None:
    assert Schedule(cpus=2, group="build").to_wire() == {"cpus": 2, "group": "build"}
    assert Schedule(cpus=1, timeout=30).to_wire() == {"timeout": 30}


def test_to_wire_sends_id_tuples_as_lists() -> None:
    wire = Schedule(after=("a", "b"), after_any=("c",)).to_wire()
    assert wire == {"after": ["a", "b"], "after_any": ["c"]}
    assert json.loads(json.dumps(wire)) == wire


def test_every_field_survives_a_json_round_trip() -> None:
    s = Schedule(
        cpus=4,
        mem=3 << 30,
        gpus=2,
        group="gpu.train-1",
        after=("a", "b"),
        after_any=("c",),
        timeout=90.5,
        retries=3,
        retry_delay=2.5,
    )
    back = _round_trip(s)
    assert back == s
    assert back.to_wire() == s.to_wire()
    assert (back.after, back.after_any) == (("a", "b"), ("c",))
    assert isinstance(back.after, tuple)


def test_default_schedule_survives_a_round_trip() -> None:
    assert _round_trip(Schedule()) == Schedule()


def test_dependencies_are_after_then_after_any() -> None:
    assert Schedule(after=("a",), after_any=("b", "c")).dependencies == ("a", "b", "c")


def test_equality_compares_fields_and_schedules_are_unhashable() -> None:
    assert Schedule(cpus=2) == Schedule(cpus=2)
    assert Schedule(cpus=2) != Schedule(cpus=3)
    assert Schedule() != {"cpus": 1}
    with pytest.raises(TypeError):
        hash(Schedule())


def test_repr_shows_the_wire_form() -> None:
    assert repr(Schedule(cpus=2)) == "Schedule({'cpus': 2})"


# -- from_wire: accepted shapes -----------------------------------------------------------------
def test_from_wire_none_and_empty_are_the_defaults() -> None:
    assert Schedule.from_wire(None) == Schedule()
    assert Schedule.from_wire({}) == Schedule()


def test_from_wire_accepts_the_bounds() -> None:
    s = Schedule.from_wire(
        {"cpus": MAX_CPUS, "mem": 0, "gpus": 0, "retries": MAX_RETRIES, "retry_delay": 0}
    )
    assert (s.cpus, s.retries, s.retry_delay) == (MAX_CPUS, MAX_RETRIES, 0.0)
    assert Schedule.from_wire({"cpus": 1, "mem": 1 << 62}).mem == 1 << 62


def test_from_wire_gives_seconds_as_floats() -> None:
    s = Schedule.from_wire({"timeout": 10, "retry_delay": 1})
    assert s.timeout == 10.0 and isinstance(s.timeout, float)
    assert s.retry_delay == 1.0 and isinstance(s.retry_delay, float)


def test_from_wire_turns_integer_ids_into_text() -> None:
    assert Schedule.from_wire({"after": [7, "b"]}).after == ("7", "b")


def test_from_wire_removes_duplicate_ids_keeping_the_first() -> None:
    s = Schedule.from_wire({"after": ["b", "a", "b", "a"], "after_any": ["c", "c"]})
    assert s.after == ("b", "a")
    assert s.after_any == ("c",)


def test_from_wire_treats_an_integer_and_its_text_as_one_id() -> None:
    assert Schedule.from_wire({"after": [1, "1"]}).after == ("1",)


# -- from_wire: refusals name the field ------------------------------------------------------------
def test_from_wire_refuses_a_non_object() -> None:
    assert _refused([1, 2]) == "'schedule' must be an object"
    assert _refused("cpus=2") == "'schedule' must be an object"


def test_from_wire_refuses_unknown_fields_listing_them_sorted() -> None:
    assert _refused({"nice": 5, "cpus": 1, "affinity": 0}) == (
        "unknown schedule field(s): affinity, nice"
    )


@pytest.mark.parametrize("value", [0, -1, MAX_CPUS + 1, 1.5, 2.0, "2", None, True, False])
def test_from_wire_refuses_bad_cpus(value: Any) -> None:
    message = _refused({"cpus": value})
    assert message.startswith(f"'cpus' must be an integer from 1 to {MAX_CPUS}")
    assert message.endswith(f"got {value!r}")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("mem", -1),
        ("mem", (1 << 62) + 1),
        ("mem", True),
        ("mem", 1.5),
        ("gpus", -1),
        ("gpus", False),
        ("gpus", MAX_CPUS + 1),
        ("retries", -1),
        ("retries", MAX_RETRIES + 1),
        ("retries", True),
        ("retries", "3"),
    ],
)
def test_from_wire_refuses_bad_counts_naming_the_field(name: str, value: Any) -> None:
    message = _refused({name: value})
    assert message.startswith(f"'{name}' must be an integer from 0 to ")
    assert message.endswith(f"got {value!r}")


def test_from_wire_error_for_negative_mem_gives_the_range() -> None:
    assert _refused({"mem": -1}) == f"'mem' must be an integer from 0 to {1 << 62}, got -1"


@pytest.mark.parametrize("value", ["a b", "", "x" * (MAX_GROUP_LENGTH + 1), "a/b", 5, None])
def test_from_wire_refuses_bad_group_names(value: Any) -> None:
    assert "group name" in _refused({"group": value})


@pytest.mark.parametrize("name", ["after", "after_any"])
@pytest.mark.parametrize("value", ["a", {"a": 1}, None, 3, ("a",)])
def test_from_wire_refuses_ids_not_in_a_list(name: str, value: Any) -> None:
    assert _refused({name: value}) == f"'{name}' must be a list of petition IDs"


@pytest.mark.parametrize("value", ["", "a b", "tab\there", "x" * 129, None, True, 1.5])
def test_from_wire_refuses_bad_ids_in_after(value: Any) -> None:
    assert "petition ID" in _refused({"after": [value]})


@pytest.mark.parametrize("name", ["after", "after_any"])
def test_from_wire_error_for_a_bad_dependency_id_names_the_field(name: str) -> None:
    assert f"'{name}'" in _refused({name: ["a b"]})


def test_from_wire_refuses_too_many_dependencies() -> None:
    half = MAX_DEPENDENCIES // 2
    ok = {"after": [f"a{i}" for i in range(half)], "after_any": [f"b{i}" for i in range(half)]}
    assert len(Schedule.from_wire(ok).dependencies) == MAX_DEPENDENCIES
    too_many = {**ok, "after_any": [*ok["after_any"], "one-more"]}
    assert _refused(too_many) == f"at most {MAX_DEPENDENCIES} dependencies"


def test_duplicates_do_not_count_towards_the_dependency_limit() -> None:
    s = Schedule.from_wire({"after": ["a"] * (MAX_DEPENDENCIES + 5)})
    assert s.after == ("a",)


@pytest.mark.parametrize("value", [0, 0.0])
def test_from_wire_refuses_a_zero_timeout(value: Any) -> None:
    assert _refused({"timeout": value}) == "'timeout' must be more than 0 seconds"


@pytest.mark.parametrize("value", [-1, -0.5, math.inf, -math.inf, math.nan])
def test_from_wire_refuses_negative_or_infinite_timeouts(value: Any) -> None:
    assert _refused({"timeout": value}).startswith(
        "'timeout' must be a finite number of seconds >= 0"
    )


@pytest.mark.parametrize("value", ["x", "10", True, [10]])
def test_from_wire_refuses_a_timeout_that_is_not_a_number(value: Any) -> None:
    assert _refused({"timeout": value}) == (f"'timeout' must be a number of seconds, got {value!r}")


def test_from_wire_null_timeout_is_no_timeout() -> None:
    assert Schedule.from_wire({"timeout": None}).timeout is None


@pytest.mark.parametrize("value", [-1, -0.001, math.inf, math.nan])
def test_from_wire_refuses_a_negative_or_infinite_retry_delay(value: Any) -> None:
    assert _refused({"retry_delay": value}).startswith(
        "'retry_delay' must be a finite number of seconds >= 0"
    )


@pytest.mark.parametrize("value", ["x", None, False])
def test_from_wire_refuses_a_retry_delay_that_is_not_a_number(value: Any) -> None:
    assert _refused({"retry_delay": value}) == (
        f"'retry_delay' must be a number of seconds, got {value!r}"
    )


# -- check_group -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["default", "build", "a", "a.b-c_1", "GPU0", "x" * MAX_GROUP_LENGTH]
)
def test_check_group_accepts_valid_names(name: str) -> None:
    assert check_group(name) == name


@pytest.mark.parametrize("value", ["", None, 5, ["build"], b"build"])
def test_check_group_refuses_non_strings_and_empty(value: Any) -> None:
    with pytest.raises(ValueError, match="a group name must be a non-empty string"):
        check_group(value)


@pytest.mark.parametrize(
    "name", ["a b", "x" * (MAX_GROUP_LENGTH + 1), "a/b", "a\nb", "a;b", "tab\t", "a*"]
)
def test_check_group_refuses_bad_characters_and_long_names(name: str) -> None:
    with pytest.raises(ValueError) as info:
        check_group(name)
    assert str(info.value) == (
        f"group name {name!r} must be 1-{MAX_GROUP_LENGTH} letters, digits, '-', '_' or '.'"
    )


# -- durations and start times far ahead ------------------------------------------------------
@pytest.mark.parametrize("name", ["timeout", "retry_delay", "delay"])
def test_from_wire_takes_durations_up_to_ten_years_only(name: str) -> None:
    """A client that bypasses the CLI cannot hand the service a duration that overflows
    its waits (a timeout of 200000 days once killed the deadlines thread)."""
    from orcha.defaults import MAX_DURATION_SECONDS

    assert getattr(Schedule.from_wire({name: MAX_DURATION_SECONDS}), name) == MAX_DURATION_SECONDS
    assert _refused({name: 1.728e10}) == (
        f"'{name}' must be at most 315360000 seconds (3650d (10 years)), got 17280000000.0"
    )


def test_from_wire_takes_start_times_up_to_ten_years_ahead_only() -> None:
    import time

    from orcha.defaults import MAX_DURATION_SECONDS

    near = time.time() + MAX_DURATION_SECONDS - 60
    assert Schedule.from_wire({"begin": near}).begin == near
    assert (
        _refused({"begin": 1e18}) == "'begin' must be at most 3650d (10 years) from now, got 1e+18"
    )
    assert _refused({"begin": math.inf}) == "'begin' must be a finite time >= 0, got inf"
    assert _refused({"begin": "soon"}) == (
        "'begin' must be a number of seconds since the epoch, got 'soon'"
    )
