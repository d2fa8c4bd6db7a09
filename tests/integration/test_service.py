"""``orcha serve`` as a user sees it: banner, files, signals, keys, TCP, admission, idleness."""

from __future__ import annotations

import contextlib
import json
import pickle
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from orcha import __version__
from orcha.address import parse_address
from orcha.protocol import transport
from tests.conftest import Env, Service, wait_for
from tests.integration.clients import Client, gone, read_pid, without_progress

HELLO_KINDS = "hello, shell"


# -- helpers ---------------------------------------------------------------------------------
@contextlib.contextmanager
def session(env: Env, address: str | None = None, key: bytes | None = None) -> Iterator[Any]:
    """A raw authenticated session connection to the service of ``env``."""
    if key is None:
        key = (env.state / "key").read_bytes().strip()
    conn = transport.connect(parse_address(address or str(env.socket)), key)
    try:
        yield conn
    finally:
        conn.close()


def readable(conn: Any, timeout: float) -> bool:
    """Whether a frame (or EOF) arrives on ``conn`` within ``timeout`` seconds."""
    ready, _, _ = select.select([conn.fileno()], [], [], timeout)
    return bool(ready)


def answer_of(op: str, frame: bytes) -> dict[str, Any]:
    """A managers-protocol answer as ``{"re", "ok", ...fields}`` or ``{"re", "ok": False,
    "error", "message"}`` (a refusal is ``RuntimeError(error name, message)``)."""
    kind, value = pickle.loads(frame)
    if kind == "#RETURN":
        return {"re": op, "ok": True, **(value if isinstance(value, dict) else {"value": value})}
    args = getattr(value, "args", ())
    if kind == "#ERROR" and isinstance(value, RuntimeError) and len(args) == 2:
        return {"re": op, "ok": False, "error": args[0], "message": args[1]}
    name = type(value).__name__ if isinstance(value, BaseException) else kind
    return {"re": op, "ok": False, "error": name, "message": str(value)}


def request(conn: Any, obj: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
    """Carry out ``obj["op"]`` with the rest of ``obj`` (the managers protocol's ``call``)
    and return its answer (see :func:`answer_of`)."""
    op = obj["op"]
    fields = {k: v for k, v in obj.items() if k != "op"}
    conn.send_bytes(pickle.dumps((None, "call", (op, fields), {})))
    assert readable(conn, timeout), f"no reply to {obj!r} within {timeout}s"
    return answer_of(op, conn.recv_bytes())


def info(env: Env, **kw: Any) -> dict[str, Any]:
    with session(env, **kw) as conn:
        answer = request(conn, {"op": "info"})
    assert answer["ok"], answer
    return answer


def states(env: Env, **kw: Any) -> dict[str, str]:
    """Petition ID -> state, for every queued or running petition."""
    return {p["id"]: p["state"] for p in info(env, **kw)["petitions"]}


def wait_state(env: Env, petition_id: str, state: str, timeout: float = 20) -> None:
    ok = wait_for(lambda: states(env).get(petition_id) == state, timeout, 0.1)
    assert ok, f"petition {petition_id} not {state} within {timeout}s: {states(env)}"


def reap(*procs: subprocess.Popen[bytes]) -> None:
    """Kill (if still running) and wait for client processes this test started."""
    for p in procs:
        if p.poll() is None:
            p.kill()
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError, OSError):
            p.communicate(timeout=10)


