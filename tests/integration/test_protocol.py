"""The one protocol on the socket: ``multiprocessing.managers`` with the operations as
typeids, for plain ``BaseManager`` programs and for orcha's own lean client."""

from __future__ import annotations

import gc
import os
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any

import pytest

from orcha import settings as orcha_settings
from orcha.client.session import Session
from orcha.errors import PetitionError
from orcha.protocol.managed import OPERATION_TYPEIDS
from orcha.protocol.operations import OPERATIONS
from orcha.protocol.transport import set_recv_timeout
from tests.conftest import Env, Service, wait_for

WAIT = 30.0


class Plain(BaseManager):
    """A client that knows nothing of orcha but the typeids."""


for _typeid in OPERATION_TYPEIDS:
    Plain.register(_typeid)


def key_of(env: Env) -> bytes:
    return (env.state / "key").read_bytes().strip()


def plain(env: Env) -> Any:
    manager = Plain(address=str(env.socket), authkey=key_of(env))
    manager.connect()
    return manager


def lean(env: Env) -> Session:
    settings = orcha_settings.resolve(address=str(env.socket), key=key_of(env).decode())
    session = Session.open(settings)
    set_recv_timeout(session.fileno(), WAIT)  # a read past it raises: the test fails
    return session


def served_objects(env: Env) -> int:
    session = lean(env)
    try:
        count: int = session.call("info")["served_objects"]
        return count
    finally:
        session.close()


def shell(petition_id: str, *argv: str, attach: bool = True) -> dict[str, Any]:
    return {"kind": "shell", "id": petition_id, "params": {"argv": list(argv)}, "cwd": "/",
            "env": {"PATH": os.environ["PATH"]}, "attach": attach}  # fmt: skip


