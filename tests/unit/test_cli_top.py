"""orcha.cli.top: the view's tables, its plain text and its fitting to the terminal,
from a model fed with the recorded event stream (tests/fixtures/top_events.jsonl)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from orcha.cli.top import header_line, plain, render, sections
from orcha.client.top_model import TopModel

RECORDING = Path(__file__).parent.parent / "fixtures" / "top_events.jsonl"


def _model(events: int = 3) -> TopModel:
    """The model after the reply and the first ``events`` events (3: the two state
    events and the first usage: hog runs, later waits, done1 has ended)."""
    first, *rest = (json.loads(line) for line in RECORDING.read_text().splitlines())
    model = TopModel(first["recent"])
    for event in rest[:events]:
        model.apply(event)
    return model


def _usage(**data: Any) -> dict[str, Any]:
    base = {"cpus": {"used": 1, "capacity": 2}, "paused": False, "queued": 0, "running": [],
            "waiting": [], "gpus": [], "groups": []}  # fmt: skip
    return {"event": "usage", "petition": None, "kind": "", "timestamp": 1.0,
            "data": {**base, **data}}  # fmt: skip


def test_the_sections_of_the_recorded_service() -> None:
    model = _model()
    now = model.running["hog"]["started"] + 65
    parts = sections(model, now)
    assert [p.title for p in parts] == ["Running", "Waiting (queue head)", "Ended (last 5)"]
    running, waiting, ended = parts
    (hog,) = running.rows
    row = dict(zip(running.header, hog, strict=True))
    assert row["ID"] == "hog" and row["COMMAND"] == "sleep 100000" and row["TIME"] == "1:05"
    assert row["PROCS"] == "1" and row["MEM"].endswith("M") and row["CPU%"] == "0"
    (later,) = waiting.rows
    row = dict(zip(waiting.header, later, strict=True))
    assert row["WHY IT WAITS"] == "waiting for a free slot (1/1 CPUs in use)"
    assert row["PRIO"] == "2" and row["COMMAND"] == "echo late"
    (done,) = ended.rows
    assert done[:3] == ["done1", "FAILED", "3"] and ended.styles == ["red"]


def test_gpus_and_groups_show_when_in_use() -> None:
    model = TopModel()
    model.apply(_usage(
        running=[{"id": "train", "gpus": ["1"], "group": "batch", "cpus": 1, "started": 0.0,
                  "cpu_percent": 99.5, "rss": 3 << 30, "processes": 4, "attempt": 2,
                  "progress": {"value": 3, "target": 10, "unit": "epochs"}}],
        waiting=[{"id": "b2", "group": "batch", "why": "group batch full (1/1)", "paused": True}],
        queued=7,
        gpus=[{"index": "0", "petition": None}, {"index": "1", "petition": "train"}],
        groups=[{"name": "batch", "max_running": 1, "running": 1, "queued": 1, "paused": False},
                {"name": "default", "max_running": None, "running": 0, "queued": 0,
                 "paused": True}],
    ))  # fmt: skip
    parts = {p.title: p for p in sections(model, 3600.0, ended=0)}
    assert list(parts) == ["Running", "Waiting (queue head)", "GPUs", "Groups"]
    (train,) = parts["Running"].rows
    assert train[1:4] == ["100", "3.0G", "4"] and train[4] == "1:00:00"
    assert train[-1] == "3/10 epochs; attempt 2"
    assert parts["Waiting (queue head)"].rows[0][-1] == "paused; group batch full (1/1)"
    assert parts["Waiting (queue head)"].more == 6
    assert parts["GPUs"].rows == [["0", "free"], ["1", "train"]]
    assert parts["Groups"].rows[1] == ["default", "-", "0", "0", "paused"]


def test_plain_text_has_no_trailing_spaces_and_says_what_is_left_out() -> None:
    model = TopModel()
    model.apply(_usage(waiting=[{"id": "w", "why": "held"}], queued=3, paused=True))
    text = plain(header_line(model, "/run/orcha.sock", 0.0), sections(model, 0.0))
    lines = text.splitlines()
    assert lines[0].startswith("orcha top: /run/orcha.sock · ")
    assert "1/2 CPU slots in use · 0 running · 3 waiting · PAUSED" in lines[0]
    assert "Running:" in lines and "  (none)" in lines and "  … and 2 more" in lines
    assert all(line == line.rstrip() for line in lines)


def test_the_live_view_fits_the_terminal_leaving_out_waiting_rows_first() -> None:
    from rich.console import Console

    model = TopModel()
    model.apply(_usage(
        running=[{"id": f"r{i}", "started": 0.0} for i in range(3)],
        waiting=[{"id": f"w{i}", "why": "waiting for a free slot"} for i in range(40)],
        queued=40,
    ))  # fmt: skip
    console = Console(record=True, width=120, height=20, color_system=None)
    console.print(render(model, "/run/orcha.sock", 5, 20))
    text = console.export_text()
    assert len(text.splitlines()) <= 20
    assert all(f"r{i}" in text for i in range(3))
    assert "w0" in text and "w39" not in text and "… and " in text
    assert "q: quit" in text


def test_importing_the_command_does_not_import_rich() -> None:
    # Every orcha command imports orcha.cli.top to register it: it must stay light.
    code = "import sys, orcha.cli.app; print('rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _hostile() -> TopModel:
    """A model whose petitions' commands, reasons and messages hold terminal escape
    sequences, a right-to-left override and rich markup."""
    model = TopModel()
    model.apply(_usage(
        running=[{"id": "a", "started": 0.0, "command": "sh -c 'echo \x1b[2J\x1b]0;PWN\x07'"},
                 {"id": "b", "started": 0.0, "command": "sleep 30 '\u202eevil'"},
                 {"id": "d", "started": 0.0, "command": "sleep 30 '[/bold] [red]x'"}],
        waiting=[{"id": "w", "command": "x", "why": "held\x1b[8m", "group": "g\x1b[1m"}],
        queued=1,
    ))  # fmt: skip
    model.apply({"event": "finished", "petition": "e", "kind": "shell", "timestamp": 1.0,
                 "data": {"state": "FAILED", "code": 127,
                          "message": "command not found: \x1b[31mred\x1b[0m"}})  # fmt: skip
    return model


def test_a_petitions_text_is_shown_escaped_never_sent_to_the_terminal() -> None:
    # As 'orcha status' shows it: control characters and invisible format characters
    # escaped (the message kept whole: it was 'command not found: red' piped).
    parts = {p.title: p for p in sections(_hostile(), 10.0)}
    commands = [row[-2] for row in parts["Running"].rows]
    assert commands == ["sh -c 'echo \\x1b[2J\\x1b]0;PWN\\x07'", "sleep 30 '\\u202eevil'",
                        "sleep 30 '[/bold] [red]x'"]  # fmt: skip
    assert parts["Waiting (queue head)"].rows[0][-1] == "held\\x1b[8m"
    assert parts["Waiting (queue head)"].rows[0][-3] == "g\\x1b[1m"
    assert parts["Ended (last 5)"].rows[0][-1] == "command not found: \\x1b[31mred\\x1b[0m"
    text = plain("title", list(parts.values()))
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text


def test_the_live_view_shows_markup_in_a_command_as_text() -> None:
    from rich.console import Console

    console = Console(record=True, width=200, height=40, color_system="truecolor")
    console.print(render(_hostile(), "/run/orcha.sock", 5, 40))
    text = console.export_text()
    assert "sleep 30 '[/bold] [red]x'" in text and "PWN\\x07" in text
    screen = console.export_text(styles=True)
    assert "\x1b]" not in screen and "\x07" not in screen and "\u202e" not in screen


def test_plain_text_aligns_wide_characters_by_terminal_cells() -> None:
    from orcha.cli.tables import cell_width

    model = TopModel()
    model.apply(_usage(running=[{"id": "日本", "started": 0.0, "command": "cmd-x"},
                                {"id": "ab", "started": 0.0, "command": "cmd-y"}]))  # fmt: skip
    lines = plain("t", sections(model, 1.0, ended=0)).splitlines()
    header = next(line for line in lines if "COMMAND" in line)
    rows = [line for line in lines if "cmd-" in line]
    # COMMAND starts in the same terminal cell on every line: '日本' takes four cells.
    starts = {
        cell_width(line[: line.index(word)])
        for line, word in [(header, "COMMAND"), (rows[0], "cmd-"), (rows[1], "cmd-")]
    }
    assert len(starts) == 1


def test_why_it_waits_says_the_start_time_in_this_clients_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orcha.units import clock_time

    begin = 1_796_562_000.0  # 2026-12-06 13:00 UTC, 08:00 in New York
    model = TopModel()
    model.apply(_usage(waiting=[{"id": "tz1", "begin": begin, "paused": True,
                                 "why": "starts at 2026-12-06 13:00"}], queued=1))  # fmt: skip
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        (row,) = sections(model, time.time(), ended=0)[1].rows
        assert row[-1] == f"paused; starts at {clock_time(begin, time.time())}"
        assert "08:00" in row[-1]
    finally:
        monkeypatch.undo()
        time.tzset()
