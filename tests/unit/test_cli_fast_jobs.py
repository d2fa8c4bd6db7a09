"""orcha.cli.fast_jobs: plain ``wait``/``cancel`` without click, said exactly as click's
commands say it; and what the click commands' path may import."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import orcha.client.api
from orcha.cli import fast_jobs
from orcha.cli.app import run as click_run
from orcha.errors import LostServiceError, NoPetitionError
from tests.unit.test_fast import FAST_PATH_MAY_LOAD


class FakeClient:
    """The service's answers, by ID: 'gone' is unknown, 'done' has ended, 'bad' failed,
    'arr' is an array of two that failed; 'lost' loses the connection."""

    calls: list[tuple[Any, ...]] = []

    def __init__(self, settings: Any = None) -> None:
        pass

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def cancel_each(self, ids: Any, force: bool = False, **selection: Any) -> dict[str, str]:
        FakeClient.calls.append(("cancel", tuple(ids), force, sorted(selection.items())))
        if "lost" in ids:
            raise LostServiceError("the service went away")
        return {i: ("cancelled" if i not in ("gone", "done") else f"no luck with {i!r}")
                for i in ids}  # fmt: skip

    def wait_report(self, ids: Any, timeout: float | None = None) -> dict[str, Any]:
        FakeClient.calls.append(("wait", list(ids), timeout))
        if "gone" in ids:
            raise NoPetitionError("no petition has ID 'gone'")
        members = [m for i in ids for m in (["arr_1", "arr_2"] if i == "arr" else [i])]
        ended = {m: {"id": m, "state": "FAILED" if m != "done" else "SUCCEEDED", "code": 3}
                 for m in members}  # fmt: skip
        arrays = {"arr": ["arr_1", "arr_2"]} if "arr" in ids else {}
        return {"ended": ended, "ids": members, "arrays": arrays, "timed_out": False}


@pytest.fixture(autouse=True)
def _fake_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHA_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ORCHA_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("ORCHA_CONFIG", "ORCHA_ADDRESS", "ORCHA_KEY", "_ORCHA_COMPLETE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(orcha.client.api, "Client", FakeClient)
    FakeClient.calls = []


def outcome(run: Any, args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[Any, ...]:
    FakeClient.calls = []
    code = run(args)
    out, err = capsys.readouterr()
    return code, out, err, FakeClient.calls


@pytest.mark.parametrize("args", [
    ["wait", "x"], ["wait", "done", "bad"], ["wait", "arr"], ["wait", "gone"],
    ["cancel", "x"], ["cancel", "x", "gone", "done"], ["cancel", "lost"], ["wait", ""],
])  # fmt: skip
def test_plain_forms_say_what_click_says(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    fast = outcome(lambda a: fast_jobs.try_jobs(a, None), args, capsys)
    assert fast[0] is not None and fast[3]  # served here, and it asked the service
    assert fast == outcome(click_run, args, capsys)


@pytest.mark.parametrize("args", [
    ["wait"], ["cancel"], ["wait", "-h"], ["wait", "--all"], ["cancel", "x", "--force"],
    ["wait", "--", "x"], ["wait", "x", "--timeout", "1s"], ["-v", "wait", "x"],
    ["status", "-x"], ["run", "x", "--", "true"], [],
])  # fmt: skip
def test_everything_else_goes_to_click(args: list[str]) -> None:
    assert fast_jobs.try_jobs(args, None) is None
    assert FakeClient.calls == []


def test_shell_completion_goes_to_click(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_ORCHA_COMPLETE", "bash_complete")
    assert fast_jobs.try_jobs(["wait", "x"], None) is None


def test_whenever_the_fast_path_serves_click_says_the_same(
    capsys: pytest.CaptureFixture[str],
) -> None:
    words = ["x", "done", "bad", "arr", "gone", "-", "--", "-x", "--all", "--force", "a b"]
    rng = random.Random(14)
    served = 0
    for _ in range(200):
        args = [rng.choice(["wait", "cancel"]), *rng.sample(words, rng.randint(0, 3))]
        fast = outcome(lambda a: fast_jobs.try_jobs(a, None), args, capsys)
        if fast[0] is not None:
            served += 1
            assert fast == outcome(click_run, args, capsys), args
    assert served > 30


#: Never loaded by the click commands ``status``, ``wait``, ``cancel`` (issue 14): a
#: table's colours come from orcha's own renderer, the configuration file's parser only
#: when there is a file, and plugins are discovered only for a command orcha lacks.
CLICK_PATH_NEVER = {"rich", "yaml", "psutil", "importlib.metadata", "orcha_plugins",
                    "orcha.cli.bridge", "orcha.cli.petition", "pkgutil", "asyncio", "json",
                    "shutil"}  # fmt: skip
PROBE = """
import sys
before = set(sys.modules)
from orcha.cli import fast_jobs
if sys.argv[1] == "fast":
    fast_jobs.plain_ids(["wait", "x"])
    from orcha import settings
    settings.configure(settings.resolve(config=None))
    import orcha.cli.bulk, orcha.cli.report, orcha.client.api
    from orcha.protocol.wire import mac
    mac(b"key", b"challenge", "md5")
    orcha.cli.bulk.report_wait({"ended": {}, "ids": [], "arrays": {}, "timed_out": False},
                               False, "any", None)