def finish(proc: subprocess.Popen[bytes], timeout: float = 20) -> tuple[int, str, str]:
    """Wait for a client; (exit code, stdout, stderr)."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def one_error_line(stderr: str) -> str:
    """Assert ``stderr`` is exactly one 'orcha: ' line (no traceback) and return it.

    A queued client's 'orcha: queued (why)' notice (printed once it has waited half a
    second, issue 13) is not that line: whether it came before the end is a race."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if not line.startswith("orcha: queued (")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("orcha: "), stderr
    return lines[0]


def pid_writer(pidfile: Path, then: str = "exec sleep 300") -> list[str]:
    """argv for ``orcha run``: a shell that records its PID, then runs ``then``."""
    return ["sh", "-c", f'echo $$ > "{pidfile}"; {then}']


def assert_cancelled_by_service(line: str) -> None:
    """The client's message says the service (not some other client) cancelled it."""
    assert "cancelled" in line, line
    assert "service" in line and "another client" not in line, line


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- banner and files ------------------------------------------------------------------------
def test_banner_is_one_line_with_address_pid_limit_and_kinds(env: Env) -> None:
    service = env.serve("--max-running", "3")
    expected = (
        f"orcha {__version__}: listening on {env.socket} "
        f"(pid {service.service_pid}, guard {service.pid}, up to 3 running, GPUs: none, "
        f"kinds: {HELLO_KINDS})\n"
    )
    assert service.banner == expected
    assert __version__ == "0.1.0"


def test_runtime_dir_socket_and_key_file_are_private(env: Env, service: Service) -> None:
    assert stat.S_IMODE(env.runtime.stat().st_mode) == 0o700
    sock = env.socket.stat()
    assert stat.S_ISSOCK(sock.st_mode)
    assert stat.S_IMODE(sock.st_mode) == 0o600
    key = env.state / "key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().strip() != b""


# -- one service per address -----------------------------------------------------------------
def test_second_serve_on_same_address_is_refused_with_208(env: Env, service: Service) -> None:
    second = env.run("serve", timeout=30)
    assert second.returncode == 208, (second.returncode, second.stderr)
    line = one_error_line(second.stderr)
    assert "already" in line
    assert second.stdout == ""
    # The first service is unaffected.
    assert service.proc is not None and service.proc.poll() is None
    assert env.socket.exists()
    assert env.run("send", "after", timeout=30).returncode == 0


def test_stale_socket_of_killed_service_is_cleaned_up(env: Env) -> None:
    first = env.serve()
    assert first.kill_service() == 128 + signal.SIGKILL
    assert env.socket.exists()  # kill -9 leaves the socket behind
    nobody = env.run("send", "x", timeout=30)
    assert nobody.returncode == 200, nobody.stderr
    second = env.serve()
    assert "listening on" in second.banner
    result = env.run("send", "y", "--counter", "2", timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello world! 0\nHello world! 1\n"


# -- stopping --------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_cancels_running_petition_kills_its_tree_and_exits_zero(
    env: Env, service: Service, tmp_path: Path, sig: signal.Signals
) -> None:
    pidfile = tmp_path / "pid"
    client = env.popen("run", "x", "--", *pid_writer(pidfile))
    try:
        pid = read_pid(pidfile)
        wait_state(env, "x", "RUNNING")
        assert not gone(pid)
        service.signal(sig)
        assert service.proc is not None
        assert service.proc.wait(20) == 0
        code, out, err = finish(client)
        assert code == 207, (code, err)
        assert out == ""
        assert_cancelled_by_service(one_error_line(err))
        assert wait_for(lambda: gone(pid), 10), f"petition process {pid} survived the service"
        assert not env.socket.exists()
    finally:
        reap(client)


def test_sigterm_keeps_queued_petitions_for_the_next_start(env: Env, tmp_path: Path) -> None:
    service = env.serve("--max-running", "1", "--grace", "2")
    pidfile = tmp_path / "pid"
    blocker = env.popen("run", "blocker", "--", *pid_writer(pidfile))
    queued: list[subprocess.Popen[bytes]] = []
    try:
        read_pid(pidfile)
        wait_state(env, "blocker", "RUNNING")
        for name in ("q1", "q2"):
            queued.append(env.popen("send", name, "--counter", "1"))
            wait_state(env, name, "QUEUED")
        service.signal(signal.SIGTERM)
        assert service.proc is not None
        assert service.proc.wait(20) == 0
        for client, name in zip(queued, ("q1", "q2"), strict=True):
            code, out, err = finish(client)
            assert code == 206, (code, out, err)
            assert out == ""
            assert f"'orcha follow {name}'" in one_error_line(err)
        code, out, err = finish(blocker)  # its message: see the running-petition test
        assert (code, out) == (207, ""), (code, out, err)
        one_error_line(err)
        # Their records say QUEUED; a new service runs them, and their output is kept.
        env.serve("--max-running", "1")
        for name in ("q1", "q2"):
            followed = env.run("follow", name, timeout=30)
            assert (followed.returncode, followed.stdout) == (0, "Hello world! 0\n")
    finally:
        reap(blocker, *queued)


def stubborn(pidfile: Path) -> list[str]:
    """argv for ``orcha run``: a process that ignores SIGTERM (set before its PID is
    recorded), so a stop waits for its grace period."""
    return ["sh", "-c", f'trap "" TERM; echo $$ > "{pidfile}"; exec sleep 300']


def serve_with_stubborn(env: Env, tmp_path: Path, *args: str) -> tuple[Service, int]:
    """A service (``args``, a long grace) running petition 'stubborn' (see
    :func:`stubborn`): the service and the petition's PID."""
    service = env.serve(*args, "--grace", "120")
    pidfile = tmp_path / "pid"
    assert env.run("run", "stubborn", "--detach", "--", *stubborn(pidfile)).returncode == 0
    return service, read_pid(pidfile)


def test_a_stopping_service_still_answers_and_shutdown_force_kills_what_runs(
    env: Env, tmp_path: Path
) -> None:
    service, pid = serve_with_stubborn(env, tmp_path, "--max-running", "1")
    assert env.run("send", "q1", "--counter", "1", "--detach").returncode == 0
    first = env.run("shutdown", timeout=30)
    assert first.returncode == 0, first.stderr
    # Its petition ignores SIGTERM: the service waits for its grace, and meanwhile answers.
    assert wait_for(lambda: "stopping: cancelling 1" in service.stderr, 10), service.stderr
    shown = json.loads(env.run("status", "--json", timeout=30).stdout)["petitions"]
    assert {p["id"]: p["state"] for p in shown} == {"stubborn": "RUNNING", "q1": "QUEUED"}
    refused = env.run("run", "late", "--", "true", timeout=30)
    assert refused.returncode == 204
    assert "the service is stopping" in one_error_line(refused.stderr)
    again = env.run("shutdown", timeout=30)
    assert again.returncode == 0
    assert again.stderr == (
        f"orcha: the service at {env.socket} is stopping already, 1 running petition(s) "
        "left; 'orcha shutdown --force' kills them at once\n"
    )
    assert not gone(pid)  # a plain shutdown again did not force it
    forced = env.run("shutdown", "--force", "--wait", timeout=30)
    assert (forced.returncode, forced.stdout) == (0, ""), forced.stderr
    assert forced.stderr == (
        f"orcha: the service at {env.socket} is stopping by force: killing 1 running petition(s)\n"
    )
    assert service.proc is not None
    assert service.proc.wait(20) == 1  # stopped by force, as by a second signal
    assert wait_for(lambda: gone(pid), 10), f"petition process {pid} survived the service"
    # The queued one was kept: the next service runs it.
    env.serve("--max-running", "1")
    followed = env.run("follow", "q1", timeout=30)
    assert (followed.returncode, followed.stdout) == (0, "Hello world! 0\n")
    status = env.run("status", "stubborn", "--json", timeout=30)
    assert json.loads(status.stdout)["petitions"][0]["state"] == "CANCELLED", status.stdout


def test_a_stop_signal_after_orcha_shutdown_is_the_second_one(env: Env, tmp_path: Path) -> None:
    """The service's log says a second signal kills at once: after a client's
    'orcha shutdown', one signal is that second one."""
    service, pid = serve_with_stubborn(env, tmp_path)
    assert env.run("shutdown", timeout=30).returncode == 0
    assert wait_for(lambda: "stopping: cancelling 1" in service.stderr, 10), service.stderr
    assert not gone(pid)
    service.signal(signal.SIGTERM)
    assert service.proc is not None
    assert service.proc.wait(20) == 1
    assert "forced stop: killing 1 petition(s) now" in service.stderr
    assert wait_for(lambda: gone(pid), 10), f"petition process {pid} survived the service"


def test_orcha_shutdown_stops_it_as_sigterm_does_and_wait_returns_once_it_exited(
    env: Env, tmp_path: Path
) -> None:
    service = env.serve("--max-running", "1", "--grace", "2")
    pidfile = tmp_path / "pid"
    assert env.run("run", "blocker", "--detach", "--", *pid_writer(pidfile)).returncode == 0
    pid = read_pid(pidfile)
    assert env.run("send", "q1", "--counter", "1", "--detach").returncode == 0
    result = env.run("shutdown", "--wait", timeout=30)
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    assert result.stderr == (
        f"orcha: the service at {env.socket} is stopping: cancelling 1 running "
        "petition(s), keeping 1 queued for its next start\n"
    )
    assert service.proc is not None
    assert service.proc.wait(20) == 0  # --wait returned once the service had exited
    assert "a client asked the service to stop" in service.stderr
    assert wait_for(lambda: gone(pid), 10), f"petition process {pid} survived the service"
    again = env.run("shutdown", timeout=30)  # nobody there now
    assert again.returncode == 200 and "no orcha service" in one_error_line(again.stderr)
    # The queued one runs at the next start; the running one was cancelled.
    env.serve("--max-running", "1")
    followed = env.run("follow", "q1", timeout=30)
    assert (followed.returncode, followed.stdout) == (0, "Hello world! 0\n")
    status = env.run("status", "blocker", "--json", timeout=30)
    assert json.loads(status.stdout)["petitions"][0]["state"] == "CANCELLED", status.stdout


def test_second_signal_forces_stop_with_exit_one(env: Env, tmp_path: Path) -> None:
    grace = 30.0
    service = env.serve("--max-running", "2", "--grace", str(grace))
    pidfile = tmp_path / "pid"
    stubborn = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(300)\n"
    )
    client = env.popen("run", "stubborn", "--", sys.executable, "-c", stubborn)
    try:
        pid = read_pid(pidfile)
        wait_state(env, "stubborn", "RUNNING")
        first = time.monotonic()
        service.signal(signal.SIGTERM)
        # The first signal is being acted on: it stops accepting and TERMs the tree.
        assert wait_for(lambda: "stopping" in service.stderr, 10), service.stderr
        time.sleep(0.5)
        assert service.proc is not None
        assert service.proc.poll() is None  # still inside the 30 s grace period
        assert not gone(pid)  # ignores SIGTERM
        service.signal(signal.SIGTERM)
        # Forced: it ends before the grace period of the first signal is over (a stop that
        # waited it out would end 30 s after the first signal at the earliest). Bounded by
        # the grace period itself, not by a guess at how long a stop takes on a loaded
        # machine: only a forced stop meets it.
        assert service.proc.wait(max(0.5, first + grace - time.monotonic())) == 1
        took = time.monotonic() - first
        assert took < grace, f"stopped {took:.1f}s after the first signal: not forced"
        assert wait_for(lambda: gone(pid), 10), f"process {pid} survived a forced stop"
        code, _, err = finish(client)
        assert code in (206, 207), (code, err)
        one_error_line(err)
        assert not env.socket.exists()
    finally:
        reap(client)


