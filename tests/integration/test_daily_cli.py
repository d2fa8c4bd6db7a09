"""The CLI's daily rough edges against one real service (issue 13, points 9, 17, 18, 22):
``status`` at a glance (COMMAND column, CJK alignment, filters, sort, the last 20 ended,
the detail view, fitting a terminal), ``--json`` on every command that acts or reports,
``--color``, runtime kinds that cannot fit and options over them, ``config show`` and
``-v``/``-vv``.

One service for the whole module (its tests run in order and share its history).
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orcha.cli.tables import cell_width
from tests.conftest import Env, Service, private_env
from tests.integration.clients import WAIT, orcha

pytestmark = pytest.mark.timeout(120)

REFUSED = 204
ANSI = "\x1b["


@pytest.fixture(scope="module")
def denv() -> Iterator[Env]:
    with private_env("orcha-d-") as e:
        yield e


@pytest.fixture(scope="module")
def dservice(denv: Env) -> Service:
    return denv.serve("--max-running", "2", "--grace", "1")


def client(env: Env) -> Any:
    from orcha import settings
    from orcha.client.api import Client

    key = (env.state / "key").read_text().strip()
    return Client(settings=settings.resolve(address=str(env.socket), key=key))


def on_a_terminal(env: Env, *args: str, columns: int = 60) -> str:
    """What ``orcha ARGS`` prints on stdout when it is a terminal ``columns`` wide."""
    import fcntl
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    variables = {k: v for k, v in env.vars.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "orcha", *args], env={**variables, "TERM": "xterm"},
        stdout=follower, stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(follower)
    out = b""
    try:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
        proc.wait(WAIT)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    return out.decode().replace("\r\n", "\n")


def column_starts(line: str, header: str, names: list[str]) -> list[int]:
    """Where (in cells) each named column starts, as the header places them."""
    return [cell_width(header[: header.index(name)]) for name in names]


def test_status_reads_at_a_glance(denv: Env, dservice: Service, tmp_path: Path) -> None:
    with client(denv) as service:
        for n in range(22):
            service.submit(f"old{n:02d}", ["true"], detach=True, cwd=str(tmp_path))
        service.wait([f"old{n:02d}" for n in range(22)])
        service.submit("hold", ["sleep", "60"], detach=True, cwd=str(tmp_path))
    orcha(denv, "run", "任务", "--detach", "--group", "批", "--", "echo", "你好", "a b",
          cwd=tmp_path)  # fmt: skip
    orcha(denv, "wait", "任务")

    # Default: active petitions plus the last 20 ended, and a word on the others.
    out, err = orcha(denv, "status")
    lines = out.splitlines()
    header = lines[0]
    assert header.split() == ["ID", "KIND", "GROUP", "STATE", "PRIO", "SUBMITTED", "RUNTIME",
                              "CODE", "COMMAND", "NOTE"]  # fmt: skip
    ids = [line.split()[0] for line in lines[1:]]
    # 23 ended: the 20 that ended last (two ran at a time: not quite in order) and hold.
    assert ids[-2:] == ["hold", "任务"] and len(ids) == 21, ids
    assert ids[:-2] == sorted(ids[:-2]) and set(ids[:-2]) <= {f"old{n:02d}" for n in range(22)}
    assert err == "orcha: 3 older ended petition(s) not shown (--all)\n"
    # Wide characters align: every row's cells start where the header's do.
    names = ["KIND", "GROUP", "STATE", "COMMAND"]
    want = column_starts(header, header, names)
    for line in lines[1:]:
        cells = line.split()
        starts = [cell_width(line[: line.index(cells[i], len(cells[0]))]) for i in (1, 2, 3)]
        assert starts == want[:3], (line, want)
    row = next(line for line in lines if line.startswith("任务"))
    assert cell_width(row[: row.index("echo")]) == want[3]
    assert "echo '你好' 'a b'" in row and "批" in row

    everything, err = orcha(denv, "status", "--all")
    assert len(everything.splitlines()) == 1 + 24 and err == ""

    # Filters: a comma list of states (any case), groups, the last N, the sort.
    out, _ = orcha(denv, "status", "--state", "running,Queued")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["hold"]
    out, _ = orcha(denv, "status", "--group", "批", "--last", "5")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["任务"]
    out, _ = orcha(denv, "status", "--last", "3", "--sort", "state")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["hold", "old21", "任务"]
    doc = json.loads(orcha(denv, "status", "--json", "--last", "2")[0])
    assert [r["id"] for r in doc["petitions"]] == ["hold", "任务"] and doc["hidden"] == 0

    # One ID: the detail view, with the directory it ran in.
    out, _ = orcha(denv, "status", "任务")
    detail = dict(line.split(":", 1) for line in out.splitlines())
    assert detail["Command"].strip() == "echo '你好' 'a b'"
    assert detail["Cwd"].strip() == str(tmp_path)
    assert detail["State"].strip() == "SUCCEEDED" and detail["Group"].strip() == "批"

    # On a narrow terminal: the command is cut short, the lines fit, rows are coloured.
    with client(denv) as service:
        service.submit("wide", ["sh", "-c", "echo " + "x" * 80], detach=True, cwd=str(tmp_path))
        service.wait(["wide"])
    screen = on_a_terminal(denv, "status", "--last", "1", columns=76)
    assert ANSI in screen
    plain = on_a_terminal(denv, "--color", "never", "status", "--last", "1", columns=76)
    assert ANSI not in plain
    assert all(cell_width(line) <= 76 for line in plain.splitlines()), plain
    assert "sh -c 'echo x" in plain and "…" in plain
    piped, _ = orcha(denv, "--color", "always", "status", "--last", "1")
    assert ANSI in piped
    orcha(denv, "cancel", "hold")


def one_line_json(out: str) -> Any:
    """The JSON a command printed on a pipe: a single line."""
    assert out.endswith("\n") and out.count("\n") == 1, out
    return json.loads(out)


def test_every_command_that_acts_or_reports_takes_json(
    denv: Env, dservice: Service, tmp_path: Path
) -> None:
    submitted = one_line_json(orcha(denv, "run", "j1", "--detach", "--json", "--", "sh", "-c",
                                    "echo out; echo err >&2", cwd=tmp_path)[0])  # fmt: skip
    assert set(submitted) == {"id", "state"} and submitted["id"] == "j1"
    waited = one_line_json(orcha(denv, "wait", "j1", "--json")[0])
    assert waited == {"petitions": [{"id": "j1", "state": "SUCCEEDED", "code": 0,
                                     "message": None}], "failed": 0,
                      "pending": [], "timed_out": False}  # fmt: skip
    logs = one_line_json(orcha(denv, "logs", "j1", "--json")[0])
    assert (logs["id"], logs["state"], logs["code"]) == ("j1", "SUCCEEDED", 0)
    assert {(c["stream"], c["text"]) for c in logs["output"]} == {
        ("stdout", "out\n"), ("stderr", "err\n"),
    }  # fmt: skip
    orcha(denv, "run", "j2", "--detach", "--", "sleep", "60", cwd=tmp_path)
    running = one_line_json(orcha(denv, "logs", "j2", "--json")[0])
    assert (running["state"], running["code"]) == ("RUNNING", None)
    paused = one_line_json(orcha(denv, "pause", "j2", "--json")[0])
    assert paused == {"all": False, "groups": [], "results": {"j2": "paused"}}
    resumed = one_line_json(orcha(denv, "resume", "--group", "g", "--json")[0])
    assert resumed == {"all": False, "groups": ["g"], "results": {}}
    cancelled = json.loads(orcha(denv, "cancel", "j2", "nothere", "--json", code=209)[0])
    assert cancelled["results"]["j2"] == "cancelled"
    assert "nothere" in cancelled["results"]["nothere"]
    state = one_line_json(orcha(denv, "state", "ls", "shell", "--json")[0])
    assert state == {"plugin": "shell", "state": {}}
    cleaned = one_line_json(orcha(denv, "clean", "--json")[0])
    assert cleaned == {"removed": cleaned["removed"], "results": {}} and cleaned["removed"] >= 2
    usage = denv.run("run", "j3", "--json", "--", "true", timeout=WAIT)
    assert usage.returncode == 2 and "--json goes with --detach" in usage.stderr


def test_kinds_that_cannot_fit_options_over_them_config_and_verbose(
    denv: Env, dservice: Service, tmp_path: Path
) -> None:
    _, err = orcha(denv, "kinds", "add", "big", "--from", "shell", "--set", "cpus=8",
                   code=REFUSED)  # fmt: skip
    assert err == (
        "orcha: kind 'big' would ask for 8 CPUs but this service has 2 ('orcha serve "
        "--max-running'); set fewer with --set cpus=N (nothing defined)\n"
    )
    orcha(denv, "kinds", "add", "pair", "--from", "shell", "--set", 'argv=["false"]',
          "--set", "cpus=2")  # fmt: skip
    orcha(denv, "run", "k1", "--kind", "pair", "--cpus", "1", "--detach", "--", "true",
          cwd=tmp_path)  # fmt: skip
    orcha(denv, "wait", "k1", "--status", "success")
    (record,) = json.loads(orcha(denv, "status", "--json", "k1")[0])["petitions"]
    assert record["kind"] == "pair" and record["schedule"] == {}  # 1 CPU, not the 2
    assert record["params"] == {"argv": ["true"]}

    shown = json.loads(orcha(denv, "config", "show", "--json")[0])["config"]
    assert shown["address"] == str(denv.socket)
    assert shown["max_running"] == os.cpu_count()

    _, err = orcha(denv, "-v", "health")
    assert f"orcha: address {denv.socket} (default: the socket in ORCHA_RUNTIME_DIR)\n" in err
    assert f"orcha: key file {denv.state / 'key'} (exists)\n" in err
    assert "orcha: configuration file " in err and "config.yaml (absent)" in err
    _, err = orcha(denv, "-vv", "run", "k2", "--", "true")
    assert "orcha: connected and authenticated in " in err
    assert "orcha: operation submit: answered in " in err


def test_a_plugins_message_without_a_kind_is_told_which_service_runs_it(
    denv: Env, dservice: Service
) -> None:
    """What the tutorial's 'orcha hello-world send' sends (a message of the original
    API, without a kind), sent to 'orcha serve': refused (204) with a hint."""
    from orcha.errors import PetitionError
    from orcha.interfaces import Message
    from orcha.lib import ClientManager

    key = (denv.state / "key").read_text().strip()
    legacy = ClientManager(address=str(denv.socket), key=key)
    assert legacy.connect()
    try:
        assert legacy.manager is not None
        message = Message(id="m1", extras={"queue": legacy.manager.Queue(), "counter": 1})
        with pytest.raises(PetitionError) as caught:
            legacy.send(message)
    finally:
        legacy.close()
    assert int(caught.value.exit_code) == REFUSED
    # The kinds are the plugins' and those the module's other tests defined (the runtime
    # kind 'pair' if the test that adds it ran first on this worker).
    kinds = re.escape("this service ('orcha serve') runs petitions of kinds hello, ")
    assert re.match(kinds + r"(pair, )?shell; ", caught.value.message), caught.value.message
    assert caught.value.message.split("; ", 1)[1].startswith(
        "message 'm1' names no kind: it comes from a plugin's client that needs that "
        "plugin's own service (e.g. 'orcha hello-world serve'; 'orcha ls' says which "
        "plugins have one)"
    ), caught.value.message
