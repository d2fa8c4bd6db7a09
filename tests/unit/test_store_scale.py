"""The store at queue scale: environments kept once, the default status view read
through indexes, live records read in chunks (see tests/unit/test_store.py for the rest)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from orcha.protocol.selection import first_queued, select
from orcha.service.environments import Environment
from orcha.service.store import Store
from tests.unit.test_store import SERVICE, _record

ENV = {"PATH": "/usr/bin", "LANG": "C.UTF-8", "HOME": "/home/alice"}


def _environments(db_path: str) -> list[str]:
    with sqlite3.connect(db_path) as db:
        return [r[0] for r in db.execute("SELECT env FROM environments ORDER BY id")]


def test_identical_environments_are_stored_once_and_shared_in_memory(
    store: Store, db_path: str
) -> None:
    seqs = store.add_many([_record(id=f"p{i}", env=dict(ENV)) for i in range(3)])
    store.add(_record(id="other", env={**ENV, "LANG": "C"}))
    assert len(_environments(db_path)) == 2
    records = [store.get(seq) for seq in seqs]
    assert all(r is not None and r["env"] == ENV for r in records)
    envs = [r["env"] for r in records if r is not None]
    assert envs[0] is envs[1] is envs[2]  # one copy for every petition that has it
    assert "env_id" not in (records[0] or {})


def test_an_array_members_own_variables_are_kept_with_it_over_the_shared_base(
    store: Store, db_path: str
) -> None:
    members = [
        {**ENV, "ORCHA_ARRAY_INDEX": str(i), "ORCHA_ARRAY_NAME": "a", "ORCHA_ARRAY_COUNT": "2"}
        for i in (1, 2)
    ]
    seqs = store.add_many([_record(id=f"a_{i}", env=env) for i, env in enumerate(members)])
    assert len(_environments(db_path)) == 1  # the base, without the members' variables
    got = [store.get(seq) for seq in seqs]
    assert [dict(r["env"]) for r in got if r is not None] == members
    first = got[0]
    assert first is not None and isinstance(first["env"], Environment)
    assert first["env"]["ORCHA_ARRAY_INDEX"] == "1" and first["env"]["PATH"] == "/usr/bin"
    assert len(first["env"]) == len(members[0]) and "HOME" in first["env"]
    # Stored again as it is read (a restart's 'orcha restart' of a member): the same.
    again = store.add(_record(id="again", env=first["env"]))
    assert dict((store.get(again) or {})["env"]) == members[0]
    assert len(_environments(db_path)) == 1


def test_members_sharing_one_base_object_store_it_once_and_another_base_apart(
    store: Store, db_path: str
) -> None:
    # An array's members carry one base object: its JSON is made once, not per member.
    base = dict(ENV)
    members = [Environment(base, {"ORCHA_ARRAY_INDEX": str(i)}) for i in (1, 2, 3)]
    seqs = store.add_many([_record(id=f"m_{i}", env=env) for i, env in enumerate(members)])
    other = store.add(_record(id="other", env={**ENV, "LANG": "C"}))
    again = store.add(_record(id="again", env=Environment(base, {"ORCHA_ARRAY_INDEX": "9"})))
    assert len(_environments(db_path)) == 2
    got = {seq: store.get(seq) for seq in [*seqs, other, again]}
    assert [dict(got[s]["env"])["ORCHA_ARRAY_INDEX"] for s in seqs] == ["1", "2", "3"]  # type: ignore[index]
    assert got[other]["env"]["LANG"] == "C" and dict(got[again]["env"])["LANG"] == ENV["LANG"]  # type: ignore[index]


def test_a_changed_environment_is_kept_whole(store: Store) -> None:
    seq = store.add(_record(env=dict(ENV)))
    store.update(seq, env={"ONLY": "this"})
    assert (store.get(seq) or {})["env"] == {"ONLY": "this"}


def test_records_of_an_older_orcha_read_whole_and_are_shared_once_saved_again(
    store: Store, db_path: str
) -> None:

    with sqlite3.connect(db_path) as db:  # as schema 11 wrote them: the whole env
        for i in range(2):
            db.execute(
                "INSERT INTO petitions (service, id, kind, params, priority, state, "
                "submitted, user, host, cwd, env) VALUES (?, ?, '', '{}', 0, 'QUEUED', 1.0, "
                "'u', 'h', '/', ?)",
                (SERVICE, f"old{i}", json.dumps(ENV)),
            )
    live = store.live(SERVICE)
    assert [r["env"] for r in live] == [ENV, ENV] and live[0]["env"] is live[1]["env"]
    assert all(r["env_whole"] for r in live)
    store.update_many({r["seq"]: {"env": r["env"]} for r in live}, "not saved")
    assert len(_environments(db_path)) == 1
    again = store.live(SERVICE)
    assert [r["env"] for r in again] == [ENV, ENV] and not any("env_whole" in r for r in again)


def test_clean_drops_environments_no_record_uses(store: Store, db_path: str) -> None:
    keep = store.add(_record(id="keep", env=dict(ENV)))
    gone = store.add(_record(id="gone", env={"X": "1"}, state="SUCCEEDED", ended=5.0))
    assert len(_environments(db_path)) == 2
    assert [r["seq"] for r in store.remove_finished()] == [gone]
    assert _environments(db_path) == [json.dumps(ENV, sort_keys=True, separators=(",", ":"))]
    store.add(_record(id="back", env={"X": "1"}))  # stored anew, not by a forgotten id
    assert (store.get(keep) or {})["env"] == ENV
    assert store.named("back") is not None and (store.named("back") or {})["env"] == {"X": "1"}


def _history(store: Store) -> None:
    states = ["SUCCEEDED", "QUEUED", "FAILED", "RUNNING", "CANCELLED", "SUCCEEDED", "QUEUED"]
    ends = [30.0, None, 10.0, None, 50.0, None, None]  # a SUCCEEDED without an end time
    for i, (state, ended) in enumerate(zip(states, ends, strict=True)):
        store.add(_record(id=f"p{i}", state=state, ended=ended))


def _expected(store: Store, ended: int, queued: int | None) -> tuple[list[str], int, int]:
    kept, hidden = select(store.find(columns=("seq", "id", "state", "ended")), ended=ended)
    kept, hidden_queued = first_queued(kept, queued)
    return [r["id"] for r in kept], hidden, hidden_queued


def _recent(store: Store, ended: int, queued: int | None) -> tuple[list[str], int, int]:
    rows, hidden, hidden_queued = store.recent(ended, ("seq", "id", "state", "ended"), queued)
    return [r["id"] for r in rows], hidden, hidden_queued


@pytest.mark.parametrize(("ended", "queued"), [(0, None), (1, 0), (2, 1), (20, 5)])
def test_the_default_view_is_what_select_keeps_of_every_record(
    store: Store, ended: int, queued: int | None
) -> None:
    _history(store)
    assert _recent(store, ended, queued) == _expected(store, ended, queued)
    assert _recent(store, 1, 1) == (["p1", "p3", "p4"], 3, 1)


def test_the_default_view_counts_changes_not_saved_yet(store: Store) -> None:
    _history(store)
    store.saver._start = False  # nothing is committed: the changes stay queued
    running = store.named("p3")
    assert running is not None
    store.update_later(running["seq"], state="SUCCEEDED", ended=99.0)  # just ended
    queued = store.named("p6")
    assert queued is not None
    store.update_later(queued["seq"], state="CANCELLED", ended=98.0)
    for ended, first in ((0, None), (1, 0), (3, 1)):
        assert _recent(store, ended, first) == _expected(store, ended, first)
    assert _recent(store, 1, 1) == (["p1", "p3"], 5, 0)
    store.saver.step()  # commit them: nothing is left unsaved at close


def test_the_default_view_reads_records_through_indexes(store: Store, db_path: str) -> None:
    _history(store)
    seen: list[str] = []
    store._reader.set_trace_callback(seen.append)
    store.recent(1, ("seq", "id"), 1)
    store._reader.set_trace_callback(None)
    queries = [q for q in seen if q.lstrip().startswith("SELECT")]
    assert len(queries) == 5
    with sqlite3.connect(db_path) as db:
        for query in queries:
            plan = " ".join(str(r[-1]) for r in db.execute(f"EXPLAIN QUERY PLAN {query}"))
            assert "USING" in plan and "TEMP B-TREE" not in plan, (query, plan)


def test_live_chunks_are_every_live_record_in_order(store: Store) -> None:
    records: list[dict[str, Any]] = [
        _record(id=f"p{i}", state="SUCCEEDED" if i % 3 == 0 else "QUEUED") for i in range(10)
    ]
    store.add_many(records)
    chunks = list(store.live_chunks(SERVICE, raw=("params",), size=3))
    assert all(len(chunk) <= 3 for chunk in chunks)
    flat = [r for chunk in chunks for r in chunk]
    assert [r["seq"] for r in flat] == [r["seq"] for r in store.live(SERVICE)]
    assert isinstance(flat[0]["params"], str)  # left as text, as asked