def test_sigkill_of_service_makes_attached_client_exit_206(
    env: Env, service: Service, start: Callable[..., Client]
) -> None:
    client = start("send", "long", "--counter", "10000", "--sleep-time", "0.05")
    # Its first line has reached the client (RUNNING alone does not say so under load).
    assert client.out.wait_for(lambda d: d.startswith(b"Hello world! 0\n"))
    service.kill_service()
    code, out, err = client.finish_text()
    assert code == 206, (code, err)
    assert "lost" in one_error_line(without_progress(err))
    assert out.startswith("Hello world! 0\n")


# -- clients and keys ------------------------------------------------------------------------
def test_no_service_exits_200_and_says_how_to_start_one(env: Env) -> None:
    result = env.run("send", "x", timeout=30)
    assert result.returncode == 200
    assert "orcha serve" in one_error_line(result.stderr)
    assert result.stdout == ""


def test_wrong_key_exits_201(env: Env, service: Service) -> None:
    result = env.run("send", "x", "--key", "wrong", timeout=30)
    assert result.returncode == 201, result.stderr
    one_error_line(result.stderr)
    assert result.stdout == ""


def test_orcha_key_environment_on_both_sides(env: Env) -> None:
    env.serve(env={"ORCHA_KEY": "shared-secret"})
    ok = env.run("send", "x", "--counter", "2", env={"ORCHA_KEY": "shared-secret"}, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "Hello world! 0\nHello world! 1\n"
    wrong = env.run("send", "y", env={"ORCHA_KEY": "other-secret"}, timeout=30)
    assert wrong.returncode == 201, wrong.stderr
    one_error_line(wrong.stderr)


def test_tcp_address(env: Env) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    service = env.serve("--address", f":{port}")  # loopback by default
    assert f"listening on {address} (pid {service.service_pid}, guard {service.pid}," in (
        service.banner
    )
    assert not env.socket.exists()
    second = env.run("serve", "--address", address, timeout=30)
    assert second.returncode == 208, second.stderr
    assert address in one_error_line(second.stderr)
    result = env.run("--address", address, "send", "t", "--counter", "2", timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello world! 0\nHello world! 1\n"
    ran = env.run("--address", address, "run", "r", "--", "sh", "-c", "exit 3", timeout=30)
    assert ran.returncode == 3, ran.stderr
    assert info(env, address=address)["pid"] == service.service_pid


# -- admission -------------------------------------------------------------------------------
def test_max_running_one_honours_priority_and_never_overlaps(env: Env, tmp_path: Path) -> None:
    env.serve("--max-running", "1", "--grace", "2")
    log = tmp_path / "log"
    release = tmp_path / "release"

    def marker(name: str) -> list[str]:
        script = f'echo "start {name}" >> "{log}"; sleep 0.2; echo "end {name}" >> "{log}"'
        return ["sh", "-c", script]

    blocker_script = (
        f'echo "start blocker" >> "{log}"; '
        f'while [ ! -e "{release}" ]; do sleep 0.05; done; echo "end blocker" >> "{log}"'
    )
    clients = [env.popen("run", "blocker", "--", "sh", "-c", blocker_script)]
    try:
        wait_state(env, "blocker", "RUNNING")
        for name, priority in (("p5", 5), ("p1a", 1), ("p3", 3), ("p1b", 1)):
            clients.append(env.popen("run", name, "--priority", str(priority), "--", *marker(name)))
            wait_state(env, name, "QUEUED")
        snapshot = info(env)
        assert (snapshot["running"], snapshot["queued"]) == (1, 4)
        release.touch()
        for client in clients:
            code, _, err = finish(client, timeout=30)
            assert code == 0, err
        order = ["blocker", "p1a", "p1b", "p3", "p5"]
        expected = [f"{edge} {name}" for name in order for edge in ("start", "end")]
        assert log.read_text().splitlines() == expected
    finally:
        reap(*clients)


def test_idle_service_uses_no_cpu(env: Env, service: Service) -> None:
    assert env.run("send", "warmup", timeout=30).returncode == 0
    procs = [psutil.Process(service.service_pid), psutil.Process(service.pid)]  # and its guard
    time.sleep(1.0)  # let start-up and the last session settle
    before = [p.cpu_times() for p in procs]
    time.sleep(2.0)
    after = [p.cpu_times() for p in procs]
    used = sum(a.user - b.user + a.system - b.system for a, b in zip(after, before, strict=True))
    assert used < 0.05, f"idle service and guard used {used:.3f}s of CPU in 2s"


# -- ls --------------------------------------------------------------------------------------
def test_ls_lists_embedded_plugins(env: Env) -> None:
    result = env.run("ls", timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert re.search(r"hello\* - ", result.stdout), result.stdout
    assert re.search(r"shell\* - ", result.stdout), result.stdout
    assert "commands: send" in result.stdout
    assert "commands: run" in result.stdout


def test_ls_json(env: Env) -> None:
    result = env.run("ls", "--json", timeout=30)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["orcha"] == __version__
    plugins = {p["name"]: p for p in doc["plugins"]}
    for name, command in (("hello", "send"), ("shell", "run")):
        plugin = plugins[name]
        assert plugin["embedded"] is True
        assert plugin["commands"] == [command]
        assert [k["name"] for k in plugin["kinds"]] == [name]
        assert plugin["kinds"][0]["schema"]["type"] == "object"
        assert plugin["error"] is None
