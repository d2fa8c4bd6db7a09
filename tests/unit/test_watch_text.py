"""``orcha watch`` as text: every event reads in words, no line ends in spaces."""

from __future__ import annotations

import time

from orcha.cli.watch_text import watch_lines


def _lines(event: str, **data: object) -> list[str]:
    lines = watch_lines({"event": event, "petition": "p1", "timestamp": time.time(),
                         "data": data})  # fmt: skip
    assert all(line == line.rstrip() for line in lines), lines
    return [line.split(" ", 1)[1] for line in lines]  # without the time


def test_progress_shows_its_amount() -> None:
    assert _lines("progress", value=3, target=10, unit="files") == ["p1 progress 3/10 files"]
    assert _lines("progress", value=2.5, target=None, unit="") == ["p1 progress 2.5"]
    assert _lines("progress", value=None, target=None, unit="") == ["p1 progress working"]


def test_events_without_detail_have_no_trailing_space() -> None:
    assert _lines("started") == ["p1 started"]
    assert _lines("resumed") == ["p1 resumed"]
    assert _lines("submitted", priority=-2) == ["p1 submitted priority -2"]
    assert _lines("attempt", attempt=2) == ["p1 attempt attempt 2"]
    assert _lines("state", state="QUEUED", priority=0) == ["p1 state QUEUED"]


def test_finished_says_how_and_why() -> None:
    assert _lines("finished", state="SUCCEEDED", code=0, message=None) == [
        "p1 finished SUCCEEDED (code 0)"
    ]
    assert _lines("finished", state="FAILED", code=124, message="timed out after 1s") == [
        "p1 finished FAILED (code 124): timed out after 1s"
    ]
    # Cancelled before it started: no code, and no "None" said for one.
    assert _lines("finished", state="CANCELLED", code=None, message="cancelled") == [
        "p1 finished CANCELLED: cancelled"
    ]


def test_output_is_one_line_per_line_and_stderr_is_marked() -> None:
    assert _lines("output", stream="stdout", text="a\nb  \n") == ["p1 output a", "p1 output b"]
    assert _lines("output", stream="stderr", text="oops\n") == ["p1 output stderr: oops"]
    assert _lines("output", stream="stdout", text="\n") == ["p1 output"]


def test_a_kinds_own_event_shows_its_data() -> None:
    assert _lines("hello.greeted", n=1, who="x") == ['p1 hello.greeted {"n":1,"who":"x"}']
    assert _lines("hello.ping") == ["p1 hello.ping"]


def test_a_message_is_shown_escaped_never_sent_to_the_terminal() -> None:
    # The message may hold the petition's argv (command not found: ...): its escape
    # sequences are shown as 'orcha status' shows them, not sent to the terminal.
    assert _lines("finished", state="FAILED", code=127,
                  message="command not found: \x1b]0;T\x07red\u202e") == [
        "p1 finished FAILED (code 127): command not found: \\x1b]0;T\\x07red\\u202e"
    ]  # fmt: skip
