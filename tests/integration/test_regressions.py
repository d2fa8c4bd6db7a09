"""Regression tests: one per flaw of the original Orcha, named after the flaw."""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from orcha import settings as orcha_settings
from orcha.address import parse_address
from orcha.client.session import Session
from orcha.errors import AuthError, PetitionError
from orcha.protocol import transport
from orcha.protocol.messages import SubmitRequest
from tests.conftest import Env, Service, wait_for
from tests.integration.test_service import (
    answer_of,
    finish,
    gone,
    info,
    one_error_line,
    pid_writer,
    read_pid,
    readable,
    reap,
    request,
    session,
    wait_state,
)


def key_of(env: Env) -> bytes:
    return (env.state / "key").read_bytes().strip()


def blocker_argv(release: Path) -> list[str]:
    """A petition that runs until ``release`` exists."""
    return ["sh", "-c", f'while [ ! -e "{release}" ]; do sleep 0.05; done']


def appender(log: Path, name: str) -> list[str]:
    return ["sh", "-c", f'echo {name} >> "{log}"']


def log_lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def reply_to(conn: Any, frame: bytes, timeout: float = 10) -> dict[str, Any]:
    """Send a raw frame on a connection and return the answer (see ``answer_of``)."""
    conn.send_bytes(frame)
    assert readable(conn, timeout), f"no reply to {frame[:40]!r} within {timeout}s"
    return answer_of("?", conn.recv_bytes())


def still_open(conn: socket.socket) -> bool:
    """Whether the service has not hung up ``conn``: what it sent (its challenge) is read
    and dropped, and no end of file follows."""
    try:
        while conn.recv(4096, socket.MSG_DONTWAIT):
            pass
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def assert_serves_while_one_is_pending(env: Env) -> None:
    """An info round-trip on a fresh connection is answered while a connection that has
    not finished its handshake is still open: intake does not wait for it to end (the
    service hangs it up after HANDSHAKE_TIMEOUT, 5 s; a stalled intake would answer only
    then, after the hang-up). Timed by cause, not by a clock a loaded machine slows."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as pending:
        pending.connect(str(env.socket))
        assert info(env)["ok"]
        assert still_open(pending), "answered only once a pending connection was hung up"


# -- scheduling ------------------------------------------------------------------------------
def test_freed_slot_starts_next_petition_without_scheduler_sleep(env: Env, tmp_path: Path) -> None:
    env.serve("--max-running", "1", "--grace", "2")
    release, log = tmp_path / "release", tmp_path / "log"
    clients = [env.popen("run", "blocker", "--", *blocker_argv(release))]
    try:
        wait_state(env, "blocker", "RUNNING")
        names = [f"c{i}" for i in range(5)]
        for name in names:
            clients.append(env.popen("run", name, "--", *appender(log, name)))
            wait_state(env, name, "QUEUED")
        release.touch()
        assert wait_for(lambda: len(log_lines(log)) == 5, 30, 0.01), log_lines(log)
        assert log_lines(log) == names
        for client in clients:
            code, _, err = finish(client)
            assert code == 0, err
        # By the service's own times (a loaded machine slows the clients, not these): each
        # freed slot went to the next petition at once, not after a pause of the scheduler
        # (the median, so one descheduled moment of a loaded machine is not taken for one).
        order = ["blocker", *names]
        listed = env.run("status", "--json", *order, timeout=30)
        assert listed.returncode == 0, listed.stderr
        rows = {r["id"]: r for r in json.loads(listed.stdout)["petitions"]}
        gaps = sorted(rows[b]["started"] - rows[a]["ended"] for a, b in pairwise(order))
        assert gaps[len(gaps) // 2] < 0.25, gaps
    finally:
        reap(*clients)


def test_equal_priorities_run_in_arrival_order(env: Env, tmp_path: Path) -> None:
    env.serve("--max-running", "1", "--grace", "2")
    release, log = tmp_path / "release", tmp_path / "log"
    clients = [env.popen("run", "blocker", "--", *blocker_argv(release))]
    try:
        wait_state(env, "blocker", "RUNNING")
        names = [f"f{i}" for i in range(10)]
        for name in names:
            clients.append(env.popen("run", name, "--priority", "7", "--", *appender(log, name)))
            wait_state(env, name, "QUEUED")
        release.touch()
        for client in clients:
            code, _, err = finish(client, timeout=30)
            assert code == 0, err
        assert log_lines(log) == names
    finally:
        reap(*clients)


# -- hostile or broken connections -----------------------------------------------------------
def test_garbage_bytes_and_silent_connection_do_not_stall_intake(
    env: Env, service: Service
) -> None:
    for garbage in (
        os.urandom(4096),
        b"\xff\xff\xff\xff" + os.urandom(64),  # absurd frame length
        b"\x00\x00\x00\x05hello",  # a well-formed frame that is no handshake answer
        b"ORCHA1",
    ):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            raw.connect(str(env.socket))
            raw.sendall(garbage)
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Authenticated, then silent: it never says whether it is a session.
    mute = transport.connect(parse_address(str(env.socket)), key_of(env))
    try:
        silent.connect(str(env.socket))
        assert_serves_while_one_is_pending(env)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as fresh:
            fresh.connect(str(env.socket))  # pending while the send is taken
            client = env.popen("send", "while-silent", "--counter", "2")
            try:
                assert client.stdout is not None
                first = client.stdout.readline()  # it was taken and has started
                assert still_open(fresh), "the send was taken only once a silent one was hung up"
                rest = client.stdout.read().decode()  # what is buffered after the first line
                code, err = client.wait(30), client.stderr.read().decode()  # type: ignore[union-attr]
            finally:
                reap(client)
            assert code == 0, err
            assert first.decode() + rest == "Hello world! 0\nHello world! 1\n"
        assert service.proc is not None and service.proc.poll() is None
    finally:
        silent.close()
        mute.close()
    assert_serves_while_one_is_pending(env)
    assert "Traceback" not in service.stderr


def test_wrong_key_client_does_not_stop_intake(env: Env, service: Service) -> None:
    for _ in range(3):
        with pytest.raises(AuthError):
            transport.connect(parse_address(str(env.socket)), b"not-the-key")
    bad = env.run("send", "bad", "--key", "wrong", timeout=30)
    assert bad.returncode == 201, bad.stderr
    good = env.run("send", "good", timeout=30)
    assert good.returncode == 0, good.stderr
    assert good.stdout == "Hello world! 0\n"
    assert_serves_while_one_is_pending(env)


VALID_SUBMIT: dict[str, Any] = {
    "kind": "hello",
    "id": "ok",
    "params": {"counter": 1, "sleep_time": 0},
    "priority": None,
    "cwd": "/",
    "env": {},
}


def call(op: Any, request: Any) -> bytes:
    """The frame of the managers protocol's ``call`` of ``op``."""
    return pickle.dumps((None, "call", (op, request), {}))


