"""orcha.Client without a service: exit codes, argument checks, the operations' frame
handling (on a scripted session), and what importing the client loads."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from orcha.client import operations
from orcha.client.api import Client
from orcha.client.handles import _attached_code, exit_code
from orcha.client.requests import schedule_of
from orcha.errors import ExitCode, InvalidPetitionError, NoPetitionError, PetitionError


class ScriptedSession:
    """A session whose replies and later batches are given in advance."""

    def __init__(self, replies: list[Any], batches: list[list[Any]] = ()) -> None:  # type: ignore[assignment]
        self.replies = list(replies)
        self.batches = list(batches)
        self.sent: list[tuple[Any, ...]] = []

    def call(self, name: str, request: Any = None) -> Any:
        self.sent.append((name, request))
        answer = self.replies.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def get_batch(self, queue: str) -> list[Any]:
        self.sent.append(("get_batch", queue))
        return self.batches.pop(0)

    def send(self, ident: Any, method: str, *args: Any, skip: bool = False) -> None:
        self.sent.append((ident, method, *args))


@pytest.mark.parametrize(
    ("summary", "code"),
    [
        ({"state": "SUCCEEDED", "code": 0}, 0),
        ({"state": "FAILED", "code": 3}, 3),
        ({"state": "FAILED", "code": None}, 1),
        ({"state": "FAILED", "code": 124}, 124),
        ({"state": "CANCELLED", "code": None}, 207),
        ({"state": "INTERRUPTED", "code": None}, 206),
    ],
)
def test_exit_code_of_an_ended_petition(summary: dict[str, Any], code: int) -> None:
    assert exit_code(summary) == code


def test_attached_code_is_what_orcha_run_exits_with() -> None:
    assert _attached_code({"event": "end", "state": "CANCELLED", "by_client": True}) == 130
    assert _attached_code({"event": "end", "state": "CANCELLED", "by_client": False}) == 207
    assert _attached_code({"event": "detached", "message": "service stopped"}) == 206
    assert _attached_code({"event": "end", "state": "FAILED", "code": 127}) == 127


def test_submit_options_become_the_schedule() -> None:
    schedule = schedule_of(cpus=2, mem="1K", gpus=None, group="g", after="a", after_any=["b", "c"],
                         timeout="90s", retries=2, retry_delay=1.5, notify=None)  # fmt: skip
    assert schedule.to_wire() == {
        "after": ["a"], "after_any": ["b", "c"], "cpus": 2, "group": "g", "mem": 1024,
        "retries": 2, "retry_delay": 1.5, "timeout": 90.0,
    }  # fmt: skip


@pytest.mark.parametrize(
    "kwargs",
    [{"cpus": 0}, {"mem": "lots"}, {"timeout": "soon"}, {"timeout": 0}, {"group": "a b"},
     {"after": ["has space"]}],
)  # fmt: skip
def test_invalid_options_are_refused_before_anything_is_sent(kwargs: dict[str, Any]) -> None:
    # No service listens at that address: reaching it would raise NoServiceError instead.
    client = Client(address="/nonexistent/orcha.sock", key="k")
    with pytest.raises(InvalidPetitionError) as caught:
        client.submit("x", ["true"], **kwargs)
    assert caught.value.exit_code == ExitCode.REFUSED
    assert caught.value.message.startswith("invalid petition: ")


@pytest.mark.parametrize("name", ["after", "after_any", "notify"])
def test_a_request_list_given_a_number_names_the_option(name: str) -> None:
    client = Client(address="/nonexistent/orcha.sock", key="k")
    with pytest.raises(InvalidPetitionError) as refused:
        client.submit("x", ["true"], **{name: 5})
    assert refused.value.message == (
        f"invalid petition: {name!r} must be a string or a list of them, not 5"
    )
    with pytest.raises(InvalidPetitionError, match=f"invalid request: {name!r} must be"):
        client.edit("x", **{name: 5})  # refused before anything is sent


def test_submit_needs_argv_or_kind_and_params() -> None:
    client = Client(address="/nonexistent/orcha.sock", key="k")
    with pytest.raises(TypeError):
        client.submit("x")
    with pytest.raises(TypeError):
        client.submit("x", ["true"], params={"argv": ["true"]})
    with pytest.raises(InvalidPetitionError):
        client.submit("has space", ["true"])
    # One string would be run character by character ('e', 'c', 'h', 'o'...): refused.
    with pytest.raises(TypeError, match=r"argv is one string: give a list, e.g. \['echo', 'hi'\]"):
        client.submit("x", "echo hi")


@pytest.mark.parametrize(
    ("call", "words"),
    [(lambda c: c.submit("x", ["true"], env="X=1"),
      r"env must be a dict of variables to add \(e.g. \{'X': '1'\}\), not 'X=1'"),
     (lambda c: c.submit("x", ["true"], env={"X": 1}), "env must map strings to strings, but "
      "holds 'X': 1"),
     (lambda c: c.submit("x", kind="hello", params=[1, 2]),
      r"params must be a dict of the kind's parameters by name \(e.g. \{'counter': 3\}\), "
      r"not \[1, 2\]"),
     (lambda c: c.cancel(["a2"]),
      r"cancel\(\) takes one ID \(a string\), not list; for several, call "
      r"cancel_each\(\['a2'\]\)"),
     (lambda c: c.cancel_each([["a2"]]), r"ids must be an ID \(a string\) or a list of IDs "
      r"\(strings\), but holds \['a2'\] \(list\)"),
     (lambda c: c.status(5), r"ids must be an ID .* but holds 5 \(int\)")],
)  # fmt: skip
def test_misused_arguments_raise_type_errors_naming_them_before_anything_is_sent(
    call: Any, words: str
) -> None:
    # No service listens at that address: reaching it would raise NoServiceError instead.
    client = Client(address="/nonexistent/orcha.sock", key="k")
    with pytest.raises(TypeError, match=words):
        call(client)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"key": 123}, "key must be a str or None, not int"),
     ({"key": b"k"}, "key must be a str or None, not bytes"),
     ({"address": 8080}, "address must be a str or None, not int"),
     ({"timeout": "3"}, "timeout must be a number of seconds, not str")],
)  # fmt: skip
def test_a_client_of_values_of_the_wrong_type_is_refused_at_once(
    kwargs: dict[str, Any], words: str
) -> None:
    # Not an AttributeError at first use, from deep inside: a TypeError naming the value.
    with pytest.raises(TypeError, match=words):
        Client(**kwargs)


def test_a_refusal_travels_as_a_builtin_exception_naming_the_wire_error() -> None:
    from orcha.client.session import error_of

    error = error_of(RuntimeError("no_petition", "no petition has ID 'x'"))
    assert (error.exit_code, error.message) == (ExitCode.NO_PETITION, "no petition has ID 'x'")
    assert error_of(ValueError("malformed request: x")).exit_code == ExitCode.REFUSED


def test_attached_items_read_batches_and_stop_at_the_end() -> None:
    end = {"event": "end", "id": "x", "state": "SUCCEEDED", "code": 0}
    session = ScriptedSession([], [
        [("stdout", b"a"), {"event": "started", "id": "x"}], [("stderr", b"b"), end],
        [("stdout", b"never read")],
    ])  # fmt: skip
    items = list(operations.attached_items(session, "q1"))  # type: ignore[arg-type]
    assert items == [("stdout", b"a"), {"event": "started", "id": "x"}, ("stderr", b"b"), end]
    assert session.sent == [("get_batch", "q1"), ("get_batch", "q1")]


def test_wait_yields_ended_ones_first_then_as_they_end() -> None:
    session = ScriptedSession(
        [{"ended": [{"id": "a", "state": "SUCCEEDED"}], "pending": ["b"], "missing": [],
          "queue": "q"}],
        [[{"event": "ended", "id": "b", "state": "FAILED", "code": 2}]],
    )  # fmt: skip
    got = list(operations.wait(session, ["a", "b", "b"]))  # type: ignore[arg-type]
    assert [s["id"] for s in got] == ["a", "b"]
    assert session.sent == [("wait", {"ids": ["a", "b", "b"]}), ("get_batch", "q")]


def test_wait_and_watch_refuse_unknown_ids() -> None:
    session = ScriptedSession([{"ended": [], "pending": [], "missing": ["x", "y"], "queue": "q"}])
    with pytest.raises(NoPetitionError, match=r"^no petition has ID 'x', 'y'$"):
        list(operations.wait(session, ["x", "y"]))  # type: ignore[arg-type]
    session = ScriptedSession([{"missing": ["x"], "queue": "q"}])
    with pytest.raises(NoPetitionError, match=r"^no petition has ID 'x'$"):
        list(operations.watch(session, ["x"]))  # type: ignore[arg-type]


def test_watch_with_ids_ends_once_each_has_finished() -> None:
    events = [
        {"event": "state", "petition": "a", "data": {"state": "RUNNING"}},
        {"event": "finished", "petition": "a", "data": {}},
        {"event": "finished", "petition": "b", "data": {}},
    ]
    session = ScriptedSession([{"missing": [], "queue": "q"}],
                              [events[:1], events[1:], [{"never": "read"}]])  # fmt: skip
    assert list(operations.watch(session, ["a", "b"])) == events  # type: ignore[arg-type]
    assert session.sent == [("watch", {"ids": ["a", "b"]}), ("get_batch", "q"),
                            ("get_batch", "q")]  # fmt: skip


def test_refusals_of_request_reply_operations_raise_their_error() -> None:
    session = ScriptedSession([PetitionError("no petition has ID 'x'", ExitCode.NO_PETITION)])
    with pytest.raises(PetitionError) as caught:
        list(operations.logs(session, "x", None))  # type: ignore[arg-type]
    assert caught.value.exit_code == ExitCode.NO_PETITION


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; import json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    return set(json.loads(out))


def test_the_client_layer_imports_neither_cli_nor_service() -> None:
    loaded = _imported_after(
        "import orcha.client.api, orcha.client.operations, orcha.client.attach, "
        "orcha.client.handles"
    )
    wrong = sorted(m for m in loaded if m.split(".")[:2] in (["orcha", "cli"], ["orcha", "service"])
                   or m == "click")  # fmt: skip
    assert not wrong


def test_orcha_client_is_loaded_on_first_use_only() -> None:
    assert "orcha.client.api" not in _imported_after("import orcha")
    import orcha
    import orcha.client.api

    assert orcha.Client is orcha.client.api.Client
    with pytest.raises(AttributeError):
        orcha.NoSuchThing  # noqa: B018


def test_orcha_run_start_up_path_loads_no_client_api() -> None:
    loaded = _imported_after("import orcha.client.attach")
    heavy = {"typing", "click", "orcha.client.api", "orcha.client.operations"}
    assert not heavy & loaded


def test_a_session_looks_for_the_key_again_once_it_finds_a_starting_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No key file when the client looked, a service when it connected (one that was just
    starting and writing its key): the client looks again instead of saying it has none."""
    from orcha.client.session import Session
    from orcha.errors import AuthError
    from orcha.protocol import transport

    keys = iter([None, b"written-meanwhile"])
    tried: list[bytes | None] = []

    class Settings:
        address = "unix:/nowhere"

        def client_key(self) -> bytes | None:
            return next(keys)

    def connect(address: Any, key: bytes | None) -> Any:
        tried.append(key)
        if key is None:
            raise AuthError("a service listens there but this user has no key for it")
        return object()

    monkeypatch.setattr(transport, "connect", connect)
    assert isinstance(Session.open(Settings()), Session)  # type: ignore[arg-type]
    assert tried == [None, b"written-meanwhile"]
    keys = iter([None, None])  # still none: the user is told so
    with pytest.raises(AuthError):
        Session.open(Settings())  # type: ignore[arg-type]


# -- threads ---------------------------------------------------------------------------------
def test_a_second_thread_reading_one_connection_fails_at_once() -> None:
    import threading

    from orcha.client.session import Session
    from orcha.errors import ConcurrentUseError
    from orcha.protocol.wire import dumps_plain

    arrived, release = threading.Event(), threading.Event()

    class Conn:
        def recv_frame(self) -> bytes:
            arrived.set()
            assert release.wait(10)
            return dumps_plain(("#RETURN", "first"))

    session = Session(Conn())  # type: ignore[arg-type]
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(session.recv()))
    reader.start()
    try:
        assert arrived.wait(10)
        with pytest.raises(ConcurrentUseError, match="read by another thread"):
            session.recv()
    finally:
        release.set()
        reader.join(10)
    assert got == ["first"]
