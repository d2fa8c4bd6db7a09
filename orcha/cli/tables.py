"""Plain-text tables that stay aligned: widths in terminal cells, columns that shrink.

A CJK character takes two cells of a terminal, a combining accent none, so ``len()``
misaligns a table of such text. :func:`cell_width` counts cells as terminals do (East
Asian Width, the approach of wcwidth and of rich's ``cell_len``, from the standard
library's ``unicodedata``); :func:`render` pads and cuts by it, and fits a table into a
width by shortening the columns it is told may shrink (an ellipsis marks the cut).

Cheap to import (no rich): ``orcha status`` piped prints through it.
"""

from __future__ import annotations

from orcha.cli.output import paint
from orcha.text import printable as printable  # what every cell goes through

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

#: What ends a shortened cell.
ELLIPSIS = "…"


def _char_width(ch: str) -> int:
    import unicodedata  # here: a table of ASCII text (the usual one) does not need it

    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def cell_width(text: str) -> int:
    """How many terminal cells ``text`` (printable, one line) takes."""
    if text.isascii():
        return len(text)
    return sum(_char_width(ch) for ch in text)


def truncate(text: str, width: int) -> str:
    """``text`` if it fits in ``width`` cells, else its start and an ellipsis in
    exactly ``width`` cells or one fewer (a wide character is never split)."""
    if cell_width(text) <= width:
        return text
    if width <= 0:
        return ""
    room, out = width - 1, []
    for ch in text:
        w = _char_width(ch)
        if w > room:
            break
        out.append(ch)
        room -= w
    return "".join(out) + ELLIPSIS


def wrap(text: str, width: int) -> list[str]:
    """``text`` broken into lines of at most ``width`` cells, at spaces where it can
    (a word longer than a line is cut)."""
    if cell_width(text) <= width or width <= 0:
        return [text]
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if cell_width(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while cell_width(word) > width:  # a word longer than a line: cut it
            head = truncate(word, width + 1)[:-1]  # the part that fits, no ellipsis
            head = head or word[0]
            lines.append(head)
            word = word[len(head) :]
        line = word
    if line:
        lines.append(line)
    return lines


def pad(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` cells."""
    return text + " " * max(0, width - cell_width(text))


def fit(
    widths: list[int],
    width: int,
    shrink: Mapping[int, int],
    gap: int = 2,
) -> list[int]:
    """The column widths that fit ``width`` cells: ``widths`` with the columns of
    ``shrink`` (index -> the least width it may have), in that order, narrowed as far
    as needed (a table that cannot fit keeps them at their least)."""
    out = list(widths)
    excess = sum(out) + gap * (len(out) - 1) - width
    for index, least in shrink.items():
        if excess <= 0:
            break
        cut = min(excess, max(0, out[index] - least))
        out[index] -= cut
        excess -= cut
    return out


def render(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int | None = None,
    shrink: Mapping[int, int] | None = None,
    styles: Sequence[str | None] | None = None,
    color: bool = False,
    gap: int = 2,
    wrapped: Sequence[int] = (),
    overflow: Mapping[int, int] | None = None,
) -> list[str]:
    """The lines of a table: ``header`` (bold when ``color``) and ``rows``, columns
    ``gap`` cells apart and aligned by cell width, no trailing spaces. With ``width``,
    the columns of ``shrink`` (see :func:`fit`) are narrowed to fit it: their cells are
    cut short with an ellipsis, or, for the columns in ``wrapped``, continued on the
    next lines of the row. ``styles``: one style per row (see
    :func:`orcha.cli.output.paint`). ``overflow``: column index -> the most cells a
    cell of it may take and still set the column's width; a wider cell (a 500 KB
    command line) is left out of it and runs over, pushing the rest of its own row
    only (when ``width`` does not cut it)."""
    header = [printable(h) for h in header]
    table = [[printable(c) for c in row] for row in rows]
    limit = overflow or {}
    widths = [
        max([cell_width(h), *(w for r in table if (w := cell_width(r[i])) <= limit.get(i, w))])
        for i, h in enumerate(header)
    ]
    if width is not None and shrink:
        widths = fit(widths, width, shrink, gap)
    sep = " " * gap
    lines = []
    for n, row in enumerate([header, *table]):
        cells = [
            wrap(c, w) if i in wrapped else [truncate(c, w) if i not in limit else c]
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        style = "bold" if n == 0 else (styles[n - 1] if styles is not None else None)
        for k in range(max(len(c) for c in cells)):
            parts = (c[k] if k < len(c) else "" for c in cells)
            line = sep.join(pad(p, w) for p, w in zip(parts, widths, strict=True)).rstrip()
            lines.append(paint(line, style, color))
    return lines
