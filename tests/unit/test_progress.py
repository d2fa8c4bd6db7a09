"""orcha.client.progress: the attached client's progress bar and plain lines."""

from __future__ import annotations

from collections.abc import Callable

from orcha.client.progress import ProgressView

#: A unit a kind may pass through from what a petition holds: rich markup, an OSC
#: sequence that sets the terminal's title, a right-to-left override.
HOSTILE = "[/bold] \x1b]0;T\x07files\u202e"


class FakeScreen:
    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.render: Callable[[int], str] | None = None
        self.notices: list[str] = []

    def live(self, render: Callable[[int], str] | None) -> None:
        self.render = render

    def notice(self, text: str) -> None:
        self.notices.append(text)


def test_the_bar_shows_a_unit_as_text_never_as_markup_or_escapes() -> None:
    screen = FakeScreen(tty=True)
    view = ProgressView("p1", screen)  # type: ignore[arg-type]
    view.update(3, 10, HOSTILE)
    assert screen.render is not None
    line = screen.render(120)
    assert "3/10 [/bold] \\x1b]0;T\\x07files\\u202e" in line
    assert "\x1b]" not in line and "\x07" not in line and "\u202e" not in line
