"""The petition store: schema versioning, WAL, record round-trips, queries, pruning,
thread safety and index use (so that the cost of an event does not grow with the history)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orcha.errors import ConfigError, ExitCode, OrchaError, PetitionError
from orcha.service import db_faults, migrations
from orcha.service import store as store_mod
from orcha.service.migrations import MIGRATIONS, SCHEMA_VERSION
from orcha.service.store import Store

SERVICE = "/run/orcha/a.sock"
OTHER = "/run/orcha/b.sock"
LIVE_STATES = ("QUEUED", "RUNNING")
ENDED_STATES = ("SUCCEEDED", "FAILED", "CANCELLED", "INTERRUPTED")


def _record(**over: Any) -> dict[str, Any]:
    """A complete record as the service would write it at submission."""
    record: dict[str, Any] = {
        "service": SERVICE,
        "id": "p1",
        "kind": "",
        "params": {"cmd": ["echo", "hi"], "n": 3, "nested": {"a": [1, 2.5, None, True]}},
        "priority": 0,
        "state": "QUEUED",
        "submitted": 1000.0,
        "started": None,
        "ended": None,
        "code": None,
        "message": None,
        "user": "alice",
        "host": "box",
        "cwd": "/home/alice",
        "env": {"PATH": "/usr/bin", "LANG": "C.UTF-8"},
        "log_path": None,
        "token": "tok-1",
        "pids": [],
    }
    record.update(over)
    return record


def _user_version(path: str) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute("PRAGMA user_version").fetchone()[0])
    finally:
        con.close()


def _columns(path: str) -> set[str]:
    con = sqlite3.connect(path)
    try:
        return {row[1] for row in con.execute("PRAGMA table_info(petitions)")}
    finally:
        con.close()


def _traced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every statement run by connections opened from now on (the Store's own)."""
    statements: list[str] = []
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        con = real_connect(*args, **kwargs)
        con.set_trace_callback(statements.append)
        return con

    monkeypatch.setattr(store_mod.sqlite3, "connect", connect)
    return statements


# -- schema version and journal mode ---------------------------------------------------------


def test_new_database_has_current_schema_version(store: Store, db_path: str) -> None:
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 1
    assert store.version == SCHEMA_VERSION
    assert _user_version(db_path) == SCHEMA_VERSION
    assert set(store_mod._COLUMNS) <= _columns(db_path)


