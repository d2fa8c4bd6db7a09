"""What the bulk commands read and say (orcha.cli.bulk), without a service."""

from __future__ import annotations

import signal

import click
import pytest

from orcha.cli import bulk


@pytest.mark.parametrize(
    ("text", "number"),
    [("USR1", signal.SIGUSR1), ("sigusr1", signal.SIGUSR1), ("SIGHUP", signal.SIGHUP),
     ("10", 10), (" term ", signal.SIGTERM)],
)  # fmt: skip
def test_signals_by_name_or_number(text: str, number: int) -> None:
    assert bulk.signal_option(click.Context(click.Command("x")), click.Option(["--s"]), text) == (
        number
    )


# Unicode digits pass str.isdigit(): '²' made int() raise, '٣' (Arabic-Indic 3) sent SIGQUIT.
@pytest.mark.parametrize(
    "text", ["USR9", "0", "999", "", "SIG_DFL", "\u00b2", "\u0663", "\uff11\uff10"]
)
def test_a_bad_signal_is_a_usage_error(text: str) -> None:
    with pytest.raises(click.BadParameter, match="is not a signal"):
        bulk.signal_option(click.Context(click.Command("x")), click.Option(["--s"]), text)


def test_wait_reports_failures_of_a_selection_and_timeouts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ended = {f"a_{i}": {"id": f"a_{i}", "state": "SUCCEEDED", "code": 0} for i in range(1, 4)}
    ended["a_2"] = {"id": "a_2", "state": "FAILED", "code": 3}
    report = {"ended": ended, "ids": list(ended), "arrays": {"a": list(ended)},
              "timed_out": False}  # fmt: skip
    assert bulk.report_wait(report, True, "any", None) == 1
    assert capsys.readouterr().err == "orcha: 1 of 3 failed: a_2 (FAILED, code 3)\n"
    assert bulk.report_wait(report, False, "any", None) == 0  # plain IDs: as before
    report = {**report, "ids": [*ended, "b"], "timed_out": True}
    assert bulk.report_wait(report, False, "any", "5s") == 124
    assert capsys.readouterr().err == "orcha: timed out after 5s: 1 of 4 have not ended: b\n"
    for bare in ("1", "0.5"):  # a bare number is seconds, and the line says so
        assert bulk.report_wait(report, False, "any", bare) == 124
        assert f"timed out after {bare}s: " in capsys.readouterr().err


def test_wait_says_how_one_without_a_code_ended(capsys: pytest.CaptureFixture[str]) -> None:
    ended = {"c": {"id": "c", "state": "CANCELLED", "code": None},
             "f": {"id": "f", "state": "FAILED", "code": 3}}  # fmt: skip
    report = {"ended": ended, "ids": list(ended), "arrays": {}, "timed_out": False}
    assert bulk.report_wait(report, False, "success", None) == 1
    assert capsys.readouterr().err == (
        "orcha: petition c ended CANCELLED\norcha: petition f ended FAILED (code 3)\n"
    )
    assert bulk.report_wait(report, True, "any", None) == 1
    assert capsys.readouterr().err == "orcha: 2 of 2 failed: c (CANCELLED), f (FAILED, code 3)\n"


def test_cancel_says_how_many_for_a_selection(capsys: pytest.CaptureFixture[str]) -> None:
    results = {f"p{i}": "cancelled" for i in range(12)}
    assert bulk.report_cancel(results, True, None) == 0
    err = capsys.readouterr().err
    assert err.startswith("orcha: cancelled 12 petition(s): p0, p1,") and err.endswith(", ...\n")
    assert bulk.report_cancel({"x": "no petition has ID 'x'"}, False, None) == 209
    assert capsys.readouterr().err == ("orcha: no petition has ID 'x'; nothing to cancel\n")
    # An array's 300 members: a count, not 300 lines; and so for what could not be.
    results = {f"a_{i}": "cancelled" for i in range(1, 301)}
    assert bulk.report_cancel(results, False, None) == 0
    assert capsys.readouterr().err == (
        "orcha: cancelled 300 petition(s): " + ", ".join(f"a_{i}" for i in range(1, 11)) + ", ...\n"
    )
    ended = {f"a_{i}": f"petition 'a_{i}' has already ended (CANCELLED)" for i in range(1, 301)}
    assert bulk.report_cancel(ended, False, None) == 209
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 11 and lines[0].endswith("(CANCELLED); nothing to cancel")
    assert lines[-1] == "orcha: and 290 more like these (--json lists each)"
    assert bulk.report_cancel({}, True, signal.SIGUSR1) == 0
    assert capsys.readouterr().err == "orcha: no running petition matched; nothing done\n"