elif sys.argv[1] == "status":
    fast_jobs.plain_ids(["status"])
    from orcha import settings
    settings.configure(settings.resolve(config=None))
    import orcha.cli.report, orcha.client.api
    from orcha.cli import status_text
    row = {"seq": 1, "id": "a", "kind": "shell", "state": "RUNNING", "priority": 0,
           "submitted": 1.0, "started": 2.0, "ended": None, "code": None,
           "params": {"argv": ["echo", "a b"]}, "schedule": {"retries": 1},
           "progress": {"value": 1, "target": 2}, "parent": None, "machine": "m"}
    import io
    stdout, sys.stdout, sys.stderr = sys.stdout, io.StringIO(), io.StringIO()
    for ids in ((), ("a",)):
        status_text.show({"petitions": [row], "missing": [], "hidden": 1}, ids, "submitted")
    sys.stdout = stdout
else:
    from orcha.cli.app import cli
    import click
    ctx = click.Context(cli)
    for name in ("status", "wait", "cancel"):
        cli.get_command(ctx, name).make_context(name, ["x"])
    import orcha.cli.connect, orcha.client.api, orcha.cli.output, orcha.cli.bulk
print(" ".join(sorted(set(sys.modules) - before)))
"""


def _loaded(which: str, tmp_path: Path) -> set[str]:
    import os

    env = {**os.environ, "ORCHA_STATE_DIR": str(tmp_path), "ORCHA_RUNTIME_DIR": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path)}  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", PROBE, which], capture_output=True,
                          text=True, timeout=60, env=env, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def test_plain_wait_and_cancel_load_only_orcha_and_cheap_c_modules(tmp_path: Path) -> None:
    loaded = _loaded("fast", tmp_path)
    assert "orcha.client.api" in loaded and "orcha.cli.bulk" in loaded
    others = {m for m in loaded if m.split(".")[0] != "orcha"}
    assert others <= FAST_PATH_MAY_LOAD, sorted(others - FAST_PATH_MAY_LOAD)


def test_the_click_commands_load_nothing_heavy_they_do_not_use(tmp_path: Path) -> None:
    loaded = _loaded("click", tmp_path)
    assert "click" in loaded and "orcha.cli.jobs" in loaded
    assert not loaded & CLICK_PATH_NEVER, sorted(loaded & CLICK_PATH_NEVER)
    assert not {m for m in loaded if m.startswith(("rich.", "yaml.", "orcha_plugins."))}
