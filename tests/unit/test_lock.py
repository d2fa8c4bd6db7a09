"""The address lock: one service per address, and a lock file planted in a shared
directory (a symlink, a hard link, a FIFO) is refused rather than written through. The
state lock: one service per state directory (its database), whatever its address."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orcha.errors import AlreadyRunningError, ConfigError
from orcha.service import lock as lock_mod
from orcha.service.lock import AddressLock, StateLock

ADDRESS = "unix:/shared/orcha.sock"


def test_acquire_creates_a_private_file_holding_our_pid(tmp_path: Path) -> None:
    path = tmp_path / "orcha.sock.lock"
    lock = AddressLock(str(path))
    lock.acquire(ADDRESS)
    try:
        assert path.read_text() == f"{os.getpid()}\n"
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        lock.release()


def test_a_second_lock_is_refused_while_the_first_is_held(tmp_path: Path) -> None:
    path = str(tmp_path / "orcha.sock.lock")
    first = AddressLock(path)
    first.acquire(ADDRESS)
    try:
        with pytest.raises(AlreadyRunningError, match=f"pid {os.getpid()}"):
            AddressLock(path).acquire(ADDRESS)
    finally:
        first.release()
    second = AddressLock(path)  # released: the next service takes it
    second.acquire(ADDRESS)
    second.release()


def test_a_stale_lock_file_of_ours_is_reused(tmp_path: Path) -> None:
    path = tmp_path / "orcha.sock.lock"
    path.write_text("12345\n")
    lock = AddressLock(str(path))
    lock.acquire(ADDRESS)
    lock.release()
    assert path.read_text() == f"{os.getpid()}\n"


@pytest.mark.parametrize("dangling", [False, True])
def test_a_symlink_lock_file_is_refused_and_its_target_untouched(
    tmp_path: Path, dangling: bool
) -> None:
    target = tmp_path / "precious"
    if not dangling:
        target.write_text("do not overwrite\n")
    path = tmp_path / "orcha.sock.lock"
    path.symlink_to(target)
    with pytest.raises(ConfigError) as caught:
        AddressLock(str(path)).acquire(ADDRESS)
    assert str(caught.value) == (
        f"the lock file {path} is a symbolic link; remove it, or use --address "
        "in a directory only you can write to"
    )
    if dangling:
        assert not target.exists()  # not created through the link either
    else:
        assert target.read_text() == "do not overwrite\n"


def test_a_hard_link_to_another_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("do not overwrite\n")
    path = tmp_path / "orcha.sock.lock"
    os.link(target, path)
    with pytest.raises(ConfigError, match="has other hard links"):
        AddressLock(str(path)).acquire(ADDRESS)
    assert target.read_text() == "do not overwrite\n"


def test_a_fifo_lock_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "orcha.sock.lock"
    os.mkfifo(path)
    with pytest.raises(ConfigError, match="is not a regular file"):
        AddressLock(str(path)).acquire(ADDRESS)


def test_a_lock_file_of_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "orcha.sock.lock"
    path.write_text("12345\n")
    other = os.geteuid() + 1
    monkeypatch.setattr(lock_mod.os, "geteuid", lambda: other)  # we are someone else now
    with pytest.raises(ConfigError, match=r"is owned by another user \(uid \d+\)"):
        AddressLock(str(path)).acquire(ADDRESS)
    assert path.read_text() == "12345\n"


def test_release_twice_is_harmless(tmp_path: Path) -> None:
    lock = AddressLock(str(tmp_path / "orcha.sock.lock"))
    lock.acquire(ADDRESS)
    lock.release()
    lock.release()
    assert lock._fd is None


def test_the_address_lock_of_a_service_whose_socket_is_gone_says_to_kill_it(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "orcha.sock.lock")  # no orcha.sock beside it: deleted
    first = AddressLock(path)
    first.acquire(ADDRESS)
    try:
        with pytest.raises(AlreadyRunningError) as caught:
            AddressLock(path).acquire(ADDRESS)
    finally:
        first.release()
    assert str(caught.value) == (
        f"an orcha service (pid {os.getpid()}) is still running, but its socket "
        f"{tmp_path / 'orcha.sock'} is gone (deleted with its directory?), so no client can "
        f"reach it; stop it with 'kill {os.getpid()}' (it stops cleanly on SIGTERM and "
        "keeps its queued petitions), then start again"
    )


def test_the_state_lock_holds_our_pid_address_and_socket(tmp_path: Path) -> None:
    lock = StateLock(str(tmp_path))
    lock.acquire(ADDRESS, "/shared/orcha.sock")
    try:
        path = tmp_path / "orcha.lock"
        assert path.read_text() == f"{os.getpid()}\n{ADDRESS}\n/shared/orcha.sock\n"
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        lock.release()


def test_a_second_service_on_one_state_directory_is_refused_whatever_its_address(
    tmp_path: Path,
) -> None:
    socket = tmp_path / "orcha.sock"
    socket.write_text("")  # the first service's socket is there
    first = StateLock(str(tmp_path))
    first.acquire(f"unix:{socket}", str(socket))
    try:
        with pytest.raises(AlreadyRunningError) as caught:
            StateLock(str(tmp_path)).acquire("127.0.0.1:7000", None)
    finally:
        first.release()
    assert str(caught.value) == (
        f"another orcha service (pid {os.getpid()}, listening at unix:{socket}) already uses "
        f"the state directory {tmp_path}; stop it first ('orcha shutdown --address "
        f"unix:{socket}') or give this one another ORCHA_STATE_DIR"
    )
    second = StateLock(str(tmp_path))  # released: the next service takes it
    second.acquire("127.0.0.1:7000", None)
    second.release()


def test_the_state_lock_of_a_service_whose_socket_is_gone_says_to_kill_it(
    tmp_path: Path,
) -> None:
    socket = tmp_path / "run" / "orcha.sock"  # its runtime directory was deleted
    first = StateLock(str(tmp_path))
    first.acquire(f"unix:{socket}", str(socket))
    try:
        with pytest.raises(AlreadyRunningError, match=f"its socket {socket} is gone.*'kill "):
            StateLock(str(tmp_path)).acquire(f"unix:{socket}", str(socket))
    finally:
        first.release()


def test_a_stale_state_lock_file_does_not_block(tmp_path: Path) -> None:
    (tmp_path / "orcha.lock").write_text("12345\nunix:/gone.sock\n/gone.sock\n")
    lock = StateLock(str(tmp_path))
    lock.acquire(ADDRESS, None)
    lock.release()
    assert (tmp_path / "orcha.lock").read_text() == f"{os.getpid()}\n{ADDRESS}\n\n"


def test_a_symlink_state_lock_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "orcha.lock").symlink_to(tmp_path / "elsewhere")
    refusal = r"is a symbolic link; remove it, or give it another ORCHA_STATE_DIR$"
    with pytest.raises(ConfigError, match=refusal):
        StateLock(str(tmp_path)).acquire(ADDRESS, None)


def test_a_full_disk_leaves_the_lock_held_without_its_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lock_mod.os, "pwrite", full)
    lock = StateLock(str(tmp_path))
    lock.acquire(ADDRESS, None)  # the lock is what matters; its text only informs
    try:
        with pytest.raises(AlreadyRunningError, match=r"\(pid unknown, listening at an unknown"):
            StateLock(str(tmp_path)).acquire(ADDRESS, None)
    finally:
        lock.release()


def test_a_forked_child_does_not_keep_the_locks_alive(tmp_path: Path) -> None:
    # An original-API action is a forked child that may outlive a crashed service: if it
    # kept copies of the locks' descriptors, the next service would be refused until the
    # guard had stopped it.
    state, address = StateLock(str(tmp_path)), AddressLock(str(tmp_path / "s.lock"))
    state.acquire(ADDRESS, None)
    address.acquire(ADDRESS)
    held = [state._fd, address._fd]
    try:
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: says whether its copies are closed, then lives on
            closed = 0
            for fd in held:
                try:
                    os.fstat(fd)  # type: ignore[arg-type]
                except OSError:
                    closed += 1
            os.write(ready_w, bytes([closed]))
            os.read(go_r, 1)
            os._exit(0)
        try:
            assert os.read(ready_r, 1) == bytes([2])
            assert state._fd is not None and address._fd is not None  # ours still held
            state.release()
            address.release()
            # The child still runs: the parent's release alone frees both locks.
            StateLock(str(tmp_path)).acquire(ADDRESS, None)
            AddressLock(str(tmp_path / "s.lock")).acquire(ADDRESS)
        finally:
            os.write(go_w, b"x")
            os.waitpid(pid, 0)
            for fd in (ready_r, ready_w, go_r, go_w):
                os.close(fd)
    finally:
        state.release()
        address.release()


def test_a_read_only_state_directory_is_one_line_that_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "orcha.lock").write_text("")  # a service ran here before

    def read_only(*args: object, **kwargs: object) -> int:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(lock_mod.os, "open", read_only)
    with pytest.raises(ConfigError) as refused:
        StateLock(str(tmp_path)).acquire(ADDRESS, None)
    message = str(refused.value)
    assert message.startswith(f"cannot open the lock file {tmp_path}/orcha.lock")
    assert "Read-only file system" in message and "read-only" in message
    assert message.endswith("or give it another ORCHA_STATE_DIR")