MALFORMED_FRAMES = {
    "not pickle": b"this is not a pickle",
    "not utf-8": b"\xff\xfe\xfd",
    "empty frame": b"",
    "truncated pickle": pickle.dumps((None, "call", ("info", {}), {}))[:-3],
    "pickled list": pickle.dumps([1, 2, 3]),
    "pickled string": pickle.dumps("info"),
    "deeply nested list": b"\x80\x04" + b"]" * 100_000 + b"a" * 99_999 + b".",
    "three-tuple": pickle.dumps((None, "call", ("info", {}))),
    "args not a tuple": pickle.dumps((None, "call", "info", {})),
    "server method unknown": pickle.dumps((None, "shutdown", (), {})),
    "server method not a string": pickle.dumps((None, ["call"], (), {})),
    "no such object": pickle.dumps(("deadbeef", "get_batch", (), {})),
    "unknown op": call("frobnicate", {}),
    "op not a string": call(["info"], {}),
    "create unknown typeid": pickle.dumps((None, "create", ("frobnicate",), {})),
    "cancel without id": call("cancel", {}),
    "submit without kind": call("submit", {**VALID_SUBMIT, "kind": None}),
    "submit not a dict": call("submit", [1, 2]),
    "submit id with space": call("submit", {**VALID_SUBMIT, "id": "a b"}),
    "submit empty id": call("submit", {**VALID_SUBMIT, "id": ""}),
    "submit id too long": call("submit", {**VALID_SUBMIT, "id": "x" * 500}),
    "submit params list": call("submit", {**VALID_SUBMIT, "params": [1]}),
    "submit priority text": call("submit", {**VALID_SUBMIT, "priority": "high"}),
    "submit priority bool": call("submit", {**VALID_SUBMIT, "priority": True}),
    "submit relative cwd": call("submit", {**VALID_SUBMIT, "cwd": "tmp"}),
    "submit env not strings": call("submit", {**VALID_SUBMIT, "env": {"A": 1}}),
    "submit bad counter": call("submit", {**VALID_SUBMIT, "params": {"counter": "x"}}),
    "submit negative sleep": call(
        "submit", {**VALID_SUBMIT, "params": {"counter": 1, "sleep_time": -1}}
    ),
    "submit shell empty argv": call(
        "submit", {**VALID_SUBMIT, "kind": "shell", "params": {"argv": []}}
    ),
    "send an int": call("send", 42),
    "send a dict": call("send", {"id": "x", "extras": {}}),
    "send nothing": call("send", None),
}


