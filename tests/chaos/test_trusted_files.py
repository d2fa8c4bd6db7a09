"""Files the service trusts are checked (issue 12, point 9), the hostile versions.

``tests/integration/test_trusted_files.py`` shows the plain cases: a lock symlink to a
file, a key readable by others (mode 0644), an empty database, a non-database, corrupt
middle pages in a small database. Here: a dangling lock symlink (whose target
``O_CREAT`` would have created) and a hard-linked lock; a key readable or writable by its
group or others in other ways, and one owned by another user (as root); and 1,500 queued
petitions in a real database that is then emptied or damaged: refused with one line that
names the file, the file left as it was, and all 1,500 back once it is restored.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Env
from tests.integration.test_trusted_files import RECOVER, refused

pytestmark = pytest.mark.timeout(180)

QUEUED = 1500


def shared_dir(tmp_path: Path) -> Path:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: anyone may plant a file there
    return shared


def test_a_dangling_lock_symlink_is_refused_and_its_target_never_created(
    env: Env, tmp_path: Path
) -> None:
    shared = shared_dir(tmp_path)
    target = tmp_path / "would-be-created"
    lock = shared / "orcha.sock.lock"
    lock.symlink_to(target)
    line = refused(env, "--address", f"unix:{shared / 'orcha.sock'}")
    assert line.startswith(f"orcha: the lock file {lock} is a symbolic link; remove it"), line
    assert not target.exists() and not target.is_symlink()
    assert lock.is_symlink()


def test_a_hard_linked_lock_file_is_refused_and_the_other_name_untouched(
    env: Env, tmp_path: Path
) -> None:
    shared = shared_dir(tmp_path)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o600)
    lock = shared / "orcha.sock.lock"
    os.link(victim, lock)
    line = refused(env, "--address", f"unix:{shared / 'orcha.sock'}")
    assert line == (
        f"orcha: the lock file {lock} has other hard links; remove it, or use --address "
        "in a directory only you can write to"
    )
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize(
    ("mode", "problem"),
    [
        (0o640, "readable by its group (mode 0640)"),
        (0o604, "readable by others (mode 0604)"),
        (0o620, "writable by its group (mode 0620)"),
        (0o602, "writable by others (mode 0602)"),
    ],
)
def test_a_key_file_others_can_use_is_refused_with_the_chmod(
    env: Env, mode: int, problem: str
) -> None:
    env.state.mkdir(mode=0o700, parents=True)
    key = env.state / "key"
    key.write_text("0123456789abcdef\n")
    key.chmod(mode)
    assert refused(env) == f"orcha: the key file {key} is {problem}; run 'chmod 600 {key}'"
    assert key.read_text() == "0123456789abcdef\n"  # refused, not replaced


def test_a_key_file_of_another_user_is_refused(env: Env) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    env.state.mkdir(mode=0o700, parents=True)
    key = env.state / "key"
    key.write_text("0123456789abcdef\n")
    key.chmod(0o600)
    os.chown(key, 65534, 65534)
    assert refused(env) == (
        f"orcha: the key file {key} is owned by another user (uid 65534); remove it (the "
        "service makes a new one) or give the key with --key or ORCHA_KEY"
    )
    assert key.stat().st_uid == 65534


def _queue(env: Env, client: Callable[[], Any]) -> list[str]:
    """1,500 petitions queued (all paused) in a real service, which then stops and keeps
    them for the next start; their IDs."""
    service = env.serve("--grace", "1")
    ids = [f"q{i:04d}" for i in range(QUEUED)]
    with client() as c:
        c.pause(everything=True)
        for petition_id in ids:
            c.submit(petition_id, ["true"], detach=True)
    assert service.stop(timeout=60) == 0
    return ids


def _queued_after_restart(env: Env, client: Callable[[], Any]) -> list[str]:
    service = env.serve("--grace", "1")
    with client() as c:
        rows = c.status(states=["QUEUED"])
    assert service.stop(timeout=60) == 0
    return sorted(row["id"] for row in rows)


@pytest.mark.parametrize("damage", ["emptied", "corrupt middle pages"])
def test_a_damaged_database_of_1500_queued_petitions_is_refused_and_they_come_back(
    env: Env,
    tmp_path: Path,
    client: Callable[[], Any],
    sweep: Callable[[], list[psutil.Process]],
    damage: str,
) -> None:
    ids = _queue(env, client)
    db = env.state / "orcha.db"
    backup = tmp_path / "backup"
    backup.mkdir()
    for path in env.state.glob("orcha.db*"):
        shutil.copy2(path, backup / path.name)
    for path in env.state.glob("orcha.db-*"):
        path.unlink()  # only the main file is left to judge
    if damage == "emptied":
        db.write_bytes(b"")
    else:
        data = bytearray(db.read_bytes())
        page = int.from_bytes(data[16:18], "big")
        assert len(data) > 8 * page, "1,500 records span more pages than this"
        data[3 * page : 6 * page] = b"\xa5" * (3 * page)  # header and schema stay sound
        db.write_bytes(bytes(data))
    damaged = db.read_bytes()
    line = refused(env)
    assert line.startswith(f"orcha: the petition database {db} is damaged ("), line
    assert line.endswith(RECOVER), line
    assert db.read_bytes() == damaged  # never replaced, never written
    # Restored from the backup, as the line says: every queued petition is back.
    for path in backup.iterdir():
        shutil.copy2(path, env.state / path.name)
    assert _queued_after_restart(env, client) == ids
