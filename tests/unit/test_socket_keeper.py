"""SocketKeeper: a service's unix socket deleted under it (its runtime directory removed
at logout, or by a tmp cleaner) is made again at the next look, so clients reach it."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from orcha.address import parse_address
from orcha.protocol import transport
from orcha.service.lock import AddressLock
from orcha.service.socket_keeper import SocketKeeper
from orcha.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


def _keeper(run_dir: Path, clock: Clock) -> tuple[SocketKeeper, AddressLock]:
    run_dir.mkdir(mode=0o700)
    path = str(run_dir / "orcha.sock")
    settings = Settings(parse_address(path), str(run_dir), str(run_dir.parent / "state"))
    lock = AddressLock(path + ".lock")
    lock.acquire(path)
    listener = transport.listen(settings.address)
    return SocketKeeper(settings, listener, clock=clock, interval=5.0), lock


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as client:
        try:
            client.connect(str(path))
        except OSError:
            return False
        return True


def test_a_deleted_socket_is_made_again_at_the_next_look(run_dir: Path) -> None:
    clock = Clock()
    keeper, lock = _keeper(run_dir, clock)
    try:
        assert keeper.wait() == 5.0
        assert keeper.check() is None  # not due yet: not even a stat
        shutil.rmtree(run_dir)
        clock.now += 5.0
        assert keeper.wait() == 0.0
        old = keeper.listener
        remade = keeper.check()
        assert remade is not None and keeper.listener is remade
        old.close()  # the daemon's part
        assert _answers(run_dir / "orcha.sock")
        assert (run_dir.stat().st_mode & 0o777) == 0o700
        clock.now += 5.0
        assert keeper.check() is None  # there: nothing to do
    finally:
        keeper.close()
        lock.release()
    assert not (run_dir / "orcha.sock").exists()  # removed at the end, as ours


def test_a_socket_someone_else_made_there_is_left_alone(run_dir: Path) -> None:
    clock = Clock()
    keeper, lock = _keeper(run_dir, clock)
    path = run_dir / "orcha.sock"
    path.unlink()
    other = socket.socket(socket.AF_UNIX)
    other.bind(str(path))
    try:
        clock.now += 5.0
        assert keeper.check() is None
        assert keeper.wait() is None  # no longer looked at
        keeper.close()
        assert path.exists()  # not ours: not removed
    finally:
        other.close()
        lock.release()


def test_a_lock_held_by_another_is_tried_again_at_the_next_look(run_dir: Path) -> None:
    clock = Clock()
    keeper, lock = _keeper(run_dir, clock)
    shutil.rmtree(run_dir)
    run_dir.mkdir(mode=0o700)
    starting = AddressLock(str(run_dir / "orcha.sock.lock"))  # a second serve, refused soon
    starting.acquire("x")
    try:
        clock.now += 5.0
        assert keeper.check() is None
        assert keeper.wait() == 5.0  # still looking
        starting.release()
        clock.now += 5.0
        assert keeper.check() is not None
        assert _answers(run_dir / "orcha.sock")
    finally:
        keeper.close()
        lock.release()
