"""Petition IDs: what makes one valid (shared by requests and schedules), and what makes
a name one a new petition may take (see :mod:`orcha.service.references`)."""

from __future__ import annotations

from orcha.text import is_utf8, quoted


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
    if not is_utf8(petition_id):  # a byte that is not UTF-8, as Python reads it
        raise ValueError(
            f"the petition ID {quoted(petition_id)} is not valid UTF-8; choose a name in UTF-8"
        )
    if not petition_id.isprintable() or any(c.isspace() for c in petition_id):
        raise ValueError(f"the petition ID {petition_id!r} has whitespace or control characters")
    return petition_id


def is_number(ref: str) -> bool:
    """Whether ``ref`` is a record number (ASCII digits only)."""
    return ref.isascii() and ref.isdigit()


def split(ref: str) -> tuple[str, int] | None:
    """``(NAME, N)`` for ``NAME~N`` (``(ref, 0)`` for a plain name); None for a record
    number."""
    if is_number(ref):
        return None
    name, tilde, back = ref.rpartition("~")
    if tilde and name and is_number(back):
        return name, int(back)
    return ref, 0


def check_name(name: str) -> str:
    """``name`` if a new petition may take it; ValueError saying why not otherwise (all
    digits: a number means a record number; ending in ``~N``: ``NAME~N`` is the N-th
    older NAME; a comma: it separates the IDs of ``--after``)."""
    if is_number(name):
        raise ValueError(
            f"the petition ID {name!r} is a number, and numbers name records; leave the "
            "ID out to get a number, or choose a name with a letter in it"
        )
    before, tilde, back = name.rpartition("~")
    if tilde and is_number(back):
        older = f" of {before!r}" if before else ""
        raise ValueError(
            f"the petition ID {name!r} ends in '~' and a number, which names an older "
            f"record{older}; choose another name"
        )
    if "," in name:
        raise ValueError(
            f"the petition ID {name!r} has a comma, which separates the IDs of --after; "
            "choose another name"
        )
    return name
