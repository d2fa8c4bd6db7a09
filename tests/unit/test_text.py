"""orcha.text: bytes that were not UTF-8 (surrogateescape) shown as the bytes they were."""

from __future__ import annotations

from orcha.text import escaped, is_utf8, printable, quoted, shell_word


def test_utf8_text_is_left_as_it_is() -> None:
    for text in ("", "plain", "été 日本", "tab\there"):
        assert is_utf8(text)
        assert escaped(text) == text
    assert quoted("é'x") == repr("é'x")


def test_a_byte_that_was_not_utf8_is_shown_as_that_byte() -> None:
    text = b"cmd\xff\xfe".decode("utf-8", "surrogateescape")
    assert not is_utf8(text)
    assert escaped(text) == "cmd\\xff\\xfe"
    assert escaped("\ud800x") == "\\ud800x"  # a lone surrogate of another origin
    assert quoted("a\udcff") == "'a\\xff'"
    assert quoted("it's\\\udcff") == "'it\\'s\\\\\\xff'"
    escaped(text).encode("utf-8")  # safe to print and to keep


def test_printable_escapes_control_characters_and_bytes() -> None:
    assert printable("a\x1b[2J\nb\udcff") == "a\\x1b[2J\\nb\\xff"
    assert printable("a b") == "a b"


def test_shell_word_is_shlex_quote_and_bash_quoting_for_bytes() -> None:
    import shlex

    for word in ("", "plain", "a b", "it's", "été", "a\nb", "$HOME"):
        assert shell_word(word) == shlex.quote(word)
    assert shell_word("\udcff\udcfe") == "$'\\xff\\xfe'"
    assert shell_word("it's\\\udcff\x1b") == "$'it\\'s\\\\\\xff\\x1b'"
