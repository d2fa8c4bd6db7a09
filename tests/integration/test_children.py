"""Child petitions against a real service: the ``orchatest_fanout`` plugin's kind
(``tests/fixtures/platform_plugins/fanout``, found through ORCHA_PLUGIN_PATH) fans out to
``shell`` children, streams their output into its own and exits with the largest code.

Two parents filling both slots of ``--max-running 2`` still finish (their children run
in the parents' loans); Ctrl+C on a parent's client leaves no child process; ``orcha
status`` shows the tree, ``status --json`` the links.
"""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Env, Service, wait_for
from tests.integration.clients import WAIT, Client, describe, new_id, orcha, petition_processes

pytestmark = pytest.mark.timeout(120)

FANOUT_PLUGINS = Path(__file__).resolve().parents[1] / "fixtures" / "platform_plugins" / "fanout"
GRACE = 2.0
CANCELLED, INTERRUPTED = 207, 130


@pytest.fixture
def fenv(env: Env) -> Env:
    env.vars["ORCHA_PLUGIN_PATH"] = str(FANOUT_PLUGINS)
    return env


@pytest.fixture
def service(fenv: Env) -> Service:
    return fenv.serve("--max-running", "2", "--grace", str(GRACE))


@pytest.fixture
def children() -> Iterator[list[str]]:
    """IDs of child petitions whose processes are killed after the test, whatever happened
    (the ``start`` fixture cleans up only its clients' own petitions)."""
    ids: list[str] = []
    yield ids
    for petition_id in ids:
        for proc in petition_processes(petition_id):
            with contextlib.suppress(psutil.Error):
                proc.kill()


def records(env: Env, *ids: str) -> dict[str, dict[str, Any]]:
    """``status --json``'s records by ID (IDs no petition has yet are left out)."""
    result = env.run("status", "--json", *ids, timeout=WAIT)
    assert result.returncode in (0, 209), result.stderr
    return {row["id"]: row for row in json.loads(result.stdout)["petitions"]}


def running(env: Env, *ids: str) -> bool:
    rows = records(env, *ids)
    return all(rows.get(i, {}).get("state") == "RUNNING" for i in ids)


def test_two_parents_filling_every_slot_fan_out_and_finish(
    fenv: Env, service: Service, start: Callable[..., Client], children: list[str]
) -> None:
    gate = "while [ ! -e go ]; do sleep 0.02; done; "
    parents = [new_id("fan-a"), new_id("fan-b")]
    commands = {
        p: [["sh", "-c", gate + f"echo {p}-out; exit 0"],
            ["sh", "-c", f"echo {p}-err >&2; exit 3"],
            ["sh", "-c", "exit 1"]]
        for p in parents
    }  # fmt: skip
    children.extend(f"{p}.{n}" for p in parents for n in (1, 2, 3))
    # Paused while both are queued, so that both parents take both slots at once.
    orcha(fenv, "pause", "--all")
    clients = [start("orchatest-fanout", p, json.dumps(commands[p]), cwd=fenv.root)
               for p in parents]  # fmt: skip
    assert wait_for(lambda: set(records(fenv, *parents)) == set(parents), WAIT)
    orcha(fenv, "resume", "--all")
    # Both parents hold both slots; each one's first child runs in its parent's loan.
    firsts = [f"{p}.1" for p in parents]
    assert wait_for(lambda: running(fenv, *parents, *firsts), WAIT), records(fenv)
    (fenv.root / "go").touch()
    for parent, client in zip(parents, clients, strict=True):
        rc, out, err = client.finish_text(timeout=WAIT)
        assert rc == 3, err
        assert out == f"children: {parent}.1 {parent}.2 {parent}.3\n{parent}-out\n"
        assert f"{parent}-err\n" in err
        assert 'orcha: outcome: {"codes": [0, 3, 1]}' in err

    rows = records(fenv, *parents, *children)
    for parent in parents:
        assert rows[parent]["parent"] is None
        assert rows[parent]["children"] == [f"{parent}.1", f"{parent}.2", f"{parent}.3"]
        for n, code in ((1, 0), (2, 3), (3, 1)):
            child = rows[f"{parent}.{n}"]
            assert (child["parent"], child["kind"], child["code"]) == (parent, "shell", code)
            assert "children" not in child
    # The text table: each parent, then its children indented under it.
    lines = orcha(fenv, "status", *parents, *children)[0].splitlines()
    ids = [line.split()[0] if not line.startswith("└") else line[:2] + line.split()[1]
           for line in lines[1:]]  # fmt: skip
    oldest_first = sorted(parents, key=lambda p: rows[p]["seq"])  # both were sent at once
    assert ids == [x for p in oldest_first for x in (p, f"└ {p}.1", f"└ {p}.2", f"└ {p}.3")]


def test_ctrl_c_on_a_parent_leaves_no_child_process(
    fenv: Env, service: Service, start: Callable[..., Client], children: list[str]
) -> None:
    parent = new_id("fan-c")
    kids = [f"{parent}.1", f"{parent}.2"]
    children.extend(kids)
    client = start("orchatest-fanout", parent, json.dumps([["sleep", "300"]] * 2))
    # parent and .1 in the two slots, .2 in the parent's loan (it waits on .1)
    assert wait_for(lambda: all(petition_processes(k) for k in kids), WAIT), records(fenv)
    assert client.out.wait_for(lambda d: d == f"children: {' '.join(kids)}\n".encode())
    client.proc.send_signal(signal.SIGINT)
    rc, _, err = client.finish_text(timeout=GRACE + 20)
    assert rc == INTERRUPTED, err
    left = [p for k in kids for p in petition_processes(k)]
    assert not left, f"left behind: {describe(left)}"  # gone before the parent's end came
    rows = records(fenv, parent, *kids)
    assert rows[parent]["state"] == "CANCELLED"
    for kid in kids:
        assert (rows[kid]["state"], rows[kid]["code"], rows[kid]["message"]) == (
            "CANCELLED", 128 + signal.SIGTERM, f"its parent {parent} was cancelled"
        )  # fmt: skip
