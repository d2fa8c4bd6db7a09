"""transport.connect: what a client is told when it cannot reach a service."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from orcha.address import parse_address
from orcha.errors import AuthError, DroppedError, ExitCode, NoServiceError
from orcha.protocol import transport


def test_no_socket_is_no_service(tmp_path: Path) -> None:
    with pytest.raises(NoServiceError) as caught:
        transport.connect(parse_address(str(tmp_path / "none.sock")), b"key")
    assert caught.value.exit_code == ExitCode.NO_SERVICE


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
