"""petition_options: what each option puts in the petition, and what it refuses (exit 2)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from orcha.cli.petition_options import chosen, petition_options
from orcha.protocol.schedule import Schedule


@click.command()
@petition_options
def probe() -> dict[str, Any]:
    options = chosen()
    return {"schedule": Schedule.from_wire(options.schedule), "env": options.env,
            "cwd": options.cwd}  # fmt: skip


def parse(*args: str) -> dict[str, Any]:
    result: dict[str, Any] = probe.main(list(args), standalone_mode=False)
    return result


def test_no_options_are_the_defaults() -> None:
    assert parse() == {"schedule": Schedule(), "env": {}, "cwd": None}


def test_every_option_reaches_the_schedule() -> None:
    got = parse(
        "--cpus", "4", "--mem", "1.5G", "--gpus", "2", "--group", "train", "--after", "a,b",
        "--after", "c", "--after-any", "d", "--timeout", "2h", "--retries", "3",
        "--retry-delay", "30s",
    )  # fmt: skip
    assert got["schedule"] == Schedule(
        cpus=4, mem=int(1.5 * (1 << 30)), gpus=2, group="train", after=("a", "b", "c"),
        after_any=("d",), timeout=7200.0, retries=3, retry_delay=30.0,
    )  # fmt: skip


def test_an_empty_after_names_no_dependency() -> None:
    # 'orcha edit ID --after ""' drops the dependencies: the empty list replaces them.
    assert parse("--after", "", "--after-any", "")["schedule"] == Schedule()
    assert parse("--after", "", "--after", "a")["schedule"] == Schedule(after=("a",))


def test_env_is_repeatable_and_values_may_hold_equals_or_be_empty() -> None:
    got = parse("--env", "A=1", "--env", "B=x=y", "--env", "C=")
    assert got["env"] == {"A": "1", "B": "x=y", "C": ""}


def test_cwd_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    assert parse("--cwd", "sub")["cwd"] == os.path.join(str(tmp_path), "sub")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--cpus", "0"], "--cpus"),
        (["--mem", "lots"], "is not a size"),
        (["--gpus", "-1"], "--gpus"),
        (["--group", "a b"], "group name"),
        (["--after", "x y"], "whitespace"),
        (["--after-any", ","], "non-empty"),
        (["--timeout", "0"], "more than 0 seconds"),
        (["--timeout", "soon"], "is not a duration"),
        (["--retries", "1001"], "--retries"),
        (["--retry-delay", "-1"], "is not a duration"),
        (["--env", "NOEQUALS"], "is not NAME=VALUE"),
        (["--env", "=v"], "is not NAME=VALUE"),
        (["--cwd", "/no/such/dir"], "does not exist"),
        (["--delay", "2 hours"], "is not a duration"),
        (["--at", "25:00"], "is not a time"),
        (["--at", "tomorrow"], "is not a time"),
        # ASCII digits only: Arabic-Indic 12:30, 3m
        (["--at", "\u0661\u0662:\u0663\u0660"], "is not a time"),
        (["--timeout", "\u0663m"], "is not a duration"),
    ],
)
def test_bad_values_are_usage_errors(args: list[str], words: str) -> None:
    result = CliRunner().invoke(probe, args)
    assert result.exit_code == 2, result.output
    assert words in result.output, result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--cpus", "0"], ["--mem", "lots"], ["--gpus", "-1"], ["--group", "a b"],
        ["--after", "x y"], ["--after-any", ","], ["--timeout", "0"], ["--timeout", "soon"],
        ["--retries", "1001"], ["--retry-delay", "-1"], ["--env", "NOEQUALS"],
        ["--env", "=v"], ["--cwd", "/no/such/dir"], ["--cwd", __file__], ["--cpus"],
    ],
)  # fmt: skip
def test_the_fast_parser_leaves_every_bad_value_to_click(args: list[str]) -> None:
    from orcha.cli import grammar
    from orcha_plugins.shell_command import RUN

    assert grammar.parse(["run", "x", *args, "--", "true"], {"run": RUN}.get) is None
    assert CliRunner().invoke(probe, args).exit_code == 2


def test_the_fast_parser_reads_good_values_as_click_does(tmp_path: Path) -> None:
    from orcha.cli import grammar
    from orcha_plugins.shell_command import RUN

    args = ["--cpus", "4", "--mem", "1.5G", "--after", "a,b", "--after", "c", "--timeout",
            "2h", "--env", "A=1", "--env", "B=x=y", "--cwd", str(tmp_path)]  # fmt: skip
    parsed = grammar.parse(["run", "x", *args, "--", "true"], {"run": RUN}.get)
    assert parsed is not None
    schedule, env, cwd = grammar.petition_request(parsed.values)
    assert {"schedule": Schedule.from_wire(schedule), "env": env, "cwd": cwd} == parse(*args)


def test_hold_delay_and_at_go_into_the_schedule() -> None:
    import datetime

    now = datetime.datetime.now()
    got = parse("--hold", "--delay", "1:30:00", "--at", "2030-01-02T03:04")["schedule"]
    assert (got.hold, got.delay) == (True, 5400.0)
    assert got.begin == datetime.datetime(2030, 1, 2, 3, 4).timestamp()
    # HH:MM is the next such time: today if still to come, else tomorrow
    past = (now - datetime.timedelta(minutes=1)).strftime("%H:%M")
    begin = parse("--at", past)["schedule"].begin
    assert now.timestamp() < begin <= now.timestamp() + 86400
    assert datetime.datetime.fromtimestamp(begin).strftime("%H:%M") == past
