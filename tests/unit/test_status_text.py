"""orcha.cli.status_text: the status table as a pipe gets it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from orcha.cli import status_text
from orcha.units import clock_time
from tests.unit.test_cli_fast_status import record


def _piped(rows: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    status_text.print_table(rows, "submitted", lambda text, err: lines.append(text))
    return lines


def test_piped_one_long_command_does_not_pad_the_other_rows() -> None:
    # Piped, a command is never cut; but a 500 KB argv must not make every other row
    # (and the header) 500 KB wide by pushing NOTE out to its end.
    big = "b" * 100_000
    rows = [
        record(1, "long", "SUCCEEDED", params={"argv": ["sh", "-c", "echo ok", big, big]}),
        record(2, "h1", "QUEUED", params={"argv": ["echo", "held"]}, waiting="held (--hold)"),
        record(3, "ok", "SUCCEEDED"),
    ]
    header, long, held, ok = _piped(rows)
    assert len(header) < 200 and len(held) < 200 and len(ok) < 200
    assert held.split()[0] == "h1" and held.endswith("held (--hold)")
    assert f"'echo ok' {big} {big}" in long  # whole, as a pipe gets it
    # The short rows stay aligned with the header.
    assert held.index("echo held") == ok.index("sh -c") == header.index("COMMAND")
    assert held.index("held (--hold)") == header.index("NOTE")


def test_piped_commands_that_fit_are_aligned_as_before() -> None:
    rows = [record(1, "a", "SUCCEEDED"), record(2, "b", "FAILED", message="exited with code 1")]
    header, a, b = _piped(rows)
    assert a.index("sh -c") == b.index("sh -c") == header.index("COMMAND")
    assert b.index("exited") == header.index("NOTE")


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process in New York's time zone (the service's words were in UTC)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


#: 2026-12-06 13:00 UTC: 08:00 in New York, where the user typed '--at 2026-12-06T08:00'.
BEGIN = 1_796_562_000.0


def test_the_start_time_is_said_in_this_clients_time_zone(new_york: None) -> None:
    row = record(1, "tz1", "QUEUED", schedule={"begin": BEGIN},
                 waiting="starts at 2026-12-06 13:00")  # fmt: skip
    note = status_text.note(row)
    assert note == f"starts at {clock_time(BEGIN, time.time())}"
    assert "08:00" in note and "13:00" not in note
    # Another reason (held first) is the service's, word for word.
    row = record(2, "h", "QUEUED", schedule={"begin": BEGIN, "hold": True},
                 waiting="held ('orcha release h')")  # fmt: skip
    assert status_text.note(row) == "held ('orcha release h')"
