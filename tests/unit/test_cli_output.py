"""The CLI's output conventions (orcha.cli.output, tables, status_view, verbose) and the
service side of status selection (orcha.protocol.selection), without a service."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import click
import pytest

from orcha.cli import output, status_view, tables, verbose
from orcha.protocol.schedule import Schedule
from orcha.protocol.selection import select


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


# -- output: --json and --color ------------------------------------------------------------
def test_json_is_indented_on_a_terminal_and_one_line_when_piped() -> None:
    doc = {"a": [1, 2], "b": {"c": None}}
    assert output.dumps(doc, io.StringIO()) == '{"a": [1, 2], "b": {"c": null}}'
    indented = output.dumps(doc, Tty())
    assert indented.startswith("{\n  ") and json.loads(indented) == doc


@pytest.mark.parametrize(
    ("choice", "env", "tty", "expected"),
    [
        (None, {}, True, True),
        (None, {}, False, False),
        (None, {"NO_COLOR": "1"}, True, False),
        (None, {"NO_COLOR": ""}, True, True),  # an empty NO_COLOR does not count
        (None, {"FORCE_COLOR": "1"}, False, True),
        (None, {"TERM": "dumb"}, True, False),
        ("always", {"NO_COLOR": "1"}, False, True),  # --color wins over the environment
        ("never", {"FORCE_COLOR": "1"}, True, False),
        ("auto", {"NO_COLOR": "1", "FORCE_COLOR": "1"}, True, False),
    ],
)
def test_use_color(
    monkeypatch: pytest.MonkeyPatch, choice: str | None, env: dict[str, str], tty: bool,
    expected: bool,
) -> None:  # fmt: skip
    for name in ("NO_COLOR", "FORCE_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    stream = Tty() if tty else io.StringIO()
    assert output.use_color(stream, choice) is expected


@pytest.mark.parametrize(
    ("args", "env", "coloured"),
    [
        (["--color", "always"], {}, True),
        ([], {"FORCE_COLOR": "1"}, True),
        (["--color", "always"], {"NO_COLOR": "1"}, True),
        ([], {}, False),
        ([], {"NO_COLOR": "1", "FORCE_COLOR": "1"}, False),
        (["--color", "never"], {"FORCE_COLOR": "1"}, False),
    ],
)
def test_ls_piped_colours_as_status_does(
    tmp_path: Path, args: list[str], env: dict[str, str], coloured: bool
) -> None:
    # 'orcha ls' coloured only a terminal: --color always and FORCE_COLOR did nothing.
    import os
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items()
            if not k.startswith("ORCHA_") and k not in ("NO_COLOR", "FORCE_COLOR")}  # fmt: skip
    base.update(XDG_CONFIG_HOME=str(tmp_path), ORCHA_STATE_DIR=str(tmp_path / "s"), **env)
    done = subprocess.run([sys.executable, "-m", "orcha", *args, "ls"], env=base,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert ("\x1b[" in done.stdout) is coloured, done.stdout
    plain = subprocess.run([sys.executable, "-m", "orcha", "ls"], env={**base, "NO_COLOR": "1"},
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    # The same lines, only painted.
    assert re.sub(r"\x1b\[[0-9;]*m", "", done.stdout) == plain.stdout


def test_paint_only_when_colouring() -> None:
    assert output.paint("x", "red", color=False) == "x"
    assert output.paint("x", "red", color=True) == "\x1b[31mx\x1b[0m"
    assert output.paint("x", None, color=True) == "x"


# -- tables: cells, not characters ----------------------------------------------------------
def test_cell_width_counts_wide_and_combining_characters() -> None:
    assert tables.cell_width("abc") == 3
    assert tables.cell_width("任务一") == 6
    assert tables.cell_width("e\u0301") == 1  # e + combining acute accent
    assert tables.cell_width("ｱ") == 1  # half-width katakana


def test_truncate_and_wrap_never_split_a_wide_character() -> None:
    assert tables.truncate("你好世界", 5) == "你好…"
    assert tables.cell_width(tables.truncate("你好世界", 6)) <= 6
    assert tables.truncate("short", 10) == "short"
    assert tables.wrap("waiting for a free slot", 10) == ["waiting", "for a free", "slot"]
    assert all(tables.cell_width(line) <= 7 for line in tables.wrap("你好世界你好世界", 7))


def test_printable_escapes_control_characters() -> None:
    assert tables.printable("a\nb\x1b[31m") == "a\\nb\\x1b[31m"


def test_a_table_of_cjk_text_is_aligned_by_cells() -> None:
    lines = tables.render(
        ["ID", "COMMAND", "NOTE"],
        [["任务一", "echo 你好", "x"], ["ab", "ls", "y"]],
    )
    starts = [
        tables.cell_width(line[: line.index(cell)])
        for line, cell in zip(lines, ["NOTE", "x", "y"], strict=True)
    ]
    assert len(set(starts)) == 1, lines
    assert all(line == line.rstrip() for line in lines)


def test_a_table_shrinks_its_command_then_wraps_its_note_to_fit() -> None:
    header = ["ID", "COMMAND", "NOTE"]
    rows = [["a", "python3 -c 'print(1)' --with many --options", "waiting for a free slot now"]]
    lines = tables.render(header, rows, width=40, shrink={1: 12, 2: 10}, wrapped=[2])
    assert all(tables.cell_width(line) <= 40 for line in lines), lines
    assert "python3 -c …" in lines[1]
    note_at = lines[0].index("NOTE")
    assert " ".join(line[note_at:].strip() for line in lines[1:]) == rows[0][2]


def test_colour_marks_the_header_bold_and_rows_by_style() -> None:
    lines = tables.render(["A"], [["x"]], styles=["green"], color=True)
    assert lines == ["\x1b[1mA\x1b[0m", "\x1b[32mx\x1b[0m"]


# -- status_view ----------------------------------------------------------------------------
def rec(seq: int, pid: str, **fields: Any) -> dict[str, Any]:
    return {"seq": seq, "id": pid, "state": "SUCCEEDED", "priority": 0, "parent": None,
            **fields}  # fmt: skip


def test_command_of_quotes_a_shell_command_and_lists_other_parameters() -> None:
    assert status_view.command_of({"params": {"argv": ["echo", "a b", "你好"]}}) == (
        "echo 'a b' '你好'"
    )
    assert status_view.command_of({"params": {"counter": 3, "name": "x"}}) == "counter=3 name=x"
    assert status_view.command_of({"params": {}}) == "-"
    assert "\\n" in status_view.command_of({"params": {"argv": ["printf", "a\nb"]}})
    # bytes that are not UTF-8 as a shell writes them (bash's $'...'), not as '\udcff'
    argv = ["printf", "%s\n", "\udcff\udcfe", "it's\udcff\x1b"]
    assert status_view.command_of({"params": {"argv": argv}}) == (
        "printf '%s\\n' $'\\xff\\xfe' $'it\\'s\\xff\\x1b'"
    )


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("submitted", ["b", "a", "c"]),
        ("priority", ["c", "b", "a"]),
        ("id", ["a", "b", "c"]),
        ("started", ["a", "b", "c"]),  # never started: last
        ("ended", ["b", "a", "c"]),
        ("state", ["c", "a", "b"]),  # running, then failed, then succeeded
    ],
)
def test_sort_orders_the_roots_and_keeps_children_under_their_parent(
    sort: str, expected: list[str]
) -> None:
    rows = [
        rec(1, "b", priority=1, started=20.0, ended=30.0),
        rec(2, "a", priority=2, started=10.0, ended=40.0, state="FAILED"),
        rec(3, "c", priority=-1, state="RUNNING"),
        rec(4, "a.1", parent="a"),
    ]
    cells = [cell for cell, _ in status_view.ordered(rows, sort)]
    assert [c for c in cells if not c.startswith("└")] == expected
    assert cells[cells.index("a") + 1] == "└ a.1"


def test_the_detail_view_has_the_command_cwd_requests_and_accounting() -> None:
    record = rec(
        1, "job", kind="shell", state="FAILED", cwd="/srv/工作", params={"argv": ["make"]},
        schedule={"cpus": 2, "mem": 1 << 30, "timeout": 90.0, "group": "build"},
        submitted=1.0, started=2.0, ended=65.0, code=2, message="exit 2", attempt=1,
        machine="local", cpu_time=61.5, peak_rss=3 << 20,
    )  # fmt: skip
    pairs = dict(status_view.detail(record, "exit 2"))
    assert pairs["Command"] == "make" and pairs["Cwd"] == "/srv/工作"
    assert pairs["Group"] == "build"
    assert pairs["Requests"] == "--cpus 2 --mem 1.0 GiB --timeout 1m30s"
    assert pairs["Wall time"] == "1m03s" and pairs["CPU time"] == "1m01s"
    assert pairs["Peak memory"] == "3.0 MiB" and pairs["Code"] == "2"
    assert "Note" not in pairs  # the same as the message
    lines = status_view.detail_lines(list(pairs.items()), color=False)
    assert lines[0] == "ID:          job"  # labels aligned on the longest


def test_a_flag_among_the_requests_is_shown_as_typed() -> None:
    record = rec(1, "job", kind="shell", state="QUEUED", params={"argv": ["make"]},
                 schedule={"hold": True, "cpus": 2})  # fmt: skip
    assert dict(status_view.detail(record, None))["Requests"] == "--hold --cpus 2"


def test_state_and_group_options_take_lists_in_any_case() -> None:
    ctx = click.Context(click.Command("status"))
    param = click.Option(["--state"])
    assert status_view.states_option(ctx, param, ("queued,Running", "FAILED", "queued")) == [
        "QUEUED", "RUNNING", "FAILED",
    ]  # fmt: skip
    with pytest.raises(click.BadParameter, match="'done' is not one of the states QUEUED, "):
        status_view.states_option(ctx, param, ("done",))
    # cancel's and clean's take lists too, of the states they can act on
    ended = status_view.states_among("SUCCEEDED", "FAILED")
    assert ended(ctx, param, ("failed,succeeded",)) == ["FAILED", "SUCCEEDED"]
    with pytest.raises(click.BadParameter, match=r"'queued' is not one of the states SUCCEEDED"):
        ended(ctx, param, ("queued",))
    assert status_view.groups_option(ctx, param, ("a,b", "a")) == ["a", "b"]
    with pytest.raises(click.BadParameter):
        status_view.groups_option(ctx, param, ("bad name",))


# -- selection (the service's side of status) -------------------------------------------------
def rows_of(*specs: tuple[str, str, str, float | None]) -> list[dict[str, Any]]:
    return [
        {"seq": i, "id": pid, "state": state, "ended": ended,
         "schedule": {"group": group} if group != "default" else {}}
        for i, (pid, state, group, ended) in enumerate(specs, 1)
    ]  # fmt: skip


def test_select_keeps_the_active_and_the_last_ended_and_counts_the_rest() -> None:
    rows = rows_of(
        ("e1", "SUCCEEDED", "default", 5.0), ("q", "QUEUED", "default", None),
        ("e2", "FAILED", "batch", 1.0), ("e3", "CANCELLED", "default", 9.0),
        ("r", "RUNNING", "batch", None),
    )  # fmt: skip
    kept, hidden = select(rows, ended=1)
    assert [r["id"] for r in kept] == ["q", "e3", "r"] and hidden == 2  # e3 ended last
    kept, hidden = select(rows, ended=0)
    assert [r["id"] for r in kept] == ["q", "r"] and hidden == 3
    assert select(rows) == (rows, 0)
    kept, _ = select(rows, groups=["batch"])
    assert [r["id"] for r in kept] == ["e2", "r"]
    kept, _ = select(rows, last=2)
    assert [r["id"] for r in kept] == ["e3", "r"]
    assert select(select(rows, ended=1)[0], ended=1)[1] == 0  # idempotent


# -- Schedule: a value given equal to the default still overrides a template's --------------
def test_a_schedule_remembers_the_fields_it_was_given() -> None:
    schedule = Schedule.from_wire({"cpus": 1, "timeout": 5})
    assert schedule.to_wire() == {"timeout": 5.0}  # records keep only what differs
    assert schedule.to_wire(given=True) == {"cpus": 1, "timeout": 5.0}
    assert Schedule().to_wire(given=True) == {}


# -- -v ------------------------------------------------------------------------------------
def test_verbose_lines_say_where_the_address_key_and_config_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orcha import settings

    monkeypatch.setenv("ORCHA_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("ORCHA_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("ORCHA_ADDRESS", "ORCHA_KEY", "ORCHA_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    lines = verbose.lines(settings.resolve())
    where = "default: the socket in ORCHA_RUNTIME_DIR"
    assert lines[0] == f"address {tmp_path}/run/orcha.sock ({where})"
    assert lines[1] == f"key file {tmp_path}/state/key (absent)"
    assert lines[2] == f"configuration file {tmp_path}/config/orcha/config.yaml (absent)"
    monkeypatch.setenv("ORCHA_ADDRESS", "127.0.0.1:7000")
    lines = verbose.lines(settings.resolve(key="k"))
    assert lines[:2] == ["address 127.0.0.1:7000 (ORCHA_ADDRESS)", "key from --key"]
    lines = verbose.lines(settings.resolve(address=str(tmp_path / "s.sock")))
    assert lines[0] == f"address {tmp_path}/s.sock (--address)"


# -- --json of the commands that act, without a service (a stand-in client) ---------------
class FakeService:
    """What the commands call on orcha.Client, answering as the service does."""

    def __enter__(self) -> FakeService:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def add_kind(self, name: str, parent: str, settings: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "from": parent, "params": settings, "schedule": {},
                "available": True}  # fmt: skip

    def remove_kind(self, name: str) -> bool:
        return name == "known"

    def set_group(self, name: str, limit: int | None) -> list[dict[str, Any]]:
        return [{"name": name, "max_running": limit, "running": 0, "queued": 0,
                 "paused": False}]  # fmt: skip

    def state_set(self, plugin: str, key: str, value: Any) -> None:
        pass

    def state_rm(self, plugin: str, key: str) -> bool:
        return True


@pytest.mark.parametrize(
    ("args", "expected", "code"),
    [
        (["kinds", "add", "k", "--from", "shell", "--set", "argv=[\"true\"]"],
         {"kind": {"name": "k", "from": "shell", "params": {"argv": ["true"]}, "schedule": {},
                   "available": True}}, 0),
        (["kinds", "rm", "known"], {"name": "known", "removed": True}, 0),
        (["kinds", "rm", "other"], {"name": "other", "removed": False}, 209),
        (["group", "set", "g", "--max-running", "2"],
         {"groups": [{"name": "g", "max_running": 2, "running": 0, "queued": 0,
                      "paused": False}]}, 0),
        (["group", "rm", "g"], {"name": "g", "max_running": None}, 0),
        (["state", "set", "p", "k", "[1, 2]"], {"plugin": "p", "key": "k", "value": [1, 2]}, 0),
        (["state", "rm", "p", "k"], {"plugin": "p", "key": "k", "removed": True}, 0),
    ],
)  # fmt: skip
def test_commands_that_act_print_their_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str],
    expected: dict[str, Any], code: int,
) -> None:  # fmt: skip
    from orcha.cli import admission, app, kinds, state

    for module in (admission, kinds, state):
        monkeypatch.setattr(module, "client", lambda ctx: FakeService())
    assert app.run([*args, "--json"]) == code
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and json.loads(out) == expected  # one line: not a terminal


def test_config_validate_json_says_valid_or_why_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from orcha.cli import app

    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("grace: 2\n")
    bad.write_text("grace: x\n")
    assert app.run(["config", "validate", "--config", str(good), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {"path": str(good), "exists": True, "valid": True, "plugins_left_out": {},
                   "warnings": []}  # fmt: skip
    assert app.run(["config", "validate", "--config", str(bad), "--json"]) == 2
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert (doc["path"], doc["valid"]) == (str(bad), False)
    assert doc["error"].endswith('grace: expected a number, got "x"')
    assert captured.err == f"orcha: {doc['error']}\n"
