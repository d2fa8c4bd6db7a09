"""orcha.cli.fast_jobs: plain ``status`` and ``status ID...`` without click, printed byte
for byte as click's command prints them, piped and on a terminal; and what it imports."""

from __future__ import annotations

import io
import random
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import orcha.client.api
from orcha.cli import fast_jobs
from orcha.cli.app import run as click_run
from orcha.errors import LostServiceError
from tests.unit.test_cli_fast_jobs import _loaded
from tests.unit.test_fast import FAST_PATH_MAY_LOAD

NOW = 1_780_000_000.0


def record(seq: int, pid: str, state: str, **fields: Any) -> dict[str, Any]:
    """A petition's record as the service sends it (the fields status reads)."""
    started = NOW - 30 * seq if state != "QUEUED" else None
    ended = NOW - 5 * seq if state not in ("QUEUED", "RUNNING") else None
    return {"seq": seq, "id": pid, "kind": "shell", "state": state, "priority": 0,
            "submitted": NOW - 100 * seq, "started": started, "ended": ended,
            "code": 0 if state == "SUCCEEDED" else (1 if state == "FAILED" else None),
            "params": {"argv": ["sh", "-c", f"echo {pid}"]}, "schedule": {}, "parent": None,
            "cwd": "/tmp", "attempt": 1, **fields}  # fmt: skip


RECORDS = {
    "q": record(1, "q", "QUEUED", waiting="waiting for a slot of group default (2 running)"),
    "r": record(2, "r", "RUNNING", progress={"value": 3, "target": 10, "unit": "files"}),
    "ok": record(3, "ok", "SUCCEEDED", cpu_time=0.25, peak_rss=5_000_000, user="u", host="h"),
    "bad": record(4, "bad", "FAILED", message="exited with code 1", schedule={"retries": 2},
                  attempt=3),
    "wide": record(5, "wide", "CANCELLED", params={"argv": ["echo", "你好世界" * 12, "a b"]},
                   message="cancelled by u@h", schedule={"group": "gpu"}),
    "arr_1": record(6, "arr_1", "SUCCEEDED", parent=None, machine="tcp://10.0.0.2:8786"),
    "arr_2": record(7, "arr_2", "INTERRUPTED", params={"n": 3, "x": [1, "é"]}),
    "kid": record(8, "kid", "QUEUED", parent="r", paused=True),
}  # fmt: skip
ARRAYS = {"arr": ["arr_1", "arr_2"]}


class FakeClient:
    """The service's status answers from :data:`RECORDS` ('empty' asks an empty service;
    'lost' loses the connection), noting every call."""

    calls: list[tuple[Any, ...]] = []

    def __init__(self, settings: Any = None) -> None:
        pass

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def status_report(self, ids: Any = None, *args: Any) -> dict[str, Any]:
        FakeClient.calls.append(("status", tuple(ids or ()), *args))
        if "lost" in (ids or ()):
            raise LostServiceError("the connection to the service was lost")
        if "empty" in (ids or ()):
            return {"petitions": [], "missing": [], "hidden": 0}
        if not ids:
            return {"petitions": list(RECORDS.values()), "missing": [], "hidden": 4,
                    "hidden_queued": 2}  # fmt: skip
        wanted = [m for i in ids for m in ARRAYS.get(i, [i])]
        return {"petitions": [RECORDS[i] for i in wanted if i in RECORDS],
                "missing": [i for i in wanted if i not in RECORDS], "hidden": 0,
                "arrays": {i: ARRAYS[i] for i in ids if i in ARRAYS}}  # fmt: skip


