"""transport.connect: what a client is told when it cannot reach a service."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from orcha.address import parse_address
from orcha.errors import AuthError, DroppedError, ExitCode, NoServiceError
from orcha.protocol import transport


def test_no_socket_is_no_service(tmp_path: Path) -> None:
    with pytest.raises(NoServiceError) as caught:
        transport.connect(parse_address(str(tmp_path / "none.sock")), b"key")
    assert caught.value.exit_code == ExitCode.NO_SERVICE


def test_a_path_that_is_not_a_socket_is_said_to_be_so_not_a_stopped_service(
    tmp_path: Path,
) -> None:
    for path, kind in ((tmp_path, "a directory"), (tmp_path / "file", "a file")):
        if kind == "a file":
            path.write_text("data")
        with pytest.raises(NoServiceError) as refused:
            transport.connect(parse_address(str(path)), b"k")
        assert refused.value.message == (
            f"no orcha service is running at {path} ({kind}, not a socket); check "
            "--address, ORCHA_ADDRESS or the configuration's address"
        )


def test_listen_never_removes_what_is_not_a_socket_but_takes_a_stale_one(
    tmp_path: Path,
) -> None:
    from orcha.errors import ConfigError

    precious = tmp_path / "precious"
    precious.write_text("keep me")
    (tmp_path / "link").symlink_to(precious)
    for name, kind in (("precious", "a file"), ("link", "a symbolic link"), (".", "a directory")):
        path = tmp_path / name
        with pytest.raises(ConfigError) as refused:
            transport.listen(parse_address(str(path)))
        assert refused.value.message == (
            f"cannot listen on {path}: it is {kind}, not a socket, and orcha leaves it as it "
            "is; choose another --address"
        )
    assert precious.read_text() == "keep me" and (tmp_path / "link").is_symlink()
    # A socket nobody listens on (a service that died left it) is replaced.
    stale = tmp_path / "stale.sock"
    left = socket.socket(socket.AF_UNIX)
    left.bind(str(stale))
    left.close()
    listening = transport.listen(parse_address(str(stale)))
    try:
        assert stale.is_socket()
    finally:
        listening.close()


def test_a_socket_this_user_may_not_use_says_permission_denied_and_whose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "orcha.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    try:

        class Refused(socket.socket):
            def connect(self, address: object) -> None:
                raise PermissionError(13, "Permission denied")  # another user's 0600 socket

        monkeypatch.setattr(transport, "_client_socket", lambda family: Refused(family))
        with pytest.raises(AuthError) as caught:
            transport.connect(parse_address(str(path)), b"key")
    finally:
        listener.close()
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    message = caught.value.message
    assert message.startswith(
        f"permission denied at {path}: the service there belongs to user {me}"
    )
    assert "no orcha service" not in message
    assert caught.value.exit_code == ExitCode.AUTH


def test_a_handshake_the_service_drops_says_so_not_that_no_service_runs(tmp_path: Path) -> None:
    """What a client hears when the service hangs up before authentication (too many
    unauthenticated connections, or a handshake past its deadline)."""
    import threading

    path = tmp_path / "orcha.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(2)
    dropped: list[int] = []

    def hang_up() -> None:  # every connection: the client tries twice, then says so
        for _ in range(2):
            conn, _ = listener.accept()
            conn.close()
            dropped.append(1)

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        with pytest.raises(DroppedError) as caught:
            transport.connect(parse_address(str(path)), b"key")
    finally:
        thread.join(5)
        listener.close()
    assert len(dropped) == 2  # tried once more before telling
    message = str(caught.value)
    assert "before authentication finished" in message and "try again" in message
    assert "no orcha service is running" not in message
    assert caught.value.exit_code == ExitCode.NO_SERVICE


def test_silence_after_connecting_is_nothing_answered_not_a_dropped_handshake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A listener that never accepts (its backlog completes the TCP connection, as a
    proxy or a stuck service does): told at once, not tried twice, not "hung up"."""
    import time

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    monkeypatch.setattr(transport, "HANDSHAKE_TIMEOUT", 0.3)
    address = parse_address(f"127.0.0.1:{listener.getsockname()[1]}")
    started = time.monotonic()
    try:
        with pytest.raises(NoServiceError) as caught:
            transport.connect(address, b"key")
    finally:
        listener.close()
    assert time.monotonic() - started < 0.3 * 2  # one try only
    assert str(caught.value) == (
        f"nothing answered at {address} within 0.3 s; check --address, ORCHA_ADDRESS or "
        "the configuration's address, and that a service runs there"
    )
    assert caught.value.exit_code == ExitCode.NO_SERVICE


def test_a_connection_that_does_not_open_in_time_is_nothing_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Unanswered(socket.socket):
        def connect(self, address: object) -> None:
            raise TimeoutError("timed out")  # what a dropped SYN gives after the timeout

    monkeypatch.setattr(transport, "_client_socket", lambda family: Unanswered(family))
    address = parse_address("10.255.255.1:5000")
    with pytest.raises(NoServiceError) as caught:
        transport.connect(address, b"key", timeout=2.5)
    assert str(caught.value).startswith("nothing answered at 10.255.255.1:5000 within 2.5 s; ")
    assert caught.value.exit_code == ExitCode.NO_SERVICE


def _service_side(key: bytes, early: bool) -> tuple[socket.socket, threading.Thread, list[object]]:
    """A socket pair whose far end runs the service's handshake in a thread (its
    challenge sent before the thread, as the server's accept does, when ``early``);
    the near end, the thread and what the handshake raised (or "ok")."""
    from multiprocessing.connection import Connection

    near, far = socket.socketpair()
    conn = Connection(far.detach())
    message = transport.challenge(conn) if early else None
    outcome: list[object] = []

    def run() -> None:
        try:
            transport.authenticate(conn, key, message)
            outcome.append("ok")
        except (AuthError, OSError, EOFError) as e:
            outcome.append(e)
        finally:
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return near, thread, outcome


@pytest.mark.parametrize("early", [True, False], ids=["challenge-at-accept", "in-thread"])
def test_the_service_handshake_with_both_clients_and_a_wrong_key(early: bool) -> None:
    """The service's side: orcha's lean client and the standard multiprocessing client
    are let in with the key; a wrong key is refused on both ends."""
    from multiprocessing import AuthenticationError
    from multiprocessing.connection import Connection, answer_challenge, deliver_challenge

    from orcha.protocol.wire import AuthenticationFailed, WireConnection

    key = b"k" * 32
    near, thread, outcome = _service_side(key, early)
    WireConnection(near).authenticate(key)
    thread.join(5)
    assert outcome == ["ok"]

    near, thread, outcome = _service_side(key, early)
    standard = Connection(near.detach())
    answer_challenge(standard, key)
    deliver_challenge(standard, key)
    thread.join(5)
    assert outcome == ["ok"]

    near, thread, outcome = _service_side(key, early)
    with pytest.raises(AuthenticationFailed):
        WireConnection(near).authenticate(b"wrong")
    thread.join(5)
    assert isinstance(outcome[0], AuthError)

    near, thread, outcome = _service_side(key, early)
    with pytest.raises(AuthenticationError):
        answer_challenge(Connection(near.detach()), b"wrong")
    thread.join(5)
    assert isinstance(outcome[0], AuthError)
