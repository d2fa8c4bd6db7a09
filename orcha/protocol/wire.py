"""A lean client end of ``multiprocessing.connection``'s wire protocol.

Every ``orcha run`` pays for its imports before its command can start, and
``multiprocessing.connection`` drags in ``tempfile``, ``shutil``, ``pickle`` and the
multiprocessing context: more than Python's own start-up. This module speaks the same
bytes with ``socket``, ``struct`` and OpenSSL's HMAC only: frames are a signed 4-byte big-endian
length (``-1`` then an 8-byte length for frames over 2 GiB) and the payload; the handshake
is the HMAC challenge/response of ``multiprocessing.connection`` in both its legacy form
(20-byte challenge, raw HMAC-MD5) and the ``{digest}``-prefixed form of Python 3.12+.
Over the frames, the ``multiprocessing.managers`` request/response protocol: a request is
the pickled tuple ``(ident, method, args, kwds)`` (``ident`` None for the server's own
methods such as ``create`` and ``call``), an answer the pickled ``(kind, value)`` with
``kind`` ``#RETURN``, ``#ERROR`` (``value`` is the exception), ``#TRACEBACK`` or
``#UNSERIALIZABLE`` (``value`` is text). :func:`request_frame` and :func:`answer` build and
read them with the C pickler only (``pickle.py`` imports ``re`` and more).
The service keeps using the standard implementation; ``tests/unit/test_wire.py`` checks
the two agree.
"""

from __future__ import annotations

import os
import socket
import struct

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import Any

CHALLENGE = b"#CHALLENGE#"
WELCOME = b"#WELCOME#"
FAILURE = b"#FAILURE#"
_LEGACY_LENGTHS = (20, 16)  # legacy challenge length, HMAC-MD5 length
_DIGESTS = (b"md5", b"sha256", b"sha384", b"sha3_256", b"sha3_384")
_HEADER = struct.Struct("!i")
_PROTOCOL = 4  # understood by every Python orcha supports
try:
    from _pickle import dumps as _dumps
    from _pickle import loads as _loads
except ImportError:  # a Python without the C pickler
    from pickle import dumps as _dumps
    from pickle import loads as _loads
_LONG_HEADER = struct.Struct("!Q")


def _mac(key: bytes, message: bytes, digest: str) -> bytes:
    """HMAC of ``message``. OpenSSL's one-shot function where it exists: importing
    ``hmac`` (and with it all of ``hashlib``) costs several milliseconds of start-up."""
    try:
        from _hashlib import hmac_digest
    except ImportError:  # a Python built without OpenSSL
        import hmac

        return hmac.new(key, message, digest).digest()
    return hmac_digest(key, message, digest)


def _same(a: bytes, b: bytes) -> bool:
    """Constant-time comparison (what ``hmac.compare_digest`` is)."""
    from _operator import _compare_digest

    return bool(_compare_digest(a, b))


class RemoteError(Exception):
    """The service answered with a traceback or could not send its answer (the text)."""


def request_frame(
    ident: str | None, method: str, args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None
) -> bytes:
    """The frame of one request: ``method`` of the served object ``ident`` (None: of the
    server) with ``args`` and ``kwds``."""
    return _dumps((ident, method, args, kwds or {}), _PROTOCOL)


def answer(frame: bytes | bytearray | memoryview) -> object:
    """The value of an answer frame; its exception for ``#ERROR``, RemoteError for the
    other kinds of failure."""
    kind, value = _loads(frame)
    if kind == "#RETURN":
        return value
    if kind == "#ERROR":
        raise value
    raise RemoteError(str(value))


class AuthenticationFailed(Exception):
    """The peer rejected our key, or answered our challenge wrongly."""


def _digest_of(message: bytes) -> tuple[str, bytes]:
    """('', message) for the legacy form, else (digest name, payload) of '{name}payload'."""
    if len(message) in _LEGACY_LENGTHS:
        return "", message
    if message.startswith(b"{"):
        end = message.find(b"}", 1, 20)
        if end > 0 and message[1:end] in _DIGESTS:
            return message[1:end].decode(), message[end + 1 :]
    raise AuthenticationFailed("unsupported challenge or response format")


class WireConnection:
    """A blocking connection with the methods of ``multiprocessing.connection.Connection``
    that orcha's client uses: ``send_bytes``, ``recv_bytes``, ``fileno``, ``close``."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()  # recv_frame's, reused

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def readable(self) -> bool:
        """Whether something has arrived: a read would not wait for the peer."""
        import select

        return bool(select.select([self._sock], [], [], 0)[0])

    def send_bytes(self, data: bytes) -> None:
        n = len(data)
        if n > 0x7FFFFFFF:
            self._sock.sendall(_HEADER.pack(-1) + _LONG_HEADER.pack(n))
            self._sock.sendall(data)
        elif n > 16384:
            self._sock.sendall(_HEADER.pack(n))
            self._sock.sendall(data)
        else:
            self._sock.sendall(_HEADER.pack(n) + data)

    def _fill(self, view: memoryview) -> memoryview:
        """Read exactly ``len(view)`` bytes into ``view``; EOFError if the peer closes."""
        got, n = 0, len(view)
        while got < n:
            k = self._sock.recv_into(view[got:], n - got)
            if k == 0:
                raise EOFError("connection closed")
            got += k
        return view

    def _size(self, maxlength: int | None) -> int:
        """The length of the next frame, from its header."""
        (size,) = _HEADER.unpack(self._fill(memoryview(bytearray(4))))
        if size == -1:
            (size,) = _LONG_HEADER.unpack(self._fill(memoryview(bytearray(8))))
        if maxlength is not None and size > maxlength:
            raise OSError("bad message length")
        return int(size)

    def recv_frame(self, maxlength: int | None = None) -> memoryview:
        """The next frame, as a view of this connection's receive buffer: valid until the
        next call. A petition's output arrives in frames of megabytes: reading each into
        the same buffer spares a fresh allocation (and its page faults) per frame."""
        size = self._size(maxlength)
        if len(self._buffer) < size:
            self._buffer = bytearray(size)
        return self._fill(memoryview(self._buffer)[:size])

    def recv_bytes(self, maxlength: int | None = None) -> bytes:
        """The next frame, as bytes of its own."""
        return bytes(self._fill(memoryview(bytearray(self._size(maxlength)))))

    # -- the handshake, client side: answer the service's challenge, then challenge it --
    def authenticate(self, key: bytes) -> None:
        message = self.recv_bytes(256)
        if not message.startswith(CHALLENGE):
            raise AuthenticationFailed("the peer is not an orcha service (no challenge)")
        message = message[len(CHALLENGE) :]
        name, _ = _digest_of(message)
        if name:
            response = b"{%s}%s" % (name.encode(), _mac(key, message, name))
        else:
            response = _mac(key, message, "md5")
        self.send_bytes(response)
        if self.recv_bytes(256) != WELCOME:
            raise AuthenticationFailed("the service rejected the key")
        # Legacy-length challenge: services on every Python version answer it.
        ours = os.urandom(20)
        self.send_bytes(CHALLENGE + ours)
        answer = self.recv_bytes(256)
        name, mac = _digest_of(answer)
        expected = _mac(key, ours, name or "md5")
        if not _same(expected, mac):
            self.send_bytes(FAILURE)
            raise AuthenticationFailed("the service does not hold the key")
        self.send_bytes(WELCOME)
