"""orcha.units: the values users write (here, webhook URLs)."""

from __future__ import annotations

import pytest

from orcha.units import check_url


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/hook", "https://h.example/a%20b?x=%FF#f", "http://bücher.example/x"],
)
def test_a_url_urllib_can_send_to_is_taken_as_it_is(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "said"),
    [
        # Python's surrogate for the byte 0xff of a command line: shown as the byte
        ("http://127.0.0.1:1/\udcff", "'http://127.0.0.1:1/\\xff' is not valid UTF-8"),
        ("http://127.0.0.1:1/\x1b[2J", "'http://127.0.0.1:1/\\x1b[2J' has a control character"),
        ("http://h/a b", "'http://h/a b' has a space"),
        ("http://h\x7f/", "has a control character"),
        ("http://h/été", "'http://h/été' has a character that is not ASCII after its host"),
        ("http://h\udcff/", "is not valid UTF-8"),
    ],
)
def test_a_url_urllib_always_refuses_is_refused_saying_why(url: str, said: str) -> None:
    with pytest.raises(ValueError, match="percent-encode") as error:
        check_url(url)
    assert said in str(error.value)
    str(error.value).encode("utf-8")  # printable as it is
    assert "\x1b" not in str(error.value)
