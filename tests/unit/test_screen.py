"""Screen: the live line (progress bar, queued notice) never shares a line with output."""

from __future__ import annotations

import pytest

from orcha.client.screen import Screen

ERASE, HIDE, SHOW = "\r\x1b[K", "\x1b[?25l", "\x1b[?25h"


def _screen() -> Screen:
    # Under capfd, fds 1 and 2 are files: stderr is taken for the terminal, stdout not.
    return Screen(tty=True, width=lambda: 40)


def test_output_erases_the_live_line_and_it_comes_back_below(
    capfd: pytest.CaptureFixture[str],
) -> None:
    screen = _screen()
    screen.live(lambda width: f"bar {width}")
    screen.output(2, b"one\n")
    screen.output(1, b"to a file\n")  # not the terminal: the live line stays as it is
    screen.close()
    out, err = capfd.readouterr()
    assert out == "to a file\n"
    assert err == f"{HIDE}\rbar 39\x1b[K{ERASE}one\n\rbar 39\x1b[K{ERASE}{SHOW}"


def test_an_open_line_keeps_the_live_line_away_until_it_ends(
    capfd: pytest.CaptureFixture[str],
) -> None:
    screen = _screen()
    screen.live(lambda width: "bar")
    capfd.readouterr()
    screen.output(2, b"Password")
    screen.tick()  # no redraw: it would land after "Password"
    screen.output(2, b": ok\n")
    _, err = capfd.readouterr()
    assert err == f"{ERASE}Password: ok\n\rbar\x1b[K"
    screen.output(2, b"half")
    screen.notice("cancelling")  # a notice starts a line of its own
    _, err = capfd.readouterr()
    assert err == f"{ERASE}half\norcha: cancelling\n\rbar\x1b[K"
    screen.live(None)  # gone: erased, not drawn again
    screen.output(2, b"x\n")
    _, err = capfd.readouterr()
    assert err == f"{ERASE}x\n"


def test_without_a_terminal_there_is_no_live_line(capfd: pytest.CaptureFixture[str]) -> None:
    screen = Screen(tty=False)
    screen.live(lambda width: "bar")
    assert not screen.has_live
    screen.output(2, b"e\n")
    screen.notice("queued (why)")
    screen.close()
    assert capfd.readouterr() == ("", "e\norcha: queued (why)\n")
