"""orcha.cli.status_text: the status table as a pipe gets it."""

from __future__ import annotations

from typing import Any

from orcha.cli import status_text
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
