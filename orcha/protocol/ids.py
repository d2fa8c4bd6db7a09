"""Petition IDs: what makes one valid (shared by requests and schedules)."""

from __future__ import annotations


def check_id(petition_id: object) -> str:
    """A valid petition ID as text; ValueError saying what is wrong otherwise.

    IDs are 1-128 printable characters without whitespace, so they are safe to print,
    to pass as arguments and to use in file names.
    """
    from orcha.defaults import MAX_ID_LENGTH

    if isinstance(petition_id, int) and not isinstance(petition_id, bool):
        petition_id = str(petition_id)
    if not isinstance(petition_id, str) or not petition_id:
        raise ValueError("the petition ID must be a non-empty string")
    if len(petition_id) > MAX_ID_LENGTH:
        raise ValueError(f"the petition ID is longer than {MAX_ID_LENGTH} characters")
    if not petition_id.isprintable() or any(c.isspace() for c in petition_id):
        raise ValueError(f"the petition ID {petition_id!r} has whitespace or control characters")
    return petition_id
