"""The original Orcha tutorial's hello-world plugin, typed in as written, installed with
pip and run against orcha: listed, served, sent to, and cancelled with Ctrl+C."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Env, Service

FIXTURE = Path(__file__).parent.parent / "fixtures" / "tutorial_plugin"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pip-install the tutorial package (offline, from a copy) into its own target dir."""
    src = tmp_path_factory.mktemp("src") / "tutorial_plugin"
    shutil.copytree(FIXTURE, src)
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    yield target


@pytest.fixture
def tenv(env: Env, plugin_path: Path) -> Env:
    env.vars["PYTHONPATH"] = str(plugin_path)
    return env


def _serve_tutorial(env: Env, command: str = "hello-world") -> Service:
    """The plugin's own service: ``orcha hello-world serve`` (or its alias)."""
    return env.serve(command=(command, "serve"))


def test_ls_lists_the_tutorial_plugin(tenv: Env) -> None:
    result = tenv.run("ls")
    assert result.returncode == 0, result.stderr
    assert "orcha-hello-world - 0.1.0" in result.stdout
    assert "hello-world (hw)" in result.stdout
    assert "hello* - " in result.stdout and "shell* - " in result.stdout
    # Which service serves what: orcha serve the kinds, the tutorial its own.
    assert "kinds: hello (served by 'orcha serve')" in result.stdout
    assert "service: its own, not 'orcha serve' (see 'orcha hello-world --help')" in result.stdout


def test_without_its_service_the_client_names_the_plugins_own(tenv: Env) -> None:
    """No service at all: the tutorial's client says to start its plugin's service, not
    'orcha serve' (which would refuse its messages, 204)."""
    for args in (("hw", "send", "m1"), ("hello-world", "send", "m2", "--counter", "3")):
        result = tenv.run(*args)
        assert (result.returncode, result.stdout) == (200, ""), result.stderr
        assert result.stderr == (
            f"orcha: no orcha service is running at {tenv.socket} (no socket there); start "
            "the plugin's own service with 'orcha hello-world serve' ('orcha serve' does not "
            "run its messages)\n"
        )
    assert not tenv.socket.exists()


def test_hello_world_serve_and_send(tenv: Env) -> None:
    service = _serve_tutorial(tenv)
    # The tutorial writes "Hello world! {i}\n\r"; compare bytes, without the \r.
    result = tenv.run_bytes("hello-world", "send", "t1", "--counter", "3", "--sleep-time", "0.2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.replace(b"\r", b"") == b"Hello world! 0\nHello world! 1\nHello world! 2\n"
    alias = tenv.run_bytes("hw", "send", "t2", "--counter", "2")
    assert alias.returncode == 0, alias.stderr
    assert alias.stdout.replace(b"\r", b"") == b"Hello world! 0\nHello world! 1\n"
    # Its output went to its client only: 'orcha logs' says so rather than print nothing.
    logs = tenv.run("logs", "t1")
    assert (logs.returncode, logs.stdout) == (0, "")
    assert logs.stderr == (
        "orcha: petition t1 keeps no log: a petition of the original API (a plugin's own "
        "service) sends its output to its client only\n"
    )
    assert service.stop() == 0


def test_hw_alias_serves(tenv: Env) -> None:
    _serve_tutorial(tenv, "hw")
    assert tenv.run_bytes("hw", "send", "a").stdout.replace(b"\r", b"") == b"Hello world! 0\n"
    # orcha's own commands, sent to the plugin's own service: it says which it is and
    # what to run instead (exit code 203, as before).
    for args in (("send", "x"), ("run", "y", "--", "true")):
        result = tenv.run(*args)
        assert result.returncode == 203, result.stderr
        assert result.stderr.startswith(
            "orcha: this service is a plugin's own ('orcha hw serve', manager "
            "orcha_hello_world.managers.ServiceManager): it takes only that plugin's "
            "messages and serves no petition kind"
        ), result.stderr
        assert "('orcha hw --help')" in result.stderr
        assert "'orcha serve --address PATH'" in result.stderr


def test_ctrl_c_finishes_the_tutorial_petition(tenv: Env) -> None:
    service = _serve_tutorial(tenv)
    client = tenv.popen("hello-world", "send", "long", "--counter", "100", "--sleep-time", "0.1")
    try:
        assert client.stdout is not None
        first = client.stdout.readline()
        assert first.startswith(b"Hello world! 0")
        client.send_signal(signal.SIGINT)
        out, err = client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert b"Ctrl + C caught! Finishing..." in out
    assert client.returncode == 130
    assert b"Traceback" not in err
    # Its action called finish() without a code once stopped: no code, not a success's 0.
    status = tenv.run("status", "--json", "long")
    (record,) = json.loads(status.stdout)["petitions"]
    assert (record["state"], record["code"]) == ("CANCELLED", None), record
    # The service is still serving, and its intake is intact.
    again = tenv.run("hello-world", "send", "after", "--counter", "1")
    assert again.returncode == 0, again.stderr
    assert service.stop() == 0


def test_a_killed_tutorial_client_leaks_nothing(tenv: Env) -> None:
    """SIGKILL of a client of the original API: its petition's process is stopped and
    the queue it created in the service is dropped."""
    import psutil

    from tests.conftest import wait_for

    service = _serve_tutorial(tenv)
    client = tenv.popen(
        "hello-world", "send", "doomed", "--counter", "1000", "--sleep-time", "0.05"
    )
    try:
        assert client.stdout is not None
        assert client.stdout.readline().startswith(b"Hello world! 0")
        # The service's children but its process spawner (orcha/service/zygote.py).
        workers = [
            child for child in psutil.Process(service.service_pid).children()
            if not any(arg.endswith("zygote.py") for arg in child.cmdline())
        ]  # fmt: skip
        assert workers, "the tutorial's action runs its counter in a child process"
        client.kill()
        client.wait(10)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert wait_for(lambda: not any(w.is_running() and w.status() != "zombie" for w in workers), 10)
    assert wait_for(lambda: tenv.info()["petitions"] == [], 10)
    assert wait_for(lambda: tenv.info()["served_objects"] == 0, 10), tenv.info()
    assert service.stop() == 0
