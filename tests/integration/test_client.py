"""orcha.Client against a real ``orcha serve``: submit and stream, codes, cancel, status,
wait, watch, and its errors."""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import cast

import pytest

import orcha
from orcha.errors import AuthError, ExitCode, NoPetitionError, NoServiceError, PetitionError
from tests.conftest import Env, Service, wait_for
from tests.integration.clients import WAIT, describe, new_id, petition_processes
from tests.integration.clients import orcha as run_orcha


@pytest.fixture
def client(env: Env, service: Service, monkeypatch: pytest.MonkeyPatch) -> Iterator[orcha.Client]:
    """A client that finds the test's service as the CLI would: from the environment."""
    for name in ("ORCHA_ADDRESS", "ORCHA_KEY", "ORCHA_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    for name in ("ORCHA_RUNTIME_DIR", "ORCHA_STATE_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(name, env.vars[name])
    with orcha.Client() as c:
        yield c


def _gate(path: Path) -> str:
    """Shell that waits until ``path`` exists (the test creates it when it has seen what
    came before)."""
    return f"while [ ! -e {path} ]; do sleep 0.01; done"


def test_submit_streams_chunks_live_in_order_and_wait_returns_the_code(
    client: orcha.Client, tmp_path: Path
) -> None:
    first, second = tmp_path / "first-seen", tmp_path / "second-seen"
    script = f"echo one; {_gate(first)}; echo two >&2; {_gate(second)}; echo three"
    handle = client.submit(new_id("live"), ["sh", "-c", script], timeout=WAIT)
    chunks = []
    for stream, data in handle.output():
        chunks.append((stream, data))
        # Each gate opens only once the chunk before it arrived: the output is live.
        if data == b"one\n":
            first.touch()
        elif data == b"two\n":
            second.touch()
    assert chunks == [("stdout", b"one\n"), ("stderr", b"two\n"), ("stdout", b"three\n")]
    assert handle.wait() == 0
    assert (handle.state, handle.code) == ("SUCCEEDED", 0)


@pytest.mark.parametrize(
    ("argv", "code"),
    [(["sh", "-c", "exit 3"], 3), (["orcha-no-such-command-x"], int(ExitCode.NOT_FOUND))],
)
def test_a_failing_command_gives_its_code(client: orcha.Client, argv: list[str], code: int) -> None:
    handle = client.submit(new_id("fail"), argv)
    assert handle.wait() == code
    assert handle.state == "FAILED"


def test_wait_without_reading_discards_the_output(client: orcha.Client) -> None:
    handle = client.submit(new_id("quiet"), ["sh", "-c", "seq 1 20000; exit 7"])
    assert handle.wait() == 7
    assert list(handle.output()) == []  # it has ended: nothing more to read


def _tree(petition_id: str, at_least: int) -> list[int]:
    assert wait_for(lambda: len(petition_processes(petition_id)) >= at_least, WAIT), describe(
        petition_processes(petition_id)
    )
    return [p.pid for p in petition_processes(petition_id)]


TREE = ["sh", "-c", "sleep 600 & sleep 600 & wait"]


def test_handle_cancel_stops_the_whole_tree_and_wait_says_130(client: orcha.Client) -> None:
    petition_id = new_id("tree")
    handle = client.submit(petition_id, TREE)
    _tree(petition_id, 3)  # sh and both sleeps
    handle.cancel()
    assert handle.wait() == int(ExitCode.INTERRUPTED)
    assert handle.state == "CANCELLED"
    assert wait_for(lambda: not petition_processes(petition_id), WAIT), describe(
        petition_processes(petition_id)
    )


def test_client_cancel_of_a_detached_petition(client: orcha.Client) -> None:
    petition_id = new_id("detached")
    handle = client.submit(petition_id, TREE, detach=True)
    _tree(petition_id, 3)
    client.cancel(petition_id, force=True)
    assert handle.wait() == int(ExitCode.CANCELLED)
    assert wait_for(lambda: not petition_processes(petition_id), WAIT)
    with pytest.raises(NoPetitionError) as caught:
        client.cancel(petition_id)
    assert caught.value.exit_code == ExitCode.NO_PETITION


def test_closing_the_client_cancels_its_attached_petitions(env: Env, service: Service) -> None:
    key = (env.state / "key").read_text().strip()
    petition_id = new_id("tied")
    with orcha.Client(address=str(env.socket), key=key) as c:
        c.submit(petition_id, TREE)
        _tree(petition_id, 3)
    assert wait_for(lambda: not petition_processes(petition_id), WAIT)
    with orcha.Client(address=str(env.socket), key=key) as c:
        assert wait_for(lambda: c.status(petition_id)[0]["state"] == "CANCELLED", WAIT)


def test_status_has_the_shape_of_status_json(client: orcha.Client, env: Env) -> None:
    ids = [new_id("s"), new_id("s")]
    client.submit(ids[0], ["true"], detach=True, priority=3, cpus=1, group="g1")
    client.submit(ids[1], ["sh", "-c", "exit 2"], detach=True, after=[ids[0]], retries=0)
    assert client.wait(ids) == {ids[0]: 0, ids[1]: 2}
    out, _ = run_orcha(env, "status", "--json")
    assert client.status_report() == json.loads(out)
    records = client.status(ids)
    assert records == [r for r in json.loads(out)["petitions"] if r["id"] in ids]
    assert records[0]["schedule"] == {"group": "g1"} and records[0]["priority"] == 3
    out, _ = run_orcha(env, "status", "--json", ids[1])
    assert client.status(ids[1]) == json.loads(out)["petitions"]
    with pytest.raises(NoPetitionError):
        client.status(["no-such-petition"])
    # Every record, a page at a time as text (the next page asked for before one is
    # handed on), as the CLI prints them and as the client lists them.
    listed = json.loads(run_orcha(env, "status", "--all", "--json")[0])["petitions"]
    assert listed == records
    assert [json.loads(t) for t in client.status_pages(text=True, page=1) if t] == records
    pages = cast("Generator[str, None, None]", client.status_pages(text=True, page=1))
    assert json.loads(next(pages)) == records[0]
    pages.close()  # left early: the page on its way is not taken for the next answer
    assert client.status(ids[1]) == records[1:]


def test_wait_on_several(client: orcha.Client) -> None:
    ids = [new_id("w"), new_id("w"), new_id("w")]
    client.submit(ids[0], ["true"], detach=True)
    client.submit(ids[1], ["sh", "-c", "exit 4"], detach=True, after=ids[0])
    client.submit(ids[2], ["true"], detach=True, after=[ids[1]])
    codes = {ids[0]: 0, ids[1]: 4, ids[2]: int(ExitCode.DEPENDENCY_FAILED)}
    assert client.wait(ids) == codes
    summaries = client.wait_summaries(ids)
    assert [summaries[i]["state"] for i in ids] == ["SUCCEEDED", "FAILED", "FAILED"]
    with pytest.raises(NoPetitionError) as caught:
        client.wait([ids[0], "no-such-petition"])
    assert caught.value.exit_code == ExitCode.NO_PETITION


def test_watch_yields_submitted_started_finished(client: orcha.Client) -> None:
    held, petition_id = new_id("held"), new_id("watched")
    client.pause(groups=["hold"])
    client.submit(held, ["true"], detach=True, group="hold")
    events = client.watch()
    first = next(events)  # the current state comes first: the watch is in place
    assert (first["event"], first["petition"], first["data"]["state"]) == ("state", held, "QUEUED")
    client.submit(petition_id, ["sh", "-c", "echo hi"], detach=True)
    seen = []
    for event in events:
        assert set(event) == {"event", "petition", "kind", "timestamp", "data"}
        if event["petition"] == petition_id:
            seen.append(event)
        if event["event"] == "finished" and event["petition"] == petition_id:
            break
    events.close()
    names = [e["event"] for e in seen]
    assert names[0] == "submitted" and "started" in names and names[-1] == "finished"
    assert seen[-1]["data"]["state"] == "SUCCEEDED" and seen[-1]["kind"] == "shell"
    # With IDs it ends once they have finished (here: already).
    assert [e["event"] for e in client.watch([petition_id])] == ["finished"]
    assert client.resume(groups=["hold"]) == {}


def test_detached_output_logs_and_follow(client: orcha.Client) -> None:
    petition_id = new_id("logs")
    handle = client.submit(petition_id, ["sh", "-c", "echo out; echo err >&2; exit 6"],
                           detach=True)  # fmt: skip
    assert b"".join(d for s, d in handle.output() if s == "stdout") == b"out\n"
    assert handle.wait() == 6
    assert sorted(client.logs(petition_id)) == [("stderr", b"err\n"), ("stdout", b"out\n")]
    following = client.follow([petition_id, "no-such-petition"])
    assert following.ids == [petition_id] and following.missing == ["no-such-petition"]
    items = list(following)
    assert items[-1][:2] == (petition_id, "end") and items[-1][2]["code"] == 6


def test_other_kinds_and_admin_operations(client: orcha.Client) -> None:
    handle = client.submit(new_id("hello"), kind="hello", params={"counter": 2})
    text = b"".join(d for _, d in handle.output())
    assert text.count(b"Hello world!") == 2 and handle.wait() == 0
    assert client.health()["healthy"] is True
    assert {"name": "g2", "max_running": 2} in [
        {"name": g["name"], "max_running": g["max_running"]} for g in client.set_group("g2", 2)
    ]
    assert "g2" in [g["name"] for g in client.groups()]
    client.state_set("shell", "k", [1, 2])
    assert client.state_get("shell", "k") == [1, 2] and client.state("shell") == {"k": [1, 2]}
    assert client.state_rm("shell", "k") is True
    kind = client.add_kind("quick", "hello", {"counter": 1, "timeout": 5})
    assert kind["name"] == "quick" and [k["name"] for k in client.kinds()] == ["quick"]
    assert client.remove_kind("quick") is True and client.kinds() == []


def test_no_service_duplicate_id_and_wrong_key(env: Env, service: Service) -> None:
    with pytest.raises(NoServiceError) as no_service:
        orcha.Client(address=str(env.root / "nothing.sock"), key="k").status()
    assert no_service.value.exit_code == ExitCode.NO_SERVICE == 200
    with pytest.raises(AuthError) as auth:
        orcha.Client(address=str(env.socket), key="wrong").status()
    assert auth.value.exit_code == ExitCode.AUTH
    key = (env.state / "key").read_text().strip()
    petition_id = new_id("dup")
    with orcha.Client(address=str(env.socket), key=key) as c:
        c.submit(petition_id, ["sleep", "600"])
        with pytest.raises(PetitionError) as duplicate:
            c.submit(petition_id, ["true"], detach=True)
        assert duplicate.value.exit_code == ExitCode.DUPLICATE
        with pytest.raises(PetitionError) as unknown:
            c.submit(new_id("k"), kind="no-such-kind", params={})
        assert unknown.value.exit_code == ExitCode.UNKNOWN


def test_threads_may_share_one_client(client: orcha.Client) -> None:
    import threading

    ended: list[tuple[bytes, int]] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(3):
                handle = client.submit(None, ["echo", f"{i} {j}"], timeout=WAIT)
                ended.append((b"".join(d for _, d in handle.output()), handle.wait()))
                for _ in range(5):  # request-reply calls, many at once from all threads
                    assert client.status([handle.id])[0]["id"] == handle.id
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stuck = sum(t.is_alive() for t in threads)
    client.close()  # a stuck thread's connection closes: it ends
    for t in threads:
        t.join(10)
    assert (stuck, errors) == (0, [])
    assert sorted(ended) == sorted((f"{i} {j}\n".encode(), 0) for i in range(8) for j in range(3))
