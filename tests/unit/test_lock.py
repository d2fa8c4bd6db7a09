"""The address lock: one service per address, and a lock file planted in a shared
directory (a symlink, a hard link, a FIFO) is refused rather than written through."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orcha.errors import AlreadyRunningError, ConfigError
from orcha.service import lock as lock_mod
from orcha.service.lock import AddressLock

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