def test_new_database_is_in_wal_mode(store: Store, db_path: str) -> None:
    store.add(_record())
    con = sqlite3.connect(db_path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    finally:
        con.close()
    assert Path(db_path + "-wal").exists()


def test_migration_is_applied_once(db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    statements = _traced(monkeypatch)
    Store(db_path).close()
    creates = [s for s in statements if "CREATE TABLE petitions" in s]
    assert len(creates) == 1
    statements.clear()
    Store(db_path).close()
    assert not [s for s in statements if "CREATE " in s.upper()]
    assert _user_version(db_path) == SCHEMA_VERSION


def test_reopen_keeps_records(db_path: str) -> None:
    s = Store(db_path)
    seqs = [
        s.add(_record(id=f"p{i}", state=ENDED_STATES[i % 4], ended=2000.0 + i)) for i in range(5)
    ]
    live_seq = s.add(_record(id="live"))
    before = s.find()
    s.close()

    s = Store(db_path)
    try:
        assert s.version == SCHEMA_VERSION
        assert s.find() == before
        assert [r["seq"] for r in s.find()] == [*seqs, live_seq]
        assert [r["seq"] for r in s.live(SERVICE)] == [live_seq]
    finally:
        s.close()


def test_version_0_database_is_migrated(db_path: str) -> None:
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA user_version=0")
    con.commit()
    con.close()

    s = Store(db_path)
    try:
        assert s.version == SCHEMA_VERSION
        seq = s.add(_record())
        assert s.get(seq) is not None
    finally:
        s.close()
    assert _user_version(db_path) == SCHEMA_VERSION
    assert set(store_mod._COLUMNS) <= _columns(db_path)


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION + 1))
def test_older_database_is_migrated_forward_keeping_records(
    db_path: str, version: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at ``version`` (built by hand from the real migrations) is brought to the
    current version without losing its records. An extra migration is added on top so that
    there is always at least one step to take from an intermediate version."""
    con = sqlite3.connect(db_path, isolation_level=None)
    for statements in MIGRATIONS[:version]:
        for statement in statements:
            con.execute(statement)
    con.execute(f"PRAGMA user_version = {version}")
    con.execute(
        "INSERT INTO petitions (service, id, kind, params, priority, state, submitted, user, "
        "host, cwd, env) VALUES (?, 'old', '', '{\"x\": 1}', 0, 'QUEUED', 1.0, 'u', 'h', '/', "
        "'{}')",
        (SERVICE,),
    )
    con.close()

    extra = ["CREATE TABLE extra_marker (n INTEGER)", "INSERT INTO extra_marker VALUES (1)"]
    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, extra])
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", SCHEMA_VERSION + 1)

    for _ in range(2):  # the second open must not apply anything again
        s = Store(db_path)
        try:
            assert s.version == SCHEMA_VERSION + 1
            [old] = s.live(SERVICE)
            assert old["id"] == "old"
            assert old["params"] == {"x": 1}
        finally:
            s.close()
    con = sqlite3.connect(db_path)
    try:
        assert con.execute("SELECT n FROM extra_marker").fetchall() == [(1,)]
    finally:
        con.close()
    assert set(store_mod._COLUMNS) <= _columns(db_path)


def test_failed_migration_is_rolled_back(db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    Store(db_path).close()
    broken = ["CREATE TABLE half_done (n INTEGER)", "THIS IS NOT SQL"]
    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, broken])
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    # Reported as orcha's own error (one line for the user), the migration rolled back.
    with pytest.raises(ConfigError, match="THIS"):
        Store(db_path)
    assert _user_version(db_path) == SCHEMA_VERSION
    con = sqlite3.connect(db_path)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        con.close()
    assert "half_done" not in tables
    assert "petitions" in tables


def test_newer_database_is_refused(db_path: str) -> None:
    s = Store(db_path)
    s.add(_record())
    s.close()
    con = sqlite3.connect(db_path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()

    with pytest.raises(ConfigError, match="newer orcha") as info:
        Store(db_path)
    assert db_path in str(info.value)
    # Refused, not touched: the version and the records are as the newer orcha left them.
    assert _user_version(db_path) == SCHEMA_VERSION + 1
    con = sqlite3.connect(db_path)
    try:
        assert con.execute("SELECT COUNT(*) FROM petitions").fetchone()[0] == 1
    finally:
        con.close()


def test_unopenable_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open"):
        Store(str(tmp_path / "no" / "such" / "dir" / "petitions.db"))


# -- a damaged database is refused, never replaced ---------------------------------------------
RECOVER = "; move it aside to start afresh, or restore it from a backup"


def _filled(db_path: str, n: int = 300) -> None:
    """A database of ``n`` queued petitions, closed (checkpointed into the main file)."""
    s = Store(db_path)
    for i in range(n):
        s.add(_record(id=f"p{i}", params={"pad": "x" * 200}))
    s.close()


def test_an_empty_existing_database_is_refused_not_taken_as_new(db_path: str) -> None:
    Path(db_path).touch()
    with pytest.raises(ConfigError) as info:
        Store(db_path)
    assert str(info.value) == f"the petition database {db_path} is damaged (it is empty){RECOVER}"
    assert Path(db_path).stat().st_size == 0  # left as found, for whoever investigates


def test_a_file_that_is_not_a_database_is_refused(db_path: str) -> None:
    garbage = b"this is not sqlite\n" * 500
    Path(db_path).write_bytes(garbage)
    with pytest.raises(ConfigError) as info:
        Store(db_path)
    assert str(info.value) == (
        f"the petition database {db_path} is damaged (file is not a database){RECOVER}"
    )
    assert Path(db_path).read_bytes() == garbage


def test_a_database_with_corrupt_middle_pages_is_refused_at_open(db_path: str) -> None:
    _filled(db_path)
    data = bytearray(Path(db_path).read_bytes())
    page = int.from_bytes(data[16:18], "big")
    assert len(data) > 8 * page  # enough pages to damage some in the middle
    data[3 * page : 6 * page] = b"\xa5" * (3 * page)  # header and schema intact
    Path(db_path).write_bytes(bytes(data))
    with pytest.raises(ConfigError) as info:
        Store(db_path)
    message = str(info.value)
    assert message.startswith(f"the petition database {db_path} is damaged (")
    assert message.endswith(RECOVER) and "\n" not in message


def test_a_sound_existing_database_passes_the_check(db_path: str) -> None:
    _filled(db_path, 20)
    s = Store(db_path)
    try:
        assert len(s.live(SERVICE)) == 20
    finally:
        s.close()


def _damage_pages(db_path: str) -> None:
    """Overwrite some middle pages of the database's main file (header and schema intact)."""
    data = bytearray(Path(db_path).read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[3 * page : 6 * page] = b"\xa5" * (3 * page)
    Path(db_path).write_bytes(bytes(data))


RUNNING_ADVICE = (
    "; stop the service ('orcha shutdown'), then move it aside to start afresh, or restore it "
    "from a backup"
)


def test_reads_of_a_database_damaged_while_open_say_so_with_212_and_what_to_do(
    db_path: str,
) -> None:
    _filled(db_path)
    s = Store(db_path)  # sound at open
    try:
        _damage_pages(db_path)
        with pytest.raises(PetitionError) as info:
            s.live(SERVICE)
        assert info.value.exit_code == ExitCode.NOT_SAVED
        assert str(info.value) == (
            f"the petition database {db_path} is damaged (database disk image is malformed)"
            f"{RUNNING_ADVICE}"
        )
        assert s.health() == (False, f"DAMAGED: {info.value}")
    finally:
        s.close()


def test_health_reads_the_database_and_finds_it_damaged(db_path: str) -> None:
    _filled(db_path)
    s = Store(db_path)
    try:
        _damage_pages(db_path)
        healthy, state = s.health()  # no read came before: its own finds the damage
        assert not healthy
        assert state.startswith(f"DAMAGED: the petition database {db_path} is damaged (")
        assert state.endswith(RUNNING_ADVICE)
    finally:
        s.close()


def _failing_open(monkeypatch: pytest.MonkeyPatch, message: str, name: str) -> None:
    """Opening an existing database fails with SQLite's ``message`` (error ``name``)."""

    def check(db: sqlite3.Connection, path: str) -> None:
        error = sqlite3.OperationalError(message)
        error.sqlite_errorname = name  # type: ignore[attr-defined]
        raise error

    monkeypatch.setattr(store_mod, "check_pages", check)


@pytest.mark.parametrize("full", [True, False], ids=["full", "failing"])
def test_a_full_or_failing_disk_at_open_is_212_and_never_says_to_move_the_database_aside(
    db_path: str, monkeypatch: pytest.MonkeyPatch, full: bool
) -> None:
    _filled(db_path, 5)
    # A full tmpfs: SQLite cannot size its shared-memory file and says "disk I/O error".
    _failing_open(monkeypatch, "disk I/O error", "SQLITE_IOERR_SHMSIZE")
    monkeypatch.setattr(db_faults, "disk_full", lambda directory: full)
    with pytest.raises(OrchaError) as info:
        Store(db_path)
    directory = str(Path(db_path).parent)
    assert info.value.exit_code == ExitCode.NOT_SAVED
    assert str(info.value) == (
        f"cannot use the petition database {db_path}: the disk holding it is full (disk I/O "
        f"error); free space in {directory} and start again (the database and its petitions "
        "are kept: do not move it aside)"
        if full
        else f"cannot use the petition database {db_path}: disk I/O error (the disk is full or "
        f"failing); free space in {directory} or check the disk (dmesg), then start again (do "
        "not move the database aside: it may be intact)"
    )
    monkeypatch.undo()
    Store(db_path).close()  # the same database opens once the disk is fixed


def test_a_database_locked_at_open_is_212_and_says_what_to_end(
    db_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _filled(db_path, 5)
    _failing_open(monkeypatch, "database is locked", "SQLITE_BUSY")
    with pytest.raises(OrchaError) as info:
        Store(db_path)
    assert info.value.exit_code == ExitCode.NOT_SAVED
    assert str(info.value) == (
        f"cannot use the petition database {db_path}: another process holds it locked "
        "(database is locked); end that process (see 'fuser' or 'lsof') and start again"
    )


# -- add / get ---------------------------------------------------------------------------------


def test_add_returns_increasing_seqs_that_survive_restarts(db_path: str) -> None:
    s = Store(db_path)
    first = [s.add(_record(id=f"a{i}")) for i in range(5)]
    assert first == sorted(first)
    assert len(set(first)) == 5
    # Even if the newest records are pruned, a seq is never handed out again.
    for seq in first[2:]:
        s.update(seq, state="SUCCEEDED", ended=5.0)
    s.remove_finished()
    s.close()

    s = Store(db_path)
    try:
        later = [s.add(_record(id=f"b{i}")) for i in range(3)]
        assert later == sorted(later)
        assert later[0] > max(first)
        assert [r["id"] for r in s.find()] == ["a0", "a1", "b0", "b1", "b2"]
    finally:
        s.close()


def test_json_fields_round_trip(store: Store) -> None:
    params = {"cmd": ["sh", "-c", "echo 'ü' && exit 3"], "opts": {"x": [1, None, 2.5, False]}}
    env = {"PATH": "/bin", "EMPTY": "", "UNICODE": "ñ☃"}
    pids = [[1234, 1700000000.25], [1235, 1700000001.5]]
    seq = store.add(_record(params=params, env=env, pids=pids))
    rec = store.get(seq)
    assert rec is not None
    assert rec["params"] == params
    assert rec["env"] == env
    assert rec["pids"] == pids
    assert rec["seq"] == seq
    for name, value in _record().items():
        if name not in ("params", "env", "pids"):
            assert rec[name] == value, name


def test_optional_columns_have_defaults(store: Store) -> None:
    record = _record()
    for name in ("pids", "token", "started", "ended", "code", "message", "log_path"):
        del record[name]
    rec = store.get(store.add(record))
    assert rec is not None
    assert rec["pids"] == []
    assert rec["token"] == ""
    assert rec["started"] is rec["ended"] is rec["code"] is rec["message"] is None
    assert rec["log_path"] is None


def test_record_has_every_column(store: Store) -> None:
    rec = store.get(store.add(_record()))
    assert rec is not None
    assert set(rec) == set(store_mod._COLUMNS)


def test_add_ignores_a_given_seq(store: Store) -> None:
    a = store.add(_record(seq=999))
    b = store.add(_record(seq=999))
    assert a < b < 999
    assert store.get(999) is None


def test_get_unknown_seq_is_none(store: Store) -> None:
    assert store.get(12345) is None


# -- update ------------------------------------------------------------------------------------


def test_update_changes_only_the_named_fields(store: Store) -> None:
    seq = store.add(_record())
    other = store.add(_record(id="p2"))
    before = store.get(seq)
    other_before = store.get(other)
    assert before is not None

    store.update(seq, state="RUNNING", started=1001.5, pids=[[42, 1001.25]], token="tok-2")
    after = store.get(seq)
    assert after is not None
    assert after["state"] == "RUNNING"
    assert after["started"] == 1001.5
    assert after["pids"] == [[42, 1001.25]]
    assert after["token"] == "tok-2"
    changed = {"state", "started", "pids", "token"}
    assert {k: v for k, v in after.items() if k not in changed} == {
        k: v for k, v in before.items() if k not in changed
    }
    assert store.get(other) == other_before


def test_update_json_fields(store: Store) -> None:
    seq = store.add(_record())
    store.update(seq, params={"new": [1, 2]}, env={"A": "b"})
    rec = store.get(seq)
    assert rec is not None
    assert rec["params"] == {"new": [1, 2]}
    assert rec["env"] == {"A": "b"}


def test_update_unknown_field_raises_and_changes_nothing(store: Store) -> None:
    seq = store.add(_record())
    before = store.get(seq)
    with pytest.raises(ValueError, match="no_such_field"):
        store.update(seq, state="RUNNING", pids=[[1, 2.0]], no_such_field=1)
    assert store.get(seq) == before


# -- live --------------------------------------------------------------------------------------


def test_live_returns_queued_and_running_of_that_service_in_seq_order(store: Store) -> None:
    expected = []
    for i, state in enumerate(["RUNNING", "SUCCEEDED", "QUEUED", "FAILED", "QUEUED",
                               "CANCELLED", "INTERRUPTED", "RUNNING"]):  # fmt: skip
        seq = store.add(_record(id=f"p{i}", state=state, priority=-i))
        store.add(_record(id=f"o{i}", state=state, service=OTHER))
        if state in LIVE_STATES:
            expected.append(seq)
    live = store.live(SERVICE)
    assert [r["seq"] for r in live] == expected
    assert all(r["service"] == SERVICE for r in live)
    assert all(r["state"] in LIVE_STATES for r in live)
    assert [r["id"] for r in live] == ["p0", "p2", "p4", "p7"]
    assert all(r["id"].startswith("o") for r in store.live(OTHER))
    assert store.live("/nowhere") == []


def test_live_follows_updates(store: Store) -> None:
    a = store.add(_record(id="a"))
    b = store.add(_record(id="b"))
    store.update(a, state="RUNNING")
    assert [r["seq"] for r in store.live(SERVICE)] == [a, b]
    store.update(a, state="SUCCEEDED", ended=3.0)
    assert [r["seq"] for r in store.live(SERVICE)] == [b]


# -- latest / find -----------------------------------------------------------------------------


def test_latest_returns_newest_record_of_a_reused_id(store: Store) -> None:
    first = store.add(_record(id="job", state="FAILED", ended=1.0, code=1))
    store.add(_record(id="other"))
    second = store.add(_record(id="job", state="SUCCEEDED", ended=2.0, code=0))
    store.add(_record(id="other2"))
    third = store.add(_record(id="job"))
    rec = store.named("job")
    assert rec is not None
    assert rec["seq"] == third
    assert rec["state"] == "QUEUED"
    store.update(third, state="CANCELLED", ended=3.0)
    store.remove_finished(before=2.5)  # removes first and second only
    assert store.get(first) is None
    assert store.get(second) is None
    rec = store.named("job")
    assert rec is not None
    assert rec["seq"] == third
    assert store.named("missing") is None


def test_find_ids_returns_newest_of_each_oldest_first(store: Store) -> None:
    store.add(_record(id="A", state="FAILED", ended=1.0))  # 1
    b = store.add(_record(id="B", state="SUCCEEDED", ended=1.0))  # 2
    store.add(_record(id="C"))  # 3
    a2 = store.add(_record(id="A", state="RUNNING"))  # 4
    found = store.find(ids=["A", "B", "missing"])
    assert [(r["id"], r["seq"]) for r in found] == [("B", b), ("A", a2)]
    assert store.find(ids=["B", "A"]) == found  # order of ids does not matter
    assert store.find(ids=["missing"]) == []


def test_find_without_arguments_returns_everything_oldest_first(store: Store) -> None:
    seqs = [store.add(_record(id=i)) for i in ("x", "y", "x")]
    found = store.find()
    assert [r["seq"] for r in found] == seqs
    assert found[0]["params"] == _record()["params"]


def test_find_states_filters(store: Store) -> None:
    states = ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "INTERRUPTED"]
    seqs = {s: store.add(_record(id=s.lower(), state=s)) for s in states}
    assert [r["seq"] for r in store.find(states=["SUCCEEDED", "FAILED"])] == [
        seqs["SUCCEEDED"],
        seqs["FAILED"],
    ]
    assert [r["state"] for r in store.find(states=iter(["RUNNING"]))] == ["RUNNING"]
    assert store.find(states=["NOPE"]) == []


def test_find_ids_and_states_filters_the_newest_record(store: Store) -> None:
    store.add(_record(id="A"))
    store.update(1, state="FAILED", ended=1.0)
    newest = store.add(_record(id="A", state="RUNNING"))
    store.add(_record(id="B", state="SUCCEEDED", ended=1.0))
    assert [r["seq"] for r in store.find(ids=["A", "B"], states=["RUNNING"])] == [newest]
    # The older FAILED record of A is not the newest, so it is not returned.
    assert [r["id"] for r in store.find(ids=["A", "B"], states=["FAILED"])] == []


def test_find_columns_returns_only_those_columns(store: Store) -> None:
    store.add(_record(id="A", pids=[[1, 2.0]]))
    store.add(_record(id="B", state="RUNNING"))
    found = store.find(columns=["id", "state"])
    assert found == [{"id": "A", "state": "QUEUED"}, {"id": "B", "state": "RUNNING"}]
    with_json = store.find(ids=["A"], columns=["seq", "pids", "params"])
    assert len(with_json) == 1
    assert set(with_json[0]) == {"seq", "pids", "params"}
    assert with_json[0]["pids"] == [[1, 2.0]]
    assert with_json[0]["params"] == _record()["params"]


# -- remove_finished ---------------------------------------------------------------------------


def _mixed(store: Store) -> dict[str, int]:
    """One record per state; the ended ones ended at 10, 20, 30, 40."""
    seqs = {}
    for i, state in enumerate(ENDED_STATES):
        seqs[state] = store.add(_record(id=state.lower(), state=state, ended=10.0 * (i + 1),
                                        log_path=f"/logs/{state.lower()}.log"))  # fmt: skip
    seqs["QUEUED"] = store.add(_record(id="queued", log_path="/logs/q.log"))
    seqs["RUNNING"] = store.add(
        _record(id="running", state="RUNNING", started=5.0, log_path="/logs/r.log")
    )
    return seqs


def test_remove_finished_deletes_only_ended_records(store: Store) -> None:
    seqs = _mixed(store)
    removed = store.remove_finished()
    assert sorted(removed, key=lambda r: r["seq"]) == [
        {"seq": seqs[s], "id": s.lower(), "log_path": f"/logs/{s.lower()}.log"}
        for s in ENDED_STATES
    ]
    assert [r["state"] for r in store.find()] == ["QUEUED", "RUNNING"]
    assert [r["seq"] for r in store.live(SERVICE)] == [seqs["QUEUED"], seqs["RUNNING"]]
    assert store.remove_finished() == []


def test_remove_finished_before(store: Store) -> None:
    seqs = _mixed(store)
    removed = store.remove_finished(before=30.0)  # ended at 10 and 20; not 30 itself
    assert sorted(r["seq"] for r in removed) == [seqs["SUCCEEDED"], seqs["FAILED"]]
    assert {r["id"] for r in removed} == {"succeeded", "failed"}
    remaining = {r["state"] for r in store.find()}
    assert remaining == {"CANCELLED", "INTERRUPTED", "QUEUED", "RUNNING"}
    removed = store.remove_finished(before=1e12)
    assert sorted(r["seq"] for r in removed) == [seqs["CANCELLED"], seqs["INTERRUPTED"]]
    assert {r["state"] for r in store.find()} == set(LIVE_STATES)


def test_remove_finished_never_removes_live_records_even_with_ended_set(store: Store) -> None:
    seq = store.add(_record(state="RUNNING", ended=1.0))  # inconsistent, but still live
    assert store.remove_finished(before=100.0) == []
    assert store.remove_finished() == []
    assert store.get(seq) is not None


# -- thread safety -----------------------------------------------------------------------------


def test_concurrent_adds_from_8_threads(store: Store) -> None:
    n_threads, per_thread = 8, 200
    barrier = threading.Barrier(n_threads)
    results: list[list[int]] = [[] for _ in range(n_threads)]
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(per_thread):
                results[t].append(store.add(_record(id=f"t{t}-{i}", pids=[[t, float(i)]])))
                if i % 50 == 0:
                    store.live(SERVICE)
                    store.named(f"t{t}-{i}")
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in threads)
    assert errors == []
    all_seqs = [s for r in results for s in r]
    assert len(all_seqs) == n_threads * per_thread
    assert len(set(all_seqs)) == n_threads * per_thread
    for r in results:  # each thread's own adds are in arrival order
        assert r == sorted(r)
    stored = store.find(columns=["seq", "id"])
    assert sorted(r["seq"] for r in stored) == sorted(all_seqs)
    by_seq = {r["seq"]: r["id"] for r in stored}
    for t, r in enumerate(results):
        assert [by_seq[s] for s in r] == [f"t{t}-{i}" for i in range(per_thread)]


# -- indexes: the cost of an event does not grow with the number of records --------------------


def _plan_of(
    store: Store, db_path: str, call: Callable[[], object], table_marker: str
) -> list[str]:
    """Run ``call`` with the store's statements traced; return the query plan (one string per
    row) of the statement that reads ``table_marker``, planned on a separate connection."""
    statements: list[str] = []
    store._reader.set_trace_callback(statements.append)
    try:
        call()
    finally:
        store._reader.set_trace_callback(None)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")
               and table_marker in s]  # fmt: skip
    assert len(selects) == 1, statements
    con = sqlite3.connect(db_path)
    try:
        return [row[-1] for row in con.execute("EXPLAIN QUERY PLAN " + selects[0])]
    finally:
        con.close()


