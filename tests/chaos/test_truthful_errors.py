"""Errors say the truth (issue 12, point 10), against a real service.

A priority the records cannot hold is a usage error (exit 2, one line, nothing sent) from
the CLI, and a refusal, not a crash, from a client that bypasses the CLI; "listening on"
comes only once slow plugin start hooks are done, and clients knocking while a service
starts are told either that none answers yet or are served, never that they have no key
(the service writes its key file before it listens, and a client that found none looks
again once it finds a service);
a client refused by a unix socket's permissions is told permission was denied and whose
service it is (exit 201), not that no service runs.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from orcha.defaults import MAX_PRIORITY
from orcha.errors import OrchaError
from tests.conftest import Env, Service, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("priority", [10**30, -(10**30), 2**63, MAX_PRIORITY + 1])
@pytest.mark.parametrize("command", ["run", "send"])
def test_a_huge_priority_is_one_usage_line_and_reaches_nothing(
    env: Env, service: Service, command: str, priority: int
) -> None:
    tail = ["--", "true"] if command == "run" else []
    result = env.run(command, "big", "--priority", str(priority), *tail, timeout=30)
    assert (result.returncode, result.stdout) == (2, ""), result
    assert result.stderr == (
        f"orcha {command}: invalid value for '--priority': {priority} is not between "
        f"{-MAX_PRIORITY} and {MAX_PRIORITY} (see 'orcha {command} --help')\n"
    )
    status = env.run("status", "--json", "big", timeout=30)
    assert status.returncode == 209, status  # the service never heard of it


def test_a_huge_priority_from_a_client_bypassing_the_cli_is_refused_not_a_crash(
    env: Env, service: Service, client: Callable[[], Any]
) -> None:
    with client() as c:
        for priority in (10**30, -(2**63)):
            with pytest.raises(OrchaError) as caught:
                c.submit("big", ["true"], priority=priority, detach=True)
            assert caught.value.exit_code != 206, caught.value  # not "lost the service"
            assert "priority" in str(caught.value), caught.value
        assert c.submit("small", ["true"], priority=MAX_PRIORITY).wait() == 0
    assert "Traceback" not in service.stderr, service.stderr


SLOW_START_PLUGIN = """
import os
import time

from orcha.plugins import BasePlugin


class SlowStart(BasePlugin):
    name = "slowstart"

    def start(self, service):
        time.sleep(2.0)  # a plugin that connects to something slow at start
        with open(os.environ["ORCHA_TEST_STARTED"], "w") as f:
            f.write("started")


plugin = SlowStart
"""


def test_clients_knocking_during_a_slow_start_hook_are_never_told_a_lie(
    env: Env, tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "orcha_slowstart.py").write_text(SLOW_START_PLUGIN)
    started = tmp_path / "started"
    extra = {"ORCHA_PLUGIN_PATH": str(plugins), "ORCHA_TEST_STARTED": str(started)}
    env.vars.update(extra)
    knocks: list[tuple[int, bool, str]] = []  # (exit code, hook done at its end, stderr)
    stop = threading.Event()

    def knock(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            done = env.run("run", f"k{n}-{i}", "--", "true", timeout=60)
            knocks.append((done.returncode, started.exists(), done.stderr))
            assert "Traceback" not in done.stderr, done.stderr
            if done.returncode == 0:
                return

    knockers = [threading.Thread(target=knock, args=(n,), daemon=True) for n in range(3)]
    for thread in knockers:
        thread.start()
    try:
        service = env.serve()
        # The banner has been read: the start hook had finished before it was printed.
        assert started.read_text() == "started"
        assert env.run("run", "first", "--", "true", timeout=30).returncode == 0
        for thread in knockers:
            thread.join(60)
    finally:
        stop.set()
    # No service yet, or served; never "no key" from a service that was writing it.
    assert {code for code, _, _ in knocks} <= {0, 200}, knocks
    assert all(done for code, done, _ in knocks if code == 0), knocks
    assert service.proc is not None and service.proc.poll() is None


def test_a_socket_this_user_may_not_open_says_permission_denied_and_whose(
    env: Env, service: Service
) -> None:
    """The socket is given to another user (as root) or made unusable (otherwise); the
    client then has no right to open it: it must hear so, not "no service"."""
    socket = env.socket
    argv = [sys.executable, "-m", "orcha", "status", "--address", str(socket), "--key", "k"]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("as root, refusing a client needs setpriv(1) to drop its DAC rights")
        os.chown(socket, 65534, 65534)
        argv = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *argv]
    socket.chmod(0)
    owner = pwd.getpwuid(socket.stat().st_uid).pw_name
    done = subprocess.run(argv, env=env.vars, capture_output=True, text=True, timeout=30)
    assert done.returncode == 201, (done.returncode, done.stderr)
    (line,) = done.stderr.splitlines()
    assert line.startswith(
        f"orcha: permission denied at {socket}: the service there belongs to user {owner}"
    ), line
    assert "no orcha service" not in line
    socket.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(socket, 0, 0)
    assert env.run("status", timeout=30).returncode == 0  # it was serving all along
    assert psutil.pid_exists(service.pid)
    assert wait_for(lambda: service.proc is not None and service.proc.poll() is None, 1)


@pytest.mark.parametrize(
    "args",
    [
        ("run", "gone", "--", "true"),
        ("run", "gone", "--detach", "--", "true"),
        ("run", "gone", "--detach", "--array", "1-2", "--", "true"),
        ("send", "gone"),
    ],
)
def test_a_removed_working_directory_is_one_line_and_reaches_nothing(
    env: Env, service: Service, tmp_path: Path, args: tuple[str, ...]
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    # The client starts in a directory removed under it (a shell left in a deleted build
    # tree): os.getcwd() fails there.
    script = 'cd "$1" && rmdir "$1" && shift && exec "$@"'
    result = subprocess.run(
        ["sh", "-c", script, "sh", str(gone), sys.executable, "-m", "orcha", *args],
        env=env.vars, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (2, ""), result
    assert result.stderr == (
        "orcha: the current directory no longer exists; cd to one that does and try again\n"
    )
    status = env.run("status", "--json", "gone", timeout=30)
    assert status.returncode == 209, status  # the service never heard of it
    assert env.run("run", "gone", "--cwd", str(tmp_path), "--", "pwd").stdout == f"{tmp_path}\n"
