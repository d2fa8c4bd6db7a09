"""``orcha status`` shows child petitions under their parents (orcha.cli.status_view.ordered)."""

from __future__ import annotations

from typing import Any

from orcha.cli.status_view import ordered as _tree


def row(seq: int, pid: str, parent: str | None = None) -> dict[str, Any]:
    return {"seq": seq, "id": pid, "parent": parent}


def test_without_children_the_order_and_ids_are_unchanged() -> None:
    rows = [row(1, "b"), row(2, "a"), row(3, "c")]
    assert _tree(rows) == [(r["id"], r) for r in rows]


def test_children_go_under_their_parent_indented() -> None:
    rows = [
        row(1, "p"), row(2, "other"), row(3, "p.1", "p"), row(4, "p.2", "p"),
        row(5, "p.1.1", "p.1"), row(6, "late"),
    ]  # fmt: skip
    assert [cell for cell, _ in _tree(rows)] == [
        "p", "└ p.1", "  └ p.1.1", "└ p.2", "other", "late",
    ]  # fmt: skip


def test_a_child_whose_parent_is_not_shown_is_shown_as_is() -> None:
    rows = [row(3, "p.1", "p"), row(4, "x")]
    assert [cell for cell, _ in _tree(rows)] == ["p.1", "x"]


def test_a_reused_parent_id_takes_only_the_children_that_came_after_it() -> None:
    rows = [row(1, "p"), row(2, "p.1", "p"), row(3, "p"), row(4, "p.1", "p")]
    cells = [(cell, r["seq"]) for cell, r in _tree(rows)]
    assert cells == [("p", 1), ("└ p.1", 2), ("p", 3), ("└ p.1", 4)]


def test_the_detail_view_shows_requests_as_the_options_that_ask_for_them() -> None:
    import time

    from orcha.cli.status_view import detail

    begin = time.mktime((2026, 12, 24, 14, 30, 0, 0, 0, -1))
    record = {"id": "a", "state": "QUEUED", "priority": 0,
              "schedule": {"begin": begin, "timeout": 90, "cpus": 2}}  # fmt: skip
    requests = dict(detail(record, ""))["Requests"]
    assert requests == "--at 2026-12-24T14:30:00 --timeout 1m30s --cpus 2"


def test_requests_below_a_second_and_between_seconds_read_as_typed_again() -> None:
    import time

    from orcha.cli.status_view import detail
    from orcha.units import parse_duration

    # --at 1.6 s into a minute shows the rounded second the note's "starts at" shows.
    begin = time.mktime((2026, 12, 24, 14, 30, 0, 0, 0, -1)) + 0.6
    record = {"id": "a", "state": "QUEUED", "priority": 0,
              "schedule": {"begin": begin, "timeout": 0.001, "delay": 0.25}}  # fmt: skip
    requests = dict(detail(record, ""))["Requests"]
    assert requests == "--at 2026-12-24T14:30:01 --timeout 0.001s --delay 0.25s"
    assert parse_duration("0.001s") == 0.001 and parse_duration("0.25s") == 0.25
