"""The sd_notify Notifier: addresses, the watchdog interval, and silence outside systemd."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from orcha.service.systemd import Notifier


def test_without_notify_socket_it_does_nothing() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.ready("x")
    notifier.watchdog()
    notifier.stopping()  # nothing to send to, nothing raised


def test_messages_reach_a_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"})
        assert notifier.enabled and notifier.watchdog_interval == 1.0
        notifier.ready("0 queued")
        notifier.status("0 queued")  # unchanged: not sent again
        notifier.status("1 queued")
        notifier.watchdog()
        notifier.stopping("stopping")
        got = [sock.recv(1024).decode() for _ in range(4)]
        notifier.close()
    assert got == [
        f"READY=1\nSTATUS=0 queued\nMAINPID={os.getpid()}",
        "STATUS=1 queued",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=stopping",
    ]


def test_an_abstract_socket_name_is_understood() -> None:
    name = f"orcha-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        notifier.watchdog()
        assert sock.recv(64) == b"WATCHDOG=1"
        notifier.close()


def test_the_watchdog_of_another_process_is_not_ours(tmp_path: Path) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "n"), "WATCHDOG_USEC": "1000000"}
    assert Notifier({**env, "WATCHDOG_PID": "1"}).watchdog_interval is None
    assert Notifier({**env, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval == 0.5


def test_a_relative_notify_socket_is_ignored() -> None:
    assert not Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled


def test_under_a_guard_the_service_takes_its_watchdog_and_names_it_main(tmp_path: Path) -> None:
    guard = os.getpid() + 1  # systemd started the guard; this process is its service
    env = {"NOTIFY_SOCKET": str(tmp_path / "n.sock"), "WATCHDOG_USEC": "1000000"}
    assert Notifier({**env, "WATCHDOG_PID": str(guard)}, main_pid=guard).watchdog_interval == 0.5
    assert Notifier({**env, "WATCHDOG_PID": "1"}, main_pid=guard).watchdog_interval is None
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(env["NOTIFY_SOCKET"])
        sock.settimeout(5)
        notifier = Notifier(env, main_pid=guard)
        notifier.ready("0 queued")
        assert sock.recv(1024).decode() == f"READY=1\nSTATUS=0 queued\nMAINPID={guard}"
        notifier.close()


def test_a_notify_socket_nobody_reads_never_wedges_pings_and_status(tmp_path: Path) -> None:
    """The main loop (which also accepts clients) sends pings and status: with systemd's
    socket full (nobody reading: 10 datagrams by default), they give up at once, and a
    status that could not be sent is sent at the next call once there is room."""
    import threading

    path = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})

        def flood() -> None:
            for _ in range(200):  # far beyond the queue's room
                notifier.watchdog()
            notifier.status("1 queued")

        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        sender.join(30)
        assert not sender.is_alive(), "a ping or status waited for systemd to read"
        sock.settimeout(0.2)
        queued = []
        with contextlib.suppress(TimeoutError):
            while True:
                queued.append(sock.recv(1024).decode())
        assert queued and set(queued) == {"WATCHDOG=1"}  # the status found no room
        notifier.status("1 queued")  # room now: sent
        sock.settimeout(5)
        assert sock.recv(1024).decode() == "STATUS=1 queued"
        notifier.close()
