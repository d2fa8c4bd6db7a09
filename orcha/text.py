"""Text that came from outside as bytes (command lines, file names, the environment), as
orcha shows, logs and keeps it.

Python decodes such bytes with ``surrogateescape``: a byte that is not UTF-8 becomes a
lone surrogate (``b"\\xff"`` becomes ``"\\udcff"``), which passes through orcha's own
protocol unchanged (so a command and its arguments reach the petition byte for byte) but
which no UTF-8 output, log line or database text takes. What orcha prints, logs or keeps
as a message shows such a byte as ``\\xff``, the byte it stands for.

Part of the base layer: it imports nothing, so every layer can use it.
"""

from __future__ import annotations

#: The lone surrogates ``surrogateescape`` makes of the bytes 0x80-0xff.
_ESCAPED_BYTES = range(0xDC80, 0xDD00)


def is_utf8(text: str) -> bool:
    """Whether ``text`` is valid UTF-8 text: it holds no lone surrogate (no byte that was
    not UTF-8 where it came from)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _char(ch: str) -> str:
    """One lone surrogate as an escape: ``\\xff`` for the byte it stands for."""
    code = ord(ch)
    if code in _ESCAPED_BYTES:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def escaped(text: str) -> str:
    """``text`` with each byte that was not UTF-8 shown as ``\\xNN`` (any other lone
    surrogate as ``\\uNNNN``); the rest unchanged. Always valid UTF-8: safe to print, to
    log and to keep in the database."""
    if is_utf8(text):
        return text
    return "".join(_char(ch) if "\ud800" <= ch <= "\udfff" else ch for ch in text)


def printable(text: str) -> str:
    """``text`` on one line, control characters shown escaped (``\\n``, ``\\x1b``) and
    bytes that were not UTF-8 as ``\\xff``: it cannot move a terminal's cursor, start a
    new (forged) log line, or fail to print."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() or ch == " ":
            out.append(ch)
        elif "\ud800" <= ch <= "\udfff":
            out.append(_char(ch))
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def quoted(text: str) -> str:
    """``repr(text)`` (a value quoted in a message), with bytes that were not UTF-8 shown
    as ``\\xff`` rather than as Python's surrogates."""
    if is_utf8(text):
        return repr(text)
    return "'" + "".join("\\" + ch if ch in "\\'" else printable(ch) for ch in text) + "'"


#: The characters a shell word may hold unquoted: those of :func:`shlex.quote`.
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-")


def shell_word(word: str) -> str:
    """``shlex.quote(word)``, without the import of ``re`` it costs (client start-up); a
    word with bytes that are not UTF-8 as bash's ``$'...'`` writes them (``$'\\xff'``,
    control characters escaped too), which a shell reads back as those very bytes."""
    if not word:
        return "''"
    if all(ch in _SAFE for ch in word):
        return word
    if not is_utf8(word):
        return "$'" + "".join("\\" + ch if ch in "\\'" else printable(ch) for ch in word) + "'"
    return "'" + word.replace("'", "'\"'\"'") + "'"
