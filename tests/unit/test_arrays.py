"""Arrays on the wire: Slurm's --array syntax, --each's lines, members' commands."""

from __future__ import annotations

import pytest

from orcha.protocol.arrays import (
    ArrayRequest,
    member_env,
    member_id,
    member_params,
    parse_lines,
    parse_spec,
)
from orcha.protocol.messages import SubmitRequest


@pytest.mark.parametrize(
    ("spec", "indices", "limit"),
    [
        ("1-5", [1, 2, 3, 4, 5], None),
        ("1-100%4", list(range(1, 101)), 4),
        ("1,3,5-9", [1, 3, 5, 6, 7, 8, 9], None),
        ("0-20:5", [0, 5, 10, 15, 20], None),
        ("7", [7], None),
        ("3,1,3-4%2", [1, 3, 4], 2),
    ],
)
def test_slurm_array_syntax(spec: str, indices: list[int], limit: int | None) -> None:
    assert parse_spec(spec) == (indices, limit)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("", "is not an array"),
        ("a-3", "is not an array"),
        ("5-1", "runs backwards"),
        ("1-9%0", "limit after '%'"),
        ("1-9%x", "limit after '%'"),
        ("3:2", "a step ':N' follows a range"),
        ("1-9:0", "a step ':N' follows a range"),
        ("0-99999999", "indices go up to"),
        ("1-20000", "at most 10000 members"),
        ("-1", "is not an array"),
        # Unicode digits pass str.isdigit(), and int() refused them (or read them)
        ("²", "is not an array"),
        ("\u0663", "is not an array"),
        ("1-\u0663", "is not an array"),
        ("1-3%²", "limit after '%'"),
        ("1-3%\u0663", "limit after '%'"),
        ("1-9:²", "a step ':N' follows a range"),
    ],
)
def test_bad_arrays_say_what_is_wrong(spec: str, words: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_spec(spec)
    assert words in str(e.value)


def test_each_takes_the_lines_that_are_not_blank_with_their_numbers() -> None:
    assert parse_lines("a b\n\n  \nc\r\n") == [(1, "a b"), (4, "c")]
    with pytest.raises(ValueError, match="no lines"):
        parse_lines("\n\n")
    with pytest.raises(ValueError, match="NUL"):
        parse_lines("a\0b\n")


def test_a_members_command_and_environment() -> None:
    argv = {"argv": ["sh", "-c", "echo {} >out.{}"]}
    assert member_params(argv, (3, None)) == {"argv": ["sh", "-c", "echo 3 >out.3"]}
    # A line no {} took is the last argument (GNU parallel); an index is not.
    assert member_params({"argv": ["gzip"]}, (2, "a b.txt")) == {"argv": ["gzip", "a b.txt"]}
    assert member_params({"argv": ["true"]}, (2, None)) == {"argv": ["true"]}
    assert member_params({"argv": ["cp", "{}", "{}.bak"]}, (1, "x")) == {
        "argv": ["cp", "x", "x.bak"]
    }
    env = member_env({"A": "1"}, "arr", (7, None), 10)
    assert env == {"A": "1", "ORCHA_ARRAY_INDEX": "7", "ORCHA_ARRAY_NAME": "arr",
                   "ORCHA_ARRAY_COUNT": "10"}  # fmt: skip
    assert member_id("arr", 7) == "arr_7"


def test_the_request_round_trips_and_checks_its_fields() -> None:
    template = SubmitRequest("shell", "arr", {"argv": ["echo", "{}"]}, None, "/", {})
    request = ArrayRequest(template, [(1, None), (2, None)], 4)
    assert ArrayRequest.from_wire(request.to_wire()) == request
    wire = request.to_wire()
    with pytest.raises(ValueError, match="'limit'"):
        ArrayRequest.from_wire({**wire, "limit": 0})
    with pytest.raises(ValueError, match="index"):
        ArrayRequest.from_wire({**wire, "members": [[-1, None]]})
    with pytest.raises(ValueError) as too_long:
        ArrayRequest.from_wire({**wire, "submit": {**wire["submit"], "id": "x" * 127}})
    assert str(too_long.value) == (  # the member's ID, not the name given, is too long
        "the member ID xxxxxxxxxxxxxxxx..._2 would have 129 characters, more than 128: with "
        "indices up to 2, the array's name may have at most 126 (it has 127)"
    )
    nameless = ArrayRequest.from_wire({**wire, "submit": {**wire["submit"], "id": ""}})
    assert nameless.name == ""


def test_an_array_summary_says_no_code_for_a_member_without_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from orcha.cli.arrays import summarize

    ends = [{"id": "a_1", "state": "CANCELLED", "code": None},
            {"id": "a_2", "state": "FAILED", "code": 2}]  # fmt: skip
    assert summarize("a", ends, 2) == 1
    assert capsys.readouterr().err == (
        "orcha: array a: 2 of 2 failed: a_1 (CANCELLED), a_2 (FAILED, code 2)\n"
    )
