"""The plain data of the protocol: event frames, output frames, items, IDs and submit
requests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orcha.defaults import MAX_ID_LENGTH
from orcha.protocol import messages as m
from orcha.protocol.messages import SubmitRequest, check_id


def test_encode_decode_round_trip() -> None:
    obj = {"op": "submit", "id": "x", "n": 3, "list": [1, "é", None], "nested": {"a": True}}
    frame = m.encode(obj)
    assert isinstance(frame, bytes)
    assert b" " not in frame  # compact separators
    assert m.decode(frame) == obj


@pytest.mark.parametrize("frame", [b"[1, 2]", b'"text"', b"3", b"null"])
def test_decode_non_object_raises_value_error(frame: bytes) -> None:
    with pytest.raises(ValueError):
        m.decode(frame)


def test_decode_bad_json_raises_value_error() -> None:
    with pytest.raises(ValueError):
        m.decode(b"{not json")


def test_tags_are_distinct_bytes_and_not_json() -> None:
    tags = [m.STDOUT, m.STDERR, ord("{")]
    assert len(set(tags)) == 3
    assert all(isinstance(t, int) and 0 <= t < 256 for t in tags)
    assert m.STREAM_NAMES == {m.STDOUT: "stdout", m.STDERR: "stderr"}


def test_item_turns_pushed_frames_into_plain_data() -> None:
    assert m.item(m.output_frame(m.STDERR, 3, b"x\n")) == ("stderr", 3, b"x\n")
    assert m.item(m.encode({"event": "end", "id": "a"})) == {"event": "end", "id": "a"}


@pytest.mark.parametrize("tag", [m.STDOUT, m.STDERR])
@pytest.mark.parametrize("handle", [0, 1, 65536, 2**32 - 1])
@pytest.mark.parametrize("data", [b"", b"hello\n", bytes(range(256))])
def test_output_frame_round_trip(tag: int, handle: int, data: bytes) -> None:
    frame = m.output_frame(tag, handle, data)
    assert len(frame) == 5 + len(data)
    assert frame[0] == tag
    got_tag, got_handle, got_data = m.split_output(frame)
    assert (got_tag, got_handle, bytes(got_data)) == (tag, handle, data)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (42, "42"),
        (-7, "-7"),
        ("job-1", "job-1"),
        ("a.b_c:d-é", "a.b_c:d-é"),
        ("x" * MAX_ID_LENGTH, "x" * MAX_ID_LENGTH),
    ],
)
def test_check_id_accepts(value: object, text: str) -> None:
    assert check_id(value) == text


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "a b",
        "tab\there",
        "new\nline",
        "\x00nul",
        "bell\x07",
        "esc\x1b[31m",
        "nbsp\u00a0x",
        "x" * (MAX_ID_LENGTH + 1),
        None,
        True,
        False,
        1.5,
        b"bytes",
        ["l"],
    ],
)
def test_check_id_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        check_id(value)


def test_check_id_message_names_the_problem() -> None:
    with pytest.raises(ValueError, match="longer than 128"):
        check_id("y" * 129)
    with pytest.raises(ValueError, match="non-empty"):
        check_id("")
    with pytest.raises(ValueError, match="whitespace or control"):
        check_id("a\tb")
    # a byte that is not UTF-8 (Python's surrogate) is said so, and shown as the byte
    with pytest.raises(ValueError, match=r"^the petition ID 'id\\xff' is not valid UTF-8"):
        check_id("id\udcff")


def _wire(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kind": "hello",
        "id": "p1",
        "params": {"counter": 2},
        "priority": 3,
        "cwd": "/home/u",
        "env": {"PATH": "/bin"},
        "attach": False,
        "user": "ana",
        "host": "box",
        "schedule": {"cpus": 2, "mem": 1 << 30, "group": "gpu", "after": ["a", "b"],
                     "timeout": 90.0, "retries": 2},
        "stdin": False,
    }  # fmt: skip
    base.update(changes)
    return {k: v for k, v in base.items() if v is not _MISSING}


_MISSING = object()


def test_submit_from_wire_and_to_wire_round_trip() -> None:
    req = SubmitRequest.from_wire(_wire())
    assert (req.kind, req.id, req.params, req.priority, req.cwd, req.env) == (
        "hello",
        "p1",
        {"counter": 2},
        3,
        "/home/u",
        {"PATH": "/bin"},
    )
    assert (req.schedule.cpus, req.schedule.after, req.schedule.retry_delay) == (2, ("a", "b"), 0)
    wire = req.to_wire()
    assert wire == _wire()
    assert m.decode(m.encode(wire)) == wire  # plain JSON data
    again = SubmitRequest.from_wire(json.loads(json.dumps(wire)))
    assert again.to_wire() == wire


def test_submit_defaults() -> None:
    req = SubmitRequest.from_wire({"kind": "shell", "id": 5})
    assert req.id == "5"
    assert req.params == {}
    assert req.priority is None
    assert req.cwd == "/"
    assert req.env == {}
    assert req.to_wire() == {
        "kind": "shell",
        "id": "5",
        "params": {},
        "priority": None,
        "cwd": "/",
        "env": {},
        "attach": True,
        "user": "",
        "host": "",
        "schedule": {},
        "stdin": False,
    }


def test_submit_stdin_only_when_attached() -> None:
    assert SubmitRequest.from_wire(_wire(attach=True, stdin=True)).stdin is True
    with pytest.raises(ValueError, match="'stdin'"):
        SubmitRequest.from_wire(_wire(attach=False, stdin=True))
    with pytest.raises(ValueError, match="'stdin'"):
        SubmitRequest.from_wire(_wire(attach=True, stdin="yes"))


def test_stdin_request_checks_its_fields() -> None:
    from orcha.protocol.messages import StdinRequest

    assert StdinRequest.from_wire({"handle": 2, "data": b"x", "eof": True}) == StdinRequest(
        2, b"x", True
    )
    assert StdinRequest.from_wire({"handle": 1}) == StdinRequest(1, b"", False)
    for bad in ({"handle": "1"}, {"handle": True}, {"handle": 1, "data": "text"},
                {"handle": 1, "eof": 1}):  # fmt: skip
        with pytest.raises(ValueError):
            StdinRequest.from_wire(bad)


def test_submit_rejects_a_bad_schedule() -> None:
    with pytest.raises(ValueError, match="'cpus' must be an integer from 1"):
        SubmitRequest.from_wire(_wire(schedule={"cpus": 0}))
    with pytest.raises(ValueError, match="unknown schedule field"):
        SubmitRequest.from_wire(_wire(schedule={"nice": 5}))


def test_submit_negative_priority_accepted() -> None:
    assert SubmitRequest.from_wire(_wire(priority=-5)).priority == -5


def test_submit_priority_is_bounded() -> None:
    from orcha.defaults import MAX_PRIORITY

    for edge in (MAX_PRIORITY, -MAX_PRIORITY):
        assert SubmitRequest.from_wire(_wire(priority=edge)).priority == edge
    for beyond in (MAX_PRIORITY + 1, -MAX_PRIORITY - 1, 2**63, -(2**70)):
        with pytest.raises(ValueError, match="'priority' must be between"):
            SubmitRequest.from_wire(_wire(priority=beyond))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kind": _MISSING}, "kind"),
        ({"kind": ""}, "kind"),
        ({"kind": 3}, "kind"),
        ({"kind": ["hello"]}, "kind"),
        ({"params": [1]}, "params"),
        ({"params": "x"}, "params"),
        ({"priority": True}, "priority"),
        ({"priority": "1"}, "priority"),
        ({"priority": 1.0}, "priority"),
        ({"cwd": "relative/dir"}, "cwd"),
        ({"cwd": ""}, "cwd"),
        ({"cwd": None}, "cwd"),
        ({"env": {"A": 1}}, "env"),
        ({"env": {"A": None}}, "env"),
        ({"env": ["A=1"]}, "env"),
    ],
)
def test_submit_from_wire_rejects_bad_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError) as info:
        SubmitRequest.from_wire(_wire(**changes))
    assert repr(field) in str(info.value)


@pytest.mark.parametrize("bad_id", ["", "a b", "x" * 129, True])
def test_submit_from_wire_rejects_bad_id(bad_id: object) -> None:
    with pytest.raises(ValueError):
        SubmitRequest.from_wire(_wire(id=bad_id))


@pytest.mark.parametrize("no_id", [_MISSING, None])
def test_submit_without_an_id_leaves_it_to_the_service(no_id: object) -> None:
    assert SubmitRequest.from_wire(_wire(id=no_id)).id is None


def test_submit_attach_user_host_default_and_types() -> None:
    req = SubmitRequest.from_wire(_wire(attach=_MISSING, user=_MISSING, host=_MISSING))
    assert (req.attach, req.user, req.host) == (True, "", "")
    req = SubmitRequest.from_wire(_wire())
    assert (req.attach, req.user, req.host) == (False, "ana", "box")
    with pytest.raises(ValueError, match="'attach'"):
        SubmitRequest.from_wire(_wire(attach="yes"))
    with pytest.raises(ValueError, match="'user' and 'host'"):
        SubmitRequest.from_wire(_wire(user=1))