class Terminal(io.StringIO):
    """A terminal's stdout, as far as status asks."""

    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _fake_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHA_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ORCHA_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("ORCHA_CONFIG", "ORCHA_ADDRESS", "ORCHA_KEY", "_ORCHA_COMPLETE", "NO_COLOR",
                 "FORCE_COLOR", "TERM"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(orcha.client.api, "Client", FakeClient)
    monkeypatch.setattr(time, "time", lambda: NOW)  # RUNNING rows' runtime
    FakeClient.calls = []


def outcome(run: Any, args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[Any, ...]:
    FakeClient.calls = []
    code = run(args)
    out, err = capsys.readouterr()
    return code, out, err, FakeClient.calls


def fast(args: list[str]) -> int | None:
    return fast_jobs.try_jobs(args, None)


FORMS = [
    ["status"], ["status", "empty"], ["status", "q"], ["status", "r"], ["status", "ok"],
    ["status", "bad"], ["status", "wide"], ["status", "arr"], ["status", "arr_2"],
    ["status", "gone"], ["status", "q", "gone", "r"], ["status", "lost"], ["status", "kid"],
    ["status", "r", "kid", "wide", "ok"], ["status", ""],
]  # fmt: skip


@pytest.mark.parametrize("args", FORMS)
def test_plain_status_says_what_click_says_on_a_pipe(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    here = outcome(fast, args, capsys)
    assert here[0] is not None and here[3]  # served here, and it asked the service
    assert "\x1b[" not in here[1]  # a pipe is not coloured
    assert here == outcome(click_run, args, capsys)


@pytest.mark.parametrize("columns", ["200", "60", "20"])
@pytest.mark.parametrize("args", [["status"], ["status", "wide"], ["status", "arr"]])
def test_plain_status_says_what_click_says_on_a_terminal(
    args: list[str], columns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Coloured, and COMMAND and NOTE fitted to the terminal's width."""
    monkeypatch.setenv("COLUMNS", columns)
    said = []
    for run in (fast, click_run):
        out, err = Terminal(), Terminal()
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        FakeClient.calls = []
        said.append((run(args), out.getvalue(), err.getvalue(), FakeClient.calls))
        monkeypatch.undo()  # the real streams back, before anything asserts
        monkeypatch.setattr(orcha.client.api, "Client", FakeClient)
        monkeypatch.setattr(time, "time", lambda: NOW)
        monkeypatch.setenv("COLUMNS", columns)
    assert said[0][0] is not None and "\x1b[" in said[0][1]
    assert said[0] == said[1]
    if args == ["status"] and columns == "60":  # cut short to fit
        assert "…" in said[0][1] and "你好世界" * 12 not in said[0][1]


@pytest.mark.parametrize(
    "env", [{"NO_COLOR": "1"}, {"FORCE_COLOR": "1"}, {"TERM": "dumb"}, {"NO_COLOR": ""}]
)
def test_the_environment_decides_colour_alike(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for args in (["status"], ["status", "bad"]):
        here = outcome(fast, args, capsys)
        assert here == outcome(click_run, args, capsys)
        assert ("\x1b[" in here[1]) == ("FORCE_COLOR" in env)


@pytest.mark.parametrize("args", [
    ["status", "--all"], ["status", "-h"], ["status", "--", "x"], ["status", "x", "--json"],
    ["status", "--color", "always"], ["status", "x", "-v"], ["-v", "status"],
    ["status", "--sort=id"], ["statu"],
])  # fmt: skip
def test_every_other_status_goes_to_click(args: list[str]) -> None:
    assert fast(args) is None
    assert FakeClient.calls == []


def test_shell_completion_and_ascii_streams_go_to_click(monkeypatch: pytest.MonkeyPatch) -> None:
    """click re-encodes a stream that says ASCII (UTF-8, with replacements): it prints."""
    monkeypatch.setenv("_ORCHA_COMPLETE", "bash_complete")
    assert fast(["status"]) is None
    monkeypatch.delenv("_ORCHA_COMPLETE")
    ascii_out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", ascii_out)
    assert fast(["status", "wide"]) is None
    assert FakeClient.calls == []


def test_whenever_plain_status_is_served_click_says_the_same(
    capsys: pytest.CaptureFixture[str],
) -> None:
    words = [*RECORDS, "arr", "gone", "empty", "-", "--", "-x", "--all", "a b"]
    rng = random.Random(14)
    served = 0
    for _ in range(120):
        args = ["status", *rng.sample(words, rng.randint(0, 3))]
        here = outcome(fast, args, capsys)
        if here[0] is not None:
            served += 1
            assert here == outcome(click_run, args, capsys), args
    assert served > 40


def test_plain_status_loads_only_orcha_and_cheap_c_modules(tmp_path: Path) -> None:
    """What printing shell petitions' table and detail view imports: no click, typing,
    shlex or re (json only for other kinds' parameters; unicodedata only for text that
    is not ASCII)."""
    loaded = _loaded("status", tmp_path)
    assert "orcha.cli.status_text" in loaded and "orcha.cli.tables" in loaded
    others = {m for m in loaded if m.split(".")[0] != "orcha"}
    assert others <= FAST_PATH_MAY_LOAD, sorted(others - FAST_PATH_MAY_LOAD)


class GonePipe(io.StringIO):
    """A pipe whose reader has gone."""

    encoding = "utf-8"

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_reader_gone_ends_it_quietly_as_sigpipe_would(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As ``orcha run`` and the other plain forms do (orcha.cli.report): 128 + SIGPIPE,
    nothing on stderr. (click's own commands exit 1 there: click's handling.)"""
    monkeypatch.setattr(sys, "stdout", GonePipe())
    assert fast(["status"]) == 128 + 13
    assert capsys.readouterr().err == ""