@pytest.mark.parametrize("frame", MALFORMED_FRAMES.values(), ids=MALFORMED_FRAMES.keys())
def test_malformed_request_gets_error_reply_and_service_keeps_working(
    env: Env, service: Service, frame: bytes
) -> None:
    with session(env) as conn:
        answer = reply_to(conn, frame)
        assert answer["ok"] is False, answer
        assert isinstance(answer.get("error"), str) and answer["error"], answer
        assert isinstance(answer.get("message"), str) and answer["message"], answer
        # The same session still answers...
        again = request(conn, {"op": "info"})
        assert again["ok"] is True and again["running"] == 0 and again["queued"] == 0
    # ...and so does the service, for everyone.
    result = env.run("send", "after", timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello world! 0\n"
    assert "Traceback" not in service.stderr


def test_unknown_kind_is_refused_with_203(env: Env, service: Service) -> None:
    with session(env) as conn:
        answer = request(conn, {"op": "submit", **VALID_SUBMIT, "kind": "no-such-kind"})
    assert answer["ok"] is False
    assert answer["error"] == "unknown"
    assert "no-such-kind" in answer["message"]
    settings = orcha_settings.resolve(address=str(env.socket), key=key_of(env).decode())
    lib_session = Session.open(settings)
    try:
        request_ = SubmitRequest("no-such-kind", "k", {}, None, "/", {})
        with pytest.raises(PetitionError) as caught:
            lib_session.call("submit", request_.to_wire())
        assert caught.value.exit_code == 203
        assert lib_session.call("info")["queued"] == 0
    finally:
        lib_session.close()


# -- cancellation and shutdown ---------------------------------------------------------------
def test_ctrl_c_of_a_client_does_not_stop_intake(
    env: Env, service: Service, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    client = env.popen("run", "c", "--", *pid_writer(pidfile))
    try:
        pid = read_pid(pidfile)
        wait_state(env, "c", "RUNNING")
        client.send_signal(signal.SIGINT)
        code, out, err = finish(client)
        assert code == 130, (code, err)
        assert out == ""
        assert "Traceback" not in err
        assert wait_for(lambda: gone(pid), 10), f"cancelled petition's process {pid} survived"
        assert wait_for(lambda: info(env)["running"] == 0, 10)
        again = env.run("run", "c", "--", "sh", "-c", "echo again", timeout=30)
        assert again.returncode == 0, again.stderr
        assert again.stdout == "again\n"
        hello = env.run("send", "after", "--counter", "2", timeout=30)
        assert hello.returncode == 0, hello.stderr
        assert hello.stdout == "Hello world! 0\nHello world! 1\n"
        assert service.proc is not None and service.proc.poll() is None
    finally:
        reap(client)


def test_duplicate_id_race_admits_exactly_one(env: Env, service: Service, tmp_path: Path) -> None:
    # The winner runs until released, so no latecomer can find the ID free again.
    release = tmp_path / "release"
    clients = [env.popen("run", "same", "--", *blocker_argv(release)) for _ in range(10)]
    try:
        assert wait_for(lambda: sum(c.poll() is not None for c in clients) == 9, 30), [
            c.poll() for c in clients
        ]
        release.touch()
        results = [finish(c, timeout=30) for c in clients]
        codes = sorted(code for code, _, _ in results)
        assert codes == [0] + [202] * 9, results
        for code, _, err in results:
            if code == 202:
                assert "same" in one_error_line(err)
    finally:
        release.touch()
        reap(*clients)


def test_queued_petitions_are_kept_on_shutdown_and_their_clients_not_told_success(
    env: Env, tmp_path: Path
) -> None:
    """The original dropped queued petitions on shutdown and its clients exited 0. orcha
    keeps them queued for the next start (issue 3), and their clients exit 206 saying so."""
    service = env.serve("--max-running", "1", "--grace", "2")
    release = tmp_path / "release"
    blocker = env.popen("run", "blocker", "--", *blocker_argv(release))
    queued: list[subprocess.Popen[bytes]] = []
    try:
        wait_state(env, "blocker", "RUNNING")
        for argv in (["send", "h", "--counter", "3"], ["run", "r", "--", "true"]):
            queued.append(env.popen(*argv))
            wait_state(env, argv[1], "QUEUED")
        service.signal(signal.SIGTERM)
        assert service.proc is not None
        assert service.proc.wait(20) == 0
        for client, name in zip(queued, ("h", "r"), strict=True):
            code, out, err = finish(client)
            assert (code, out) == (206, ""), (code, out, err)
            line = one_error_line(err)
            assert f"petition {name} stays queued" in line, line
        code, _, err = finish(blocker)
        assert code == 207, err
        # Restarted, the service runs what it kept.
        env.serve("--max-running", "1")
        waited = env.run("wait", "h", "r", "--status", "success", timeout=30)
        assert waited.returncode == 0, waited.stderr
    finally:
        release.touch()
        reap(blocker, *queued)


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_a_queued_petition_fed_by_its_client_never_runs_later_on_an_empty_stdin(
    env: Env, tmp_path: Path, stop: str
) -> None:
    """B14: its piped input lives in its client, which the stop disconnects. Kept queued,
    it ran at the next start on an empty stdin and 'succeeded'. A stop cancels it (its
    client says so, 207); after a crash, the next start does; one without stdin is kept."""
    service = env.serve("--max-running", "1", "--grace", "2")
    release = tmp_path / "release"
    clients = [env.popen("run", "blocker", "--", *blocker_argv(release))]
    try:
        wait_state(env, "blocker", "RUNNING")
        counter = ["sh", "-c", 'n=$(wc -l); echo "got $n lines"; test "$n" -gt 0']
        fed = env.popen("run", "fed", "--", *counter, stdin=subprocess.PIPE)
        clients.append(fed)
        plain = env.popen("run", "--detach", "plain", "--", "true")
        clients.append(plain)
        assert fed.stdin is not None
        fed.stdin.write(b"1\n2\n")
        fed.stdin.close()
        fed.stdin = None  # for finish(): communicate() would flush it
        wait_state(env, "fed", "QUEUED")
        assert plain.wait(20) == 0
        assert service.proc is not None
        if stop == "SIGTERM":
            service.signal(signal.SIGTERM)
            assert service.proc.wait(20) == 0
            code, out, err = finish(fed)
            assert (code, out) == (207, ""), (code, out, err)
            line = one_error_line(err)
            assert "petition fed was cancelled" in line and "submit it again" in line, line
        else:
            service.kill_service(20)  # the service process alone (not its guard)
            code, _, err = finish(fed)
            assert code == 206, err
            line = one_error_line(err)
            assert "lost the connection" in line and "it keeps what was queued" not in line
            assert "had not started, and its stdin came from this client" in line, line
        release.touch()
        env.serve("--max-running", "1")
        assert env.run("wait", "plain", "--status", "success", timeout=30).returncode == 0
        shown = env.run("status", "fed", "--json")
        record = json.loads(shown.stdout)
        record = record["petitions"][0] if "petitions" in record else record
        assert record["state"] == "CANCELLED", record
        assert "stdin" in record["message"] and "submit it again" in record["message"]
        assert env.run("logs", "fed").stdout == ""  # never ran
    finally:
        release.touch()
        reap(*clients)


# -- output channels and keys ----------------------------------------------------------------
@pytest.mark.parametrize("verbosity", [[], ["-v"], ["-vv"]], ids=["quiet", "-v", "-vv"])
def test_logs_never_go_to_stdout(env: Env, verbosity: list[str]) -> None:
    service = env.serve(*verbosity)
    result = env.run(*verbosity, "send", "x", "--counter", "3", timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello world! 0\nHello world! 1\nHello world! 2\n"
    ran = env.run("run", *verbosity, "r", "--", "sh", "-c", "echo out; echo err >&2", timeout=30)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "out\n"
    assert ran.stderr.endswith("err\n")
    assert service.stop() == 0
    assert service.proc is not None and service.proc.stdout is not None
    assert service.proc.stdout.read() == b""  # nothing after the banner
    assert wait_for(lambda: "orcha serve: " in service.stderr, 5), service.stderr
    if verbosity:
        assert "petition x" in service.stderr


def test_key_is_created_by_default_and_no_key_option_is_needed(env: Env) -> None:
    key_file = env.state / "key"
    assert not key_file.exists()
    first = env.serve()
    key = key_of(env)
    assert len(key) >= 32
    result = env.run("send", "x", timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello world! 0\n"
    assert first.stop() == 0
    # A restarted service keeps the key, so clients need no new configuration.
    env.serve()
    assert key_of(env) == key
    result = env.run("send", "y", timeout=30)
    assert result.returncode == 0, result.stderr


LEGACY_KIND_CLIENT = """
import os, sys
from orcha.interfaces import Message
from orcha.lib import ClientManager

client = ClientManager()
client.connect()
queue = client.manager.Queue()
client.send(Message(id=sys.argv[1], extras={
    "kind": "hello", "queue": queue, "params": {"counter": 2}, "cwd": os.getcwd()}))
while True:
    item = queue.get()
    print(repr(item), flush=True)
    if not isinstance(item, str):
        break
client.close()
"""


def test_an_original_api_message_naming_a_kind_reads_text_then_the_code(
    env: Env, service: Service, tmp_path: Path
) -> None:
    """The original API's clients print the strings they read and stop at the integer."""
    script = tmp_path / "client.py"
    script.write_text(LEGACY_KIND_CLIENT)
    proc = subprocess.run([sys.executable, str(script), "legacy-kind"], env=env.vars,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["'Hello world! 0\\n'", "'Hello world! 1\\n'", "0"]
    status = env.run("status", "legacy-kind", "--json")
    record = json.loads(status.stdout)["petitions"][0]
    assert (record["kind"], record["state"]) == ("hello", "SUCCEEDED"), record


# -- standard descriptors closed by the caller -------------------------------------------------
def _with_closed(env: Env, fd: int, *args: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI with ``fd`` (0, 1 or 2) closed, as ``orcha ... >&-`` does; the others
    are pipes (or /dev/null for stdin)."""
    streams: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE,
                               "stderr": subprocess.PIPE}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "orcha", *args],
        env=env.vars,
        preexec_fn=lambda: os.close(fd),
        timeout=60,
        check=False,
        **streams,
        **kw,
    )


def test_a_client_with_a_standard_fd_closed_never_writes_into_its_connection(
    env: Env, service: Service
) -> None:
    """With fd 1 closed, the connection to the service took fd 1 and 'orcha run' wrote
    the petition's output into it: the client hung, or showed a traceback."""
    quiet = _with_closed(env, 1, "run", "a", "--", "seq", "1", "200000")
    assert (quiet.returncode, quiet.stderr) == (0, b"")
    assert _with_closed(env, 1, "status").returncode == 0
    loud = _with_closed(env, 2, "run", "b", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (loud.returncode, loud.stdout) == (3, b"out\n")
    reading = _with_closed(env, 0, "run", "c", "--", "cat")
    assert (reading.returncode, reading.stdout, reading.stderr) == (0, b"", b"")
    shown = json.loads(env.run("status", "a", "b", "c", "--json").stdout)["petitions"]
    assert {p["id"]: (p["state"], p["code"]) for p in shown} == {
        "a": ("SUCCEEDED", 0),
        "b": ("FAILED", 3),
        "c": ("SUCCEEDED", 0),
    }