def read_to_end(stream: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The output of a petition's stream by stream name, and its end item."""
    output = {"stdout": b"", "stderr": b""}
    while True:
        for item in stream.get_batch():
            if isinstance(item, tuple):
                output[item[0]] += item[1]
            elif item["event"] == "end":
                return output, item


def test_every_typeid_is_served_and_every_operation_answers_through_create(
    env: Env, service: Service
) -> None:
    assert set(OPERATION_TYPEIDS) == {*OPERATIONS, "finish"}
    manager = plain(env)
    before = served_objects(env)
    run = manager.submit(shell("p1", "sh", "-c", "printf 'a\\0b'; printf err >&2; exit 4"))
    assert run.value()["id"] == "p1"
    output, end = read_to_end(run)
    assert output == {"stdout": b"a\0b", "stderr": b"err"}
    assert (end["state"], end["code"]) == ("FAILED", 4)
    detached = manager.submit(shell("p2", "true", attach=False)).value()
    assert set(detached) == {"id", "state"}
    waiting = manager.wait({"ids": ["p1", "p2"]})
    ended = {s["id"] for s in waiting.value()["ended"]}
    while ended != {"p1", "p2"}:
        ended |= {i["id"] for i in waiting.get_batch() if i.get("event") == "ended"}
    replies = {
        "status": manager.status({"ids": ["p1"]}).value()["petitions"][0]["state"],
        "logs": sorted(manager.logs({"id": "p1"}).value()["output"]),
        "health": manager.health({}).value()["healthy"],
        "info": manager.info({}).value()["queued"],
        "group": [g["name"] for g in manager.group({}).value()["groups"]],
        "pause": manager.pause({"all": True}).value()["results"],
        "resume": manager.resume({"all": True}).value()["results"],
        "kinds": manager.kinds({}).value()["kinds"],
        "clean": manager.clean({"older_than": 3600}).value()["removed"],
    }
    assert replies == {
        "status": "FAILED", "logs": [("stderr", b"err"), ("stdout", b"a\0b")],
        "health": True, "info": 0, "group": ["default"], "pause": {}, "resume": {}, "kinds": [],
        "clean": 0,
    }  # fmt: skip
    follow = manager.follow({"ids": ["p1"]})
    assert follow.value()["handles"] == {"p1": 1}
    items: list[Any] = []
    while not any(isinstance(i, dict) and i.get("event") == "end" for i in items):
        items += follow.get_batch()
    assert sorted(i for i in items if isinstance(i, tuple)) == [
        ("stderr", 1, b"err"), ("stdout", 1, b"a\0b"),
    ]  # fmt: skip
    watch = manager.watch({"ids": ["p1"]})
    assert watch.value()["missing"] == []
    assert watch.get_batch()[0]["event"] == "finished"
    with pytest.raises(RuntimeError) as refused:
        manager.submit(shell("p3", "true") | {"kind": "no-such-kind"})
    assert refused.value.args[0] == "unknown"
    with pytest.raises(RuntimeError) as refused:
        manager.state({"action": "ls", "plugin": "nope"})
    assert refused.value.args[0] == "unknown"
    sleeper = manager.submit(shell("p4", "sleep", "60"))
    assert manager.cancel({"ids": ["p4"]}).value()["results"] == {"p4": "cancelled"}
    assert read_to_end(sleeper)[1]["state"] == "CANCELLED"
    # Released proxies release what the service served for them.
    del run, waiting, follow, watch, sleeper
    gc.collect()
    assert wait_for(lambda: served_objects(env) == before, WAIT)


def test_a_cancel_is_carried_out_while_a_batch_waits_on_the_same_connection(
    env: Env, service: Service
) -> None:
    session = lean(env)
    try:
        queue = session.call("submit", shell("c1", "sh", "-c", "echo up; exec sleep 60"))["queue"]
        items: list[Any] = []
        while ("stdout", b"up\n") not in items:
            items += session.get_batch(queue)
        session.send(queue, "get_batch")  # waits: the petition writes nothing more
        session.send(None, "call", "cancel", {"id": "c1"})  # carried out meanwhile
        batch = session.recv()  # the end, which only the cancel brings
        reply = session.recv()  # then the cancel's own answer, in request order
    finally:
        session.close()
    end = batch[-1]
    assert (end["event"], end["state"], end["by_client"], end["code"]) == (
        "end", "CANCELLED", True, 130,
    )  # fmt: skip
    assert reply == {"id": "c1"}


def test_a_refusal_leaves_the_connection_serving(env: Env, service: Service) -> None:
    session = lean(env)
    try:
        with pytest.raises(PetitionError) as refused:
            session.call("submit", shell("bad id", "true"))
        assert refused.value.exit_code == 204
        assert session.call("info")["queued"] == 0
    finally:
        session.close()


def test_many_attached_petitions_pipelined_on_one_connection_all_end(
    env: Env, service: Service
) -> None:
    """As a pipelining client pushes them: up to 64 requests in flight, each submit's answer
    followed by batched reads of its stream until its end. Batches wait on one stream
    after another (an ended stream's descriptor is closed and its number reused by the
    next stream's): every end arrives."""
    session = lean(env)
    n, sent, ends = 300, 0, 0
    asked: list[str | None] = []  # per request in flight: None (submit) or its queue
    try:
        while ends < n:
            while sent < n and len(asked) < 64:
                session.send(None, "call", "submit", shell(f"m{sent}", "true"))
                asked.append(None)
                sent += 1
            queue, value = asked.pop(0), session.recv()
            if queue is None:
                queue = value["queue"]
            elif value and value[-1].get("event") == "end":
                ends += 1
                continue
            session.send(queue, "get_batch")
            asked.append(queue)
    finally:
        session.close()
    assert ends == n


def test_a_batch_waits_on_a_new_stream_right_after_another_ended(
    env: Env, service: Service, tmp_path: Path
) -> None:
    """Batches of two streams in flight: when the first stream ends its descriptor is
    closed, and the second's, made next, often gets its number: the connection must still
    wake for the second."""
    session = lean(env)
    try:
        queues = {}
        for name in ("a", "b"):
            gate = tmp_path / name
            argv = ["sh", "-c", f'while [ ! -e "{gate}" ]; do sleep 0.05; done']
            queues[name] = session.call("submit", shell(name, *argv))["queue"]
        assert wait_for(lambda: running(env) == {"a", "b"}, WAIT)
        for name in ("a", "b"):  # both have started: these answer at once
            assert session.get_batch(queues[name]) == [{"event": "started", "id": name}]
        session.send(queues["a"], "get_batch")  # waits on a's descriptor
        session.send(queues["b"], "get_batch")  # then on b's
        (tmp_path / "a").touch()
        assert session.recv()[-1]["state"] == "SUCCEEDED"
        (tmp_path / "b").touch()
        assert session.recv()[-1]["state"] == "SUCCEEDED"  # past WAIT it raises
    finally:
        session.close()


def running(env: Env) -> set[str]:
    session = lean(env)
    try:
        records = session.call("status", {"ids": [], "states": ["RUNNING"]})["petitions"]
        return {r["id"] for r in records}
    finally:
        session.close()
