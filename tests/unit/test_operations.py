"""The operations table: each operation declared once, its requests checked there."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

import orcha.protocol.operations as operations_module
from orcha.errors import WIRE_ERRORS
from orcha.protocol.change_requests import EditRequest
from orcha.protocol.operations import OPERATIONS
from orcha.protocol.requests import (
    CancelRequest,
    GroupRequest,
    KindsRequest,
    PauseRequest,
    ShutdownRequest,
    StateRequest,
)


def test_every_operation_has_one_handler_one_client_function_and_one_typeid() -> None:
    import inspect

    from orcha.client import operations as client_operations
    from orcha.protocol.managed import QueueManager
    from orcha.service.handlers import HANDLERS, MODULES

    # One handler each: the handler modules together declare each name exactly once.
    declared = [name for module in MODULES for name in module.HANDLERS]
    assert sorted(declared) == sorted({op.handler for op in OPERATIONS.values()})
    assert set(HANDLERS) == set(OPERATIONS)
    # One client function each, in orcha.client.operations, named by the table.
    functions = {name for name, f in inspect.getmembers(client_operations, inspect.isfunction)
                 if f.__module__ == client_operations.__name__}  # fmt: skip
    assert {op.client for op in OPERATIONS.values()} <= functions
    assert len({op.client for op in OPERATIONS.values()}) == len(OPERATIONS)
    # One typeid each, besides the original API's Queue and finish.
    registry = QueueManager._registry  # type: ignore[attr-defined]
    assert set(registry) == {*OPERATIONS, "Queue", "finish"}


def test_the_streaming_operations_name_their_queue() -> None:
    streaming = {name for name, op in OPERATIONS.items() if op.stream}
    assert streaming == {"submit", "wait", "follow", "watch"}
    for name in streaming:
        assert "queue" in OPERATIONS[name].reply


def test_every_declared_error_is_a_wire_error() -> None:
    for op in OPERATIONS.values():
        assert "refused" in op.errors, op
        assert set(op.errors) <= set(WIRE_ERRORS), op


def test_the_table_imports_neither_the_service_nor_the_client() -> None:
    tree = ast.parse(Path(operations_module.__file__).read_text())
    imported = {
        node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    } | {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
         for alias in node.names}  # fmt: skip
    assert not {m for m in imported if m.startswith(("orcha.service", "orcha.client"))}


@pytest.mark.parametrize(
    ("op", "body", "parsed"),
    [
        ("cancel", {"ids": ["a"], "force": True}, CancelRequest(["a"], force=True)),
        ("cancel", {"id": 7}, CancelRequest(None, 7)),
        ("group", {}, GroupRequest(None)),
        ("group", {"name": "g", "max_running": None}, GroupRequest("g", None)),
        ("pause", {"groups": ["g"], "running": True}, PauseRequest([], ["g"], False, True)),
        ("state", {"action": "ls", "plugin": "p"}, StateRequest("ls", "p")),
        ("state", {"action": "set", "plugin": "p", "key": "k", "value": [1]},
         StateRequest("set", "p", "k", [1])),
        ("kinds", {}, KindsRequest("ls")),
        ("kinds", {"action": "add", "name": "n", "from": "shell", "set": {"a": 1}},
         KindsRequest("add", "n", "shell", {"a": 1})),
        ("shutdown", {}, ShutdownRequest(force=False)),
        ("shutdown", {"force": True}, ShutdownRequest(force=True)),
        ("edit", {"id": "a", "priority": 3}, EditRequest("a", 3, {})),
    ],
)  # fmt: skip
def test_valid_requests_parse(op: str, body: dict[str, Any], parsed: object) -> None:
    assert OPERATIONS[op].parse(body) == parsed


@pytest.mark.parametrize(
    ("op", "body", "message"),
    [
        ("cancel", {"ids": []}, "name petition IDs, groups, states, or all"),
        ("cancel", {"states": ["FAILED"]},
         "only QUEUED and RUNNING petitions can be cancelled or signalled"),
        ("cancel", {"all": True, "signal": 99}, "'signal' must be a signal number from 1 to 64"),
        ("clean", {"states": ["RUNNING"]}, "only ended petitions are cleaned: SUCCEEDED, "
                                           "FAILED, CANCELLED or INTERRUPTED"),
        ("follow", {"ids": ["a"], "lines": -1}, "invalid request: 'lines' must be a whole "
                                                "number >= 0"),
        ("status", {"states": [1]}, "'ids', 'states' and 'groups' must be lists of strings"),
        ("clean", {"older_than": -1}, "'older_than' must be a number of seconds >= 0"),
        ("clean", {"older_than": True}, "'older_than' must be a number of seconds >= 0"),
        ("wait", {"ids": "a"}, "invalid request: 'ids' must be a list of strings"),
        ("logs", {"id": "a", "tail": -1}, "invalid request: 'tail' must be a whole number >= 0"),
        ("group", {"name": "a b"}, "invalid request: group name 'a b' must be 1-64 letters, "
                                   "digits, '-', '_' or '.'"),
        ("pause", {}, "invalid request: name petition IDs, groups, or all"),
        ("state", {"action": "get", "plugin": "p"},
         "invalid request: a state key must be a non-empty string"),
        ("kinds", {"action": "zap"}, "invalid request: 'name' must be a kind name"),
        ("kinds", {"action": "zap", "name": "n"},
         "invalid request: 'action' must be ls, add or rm"),
        ("submit", {"kind": "", "id": "a"}, "invalid petition: 'kind' must be a non-empty string"),
        ("shutdown", {"force": "yes"}, "invalid request: 'force' must be true or false"),
        ("release", {"ids": []}, "invalid request: 'ids' must be a non-empty list of strings"),
    ],
)  # fmt: skip
def test_invalid_requests_are_refused_with_their_words(
    op: str, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        OPERATIONS[op].parse(body)
    assert str(caught.value) == message
