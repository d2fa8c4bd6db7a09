"""Files the service trusts are checked before it listens: a planted lock symlink, a key
file others can read, an empty or damaged database each make ``orcha serve`` exit 2 with
one line naming the file and the fix (no traceback, no "listening on"), and nothing is
written through the link or over the database."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Env

RECOVER = "; move it aside to start afresh, or restore it from a backup"


def refused(env: Env, *args: str) -> str:
    """Run ``orcha serve ARGS``, which must refuse to start; return its one error line."""
    result = env.run("serve", *args, timeout=30)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "listening on" not in result.stdout, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("orcha: "), result.stderr
    return lines[0]


def test_a_planted_lock_symlink_is_refused_and_its_target_untouched(
    env: Env, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: anyone may plant a file there
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    lock = shared / "orcha.sock.lock"
    lock.symlink_to(victim)
    line = refused(env, "--address", f"unix:{shared / 'orcha.sock'}")
    assert line == (
        f"orcha: the lock file {lock} is a symbolic link; remove it, or use --address "
        "in a directory only you can write to"
    )
    assert victim.read_text() == "precious\n"
    assert lock.is_symlink()
    assert not (shared / "orcha.sock").exists()


def test_a_key_file_readable_by_others_is_refused_by_service_and_client(env: Env) -> None:
    env.state.mkdir(mode=0o700, parents=True)
    key = env.state / "key"
    key.write_text("0123456789abcdef\n")
    key.chmod(0o644)
    expected = f"orcha: the key file {key} is readable by others (mode 0644); run 'chmod 600 {key}'"
    assert refused(env) == expected
    client = env.run("send", "x", timeout=30)
    assert client.returncode == 2, (client.returncode, client.stderr)
    assert client.stderr.splitlines() == [expected], client.stderr
    assert key.read_text() == "0123456789abcdef\n"  # refused, not replaced
    # Fixed as told, the service starts with that key.
    key.chmod(0o600)
    service = env.serve()
    assert env.info()["petitions"] is not None
    assert service.stop() == 0


def test_an_empty_database_is_refused_not_taken_as_new(env: Env) -> None:
    env.state.mkdir(mode=0o700, parents=True)
    db = env.state / "orcha.db"
    db.touch(mode=0o600)
    assert refused(env) == f"orcha: the petition database {db} is damaged (it is empty){RECOVER}"
    assert db.stat().st_size == 0


def test_a_file_that_is_not_a_database_is_refused(env: Env) -> None:
    env.state.mkdir(mode=0o700, parents=True)
    db = env.state / "orcha.db"
    garbage = b"not a database at all\n" * 1000
    db.write_bytes(garbage)
    db.chmod(0o600)
    line = refused(env)
    assert line == f"orcha: the petition database {db} is damaged (file is not a database){RECOVER}"
    assert db.read_bytes() == garbage


def test_a_database_with_corrupt_middle_pages_is_refused_before_listening(env: Env) -> None:
    from orcha.service.store import Store

    env.state.mkdir(mode=0o700, parents=True)
    db = env.state / "orcha.db"
    store = Store(str(db))
    for i in range(300):
        store.add(
            {
                "service": "unix:/x.sock", "id": f"p{i}", "kind": "", "params": {"pad": "x" * 200},
                "priority": 0, "state": "QUEUED", "submitted": 1.0, "user": "u", "host": "h",
                "cwd": "/", "env": {},
            }
        )  # fmt: skip
    store.close()
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[3 * page : 6 * page] = b"\xa5" * (3 * page)  # the header and the schema stay sound
    db.write_bytes(bytes(data))
    line = refused(env)
    assert line.startswith(f"orcha: the petition database {db} is damaged (")
    assert line.endswith(RECOVER)
    assert db.read_bytes() == bytes(data)