@pytest.fixture
def big_store(store: Store) -> Store:
    for i in range(300):
        state = ENDED_STATES[i % 4] if i % 10 else "QUEUED"
        store.add(_record(id=f"p{i % 50}", state=state, service=(SERVICE, OTHER)[i % 2]))
    return store


def test_live_uses_the_live_index(big_store: Store, db_path: str) -> None:
    plan = _plan_of(big_store, db_path, lambda: big_store.live(SERVICE), "petitions")
    text = "\n".join(plan)
    assert "petitions_live" in text, text
    assert not any(p.startswith("SCAN petitions") for p in plan), text


def test_latest_uses_the_id_index(big_store: Store, db_path: str) -> None:
    plan = _plan_of(big_store, db_path, lambda: big_store.named("p7"), "petitions")
    text = "\n".join(plan)
    assert "petitions_by_id" in text, text
    assert not any(p.startswith("SCAN petitions") for p in plan), text


def test_close(db_path: str) -> None:
    s = Store(db_path)
    s.add(_record())
    s.close()
    with pytest.raises(sqlite3.ProgrammingError):
        s.get(1)


def test_a_direct_write_is_never_overtaken_by_an_older_batch_being_committed(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A queued change (an end, say) taken by the writer and being committed when a
    direct write of the same field comes (a start of the next attempt) must not land
    after it: the newest value is the one on disk."""
    seq = store.add(_record())
    committing, release = threading.Event(), threading.Event()
    real_commit = store.saver._commit

    def slow_commit(batch: Any) -> None:
        committing.set()
        assert release.wait(10)
        real_commit(batch)

    monkeypatch.setattr(store.saver, "_commit", slow_commit)
    store.update_later(seq, state="CANCELLED")
    assert committing.wait(10)  # the writer took the batch with CANCELLED: not committed
    direct = threading.Thread(target=store.update, args=(seq,), kwargs={"state": "RUNNING"})
    direct.start()
    direct.join(0.2)  # it waits for the batch (done at once would be the bug)
    release.set()
    direct.join(10)
    assert not direct.is_alive()
    assert store.flush(10)
    assert store.get(seq)["state"] == "RUNNING"  # type: ignore[index]


# -- text that is not UTF-8 (a byte of a file name or command line) --------------------------
def test_a_message_that_is_not_utf8_is_saved_with_its_bytes_escaped(store: Store) -> None:
    seq = store.add(_record(message="command not found: \udcffcmd"))
    store.update(seq, notify_error="webhook http://h/\udcfe failed")
    store.update_later(seq, state="FAILED", message="command not found: \udcffcmd!")
    assert store.flush(10)
    record = store.get(seq)
    assert record is not None
    assert record["message"] == "command not found: \\xffcmd!"
    assert record["notify_error"] == "webhook http://h/\\xfe failed"


def test_a_cwd_that_is_not_utf8_is_kept_as_its_bytes(store: Store, db_path: str) -> None:
    cwd = "/tmp/d\udcffir"
    seq = store.add(_record(id="odd", cwd=cwd, kind="shell", log_path="/tmp/odd.log"))
    assert store.get(seq)["cwd"] == cwd  # type: ignore[index]
    assert store.named("odd")["cwd"] == cwd  # type: ignore[index]
    rows = [row for batch in store.queued_rows(SERVICE) for row in batch]
    assert [row[7] for row in rows] == [b"/tmp/d\xffir"]  # recovery decodes it (fsdecode)
    store.update(seq, cwd="/tmp/e\udcfe")
    assert store.find(["odd"])[0]["cwd"] == "/tmp/e\udcfe"


def test_an_id_that_is_not_utf8_names_no_record(store: Store) -> None:
    store.add(_record(id="p1"))
    assert store.named("p\udcff") is None
    assert store.find(["p\udcff"]) == []
    assert [r["id"] for r in store.find(["p\udcff", "p1"])] == ["p1"]
    assert store.array_refs("p\udcff") is None
