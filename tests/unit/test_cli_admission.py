"""``orcha group`` (orcha.cli.admission): what it refuses before anything is sent."""

from __future__ import annotations

import pytest

RANGE = (
    "orcha group set: invalid value for '[N]': {n} is less than 1 (see 'orcha group set --help')"
)


@pytest.mark.parametrize(
    "args",
    [
        ["group", "set", "g", "-1"],
        ["group", "set", "g", "-1", "--json"],
        ["group", "set", "--json", "g", "-12"],
    ],
)
def test_a_negative_limit_is_refused_as_a_value_not_taken_for_an_option(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    """'orcha group set g -1' is refused as 'orcha group set g 0' is: the number is out of
    range, in one line; click read it as an unknown option '-1'."""
    from orcha.cli.app import run

    assert run(args) == 2
    n = next(a for a in args if a.startswith("-1"))
    assert capsys.readouterr().err == RANGE.format(n=n) + "\n"


def test_a_negative_value_of_an_option_is_still_that_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from orcha.cli.app import run

    assert run(["group", "set", "g", "--max-running", "-1"]) == 2
    assert capsys.readouterr().err == (
        "orcha group set: invalid value for '--max-running': -1 is less than 1 "
        "(see 'orcha group set --help')\n"
    )
    assert run(["group", "set", "g", "0"]) == 2
    assert capsys.readouterr().err == RANGE.format(n=0) + "\n"
