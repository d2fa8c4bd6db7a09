"""A lean client end of ``multiprocessing.connection``'s wire protocol.

Every ``orcha run`` pays for its imports before its command can start, and
``multiprocessing.connection`` drags in ``tempfile``, ``shutil``, ``pickle`` and the
multiprocessing context: more than Python's own start-up. This module speaks the same
bytes with C modules only (a ``_socket`` socket, ``_struct``, ``_pickle`` and the
interpreter's own hash functions): frames are a signed 4-byte big-endian
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
from _struct import Struct  # struct's C module: struct.py adds nothing orcha uses

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from _socket import socket
    from collections.abc import Callable
    from typing import Any

CHALLENGE = b"#CHALLENGE#"
WELCOME = b"#WELCOME#"
FAILURE = b"#FAILURE#"
_LEGACY_LENGTHS = (20, 16)  # legacy challenge length, HMAC-MD5 length
_DIGESTS = (b"md5", b"sha256", b"sha384", b"sha3_256", b"sha3_384")
_HEADER = Struct("!i")
_PROTOCOL = 4  # understood by every Python orcha supports


def _import_c_pickler() -> None:
    """Import ``_pickle`` without ``functools``. The C pickler takes only
    ``functools.partial`` from it, which is ``_functools.partial``; but importing
    ``functools`` (with ``collections``, ``itertools``, ``operator``...) costs a client
    about 3 ms of start-up. So, if nothing imported it yet, ``_pickle`` is given a stand-in
    holding that same class, removed at once: a later ``import functools`` loads the
    real module, whose ``partial`` is the class ``_pickle`` holds."""
    import sys

    if "functools" in sys.modules or "_pickle" in sys.modules:
        return  # nothing to spare
    from _functools import partial

    stand_in = type(sys)("functools")
    stand_in.partial = partial  # type: ignore[attr-defined]
    sys.modules["functools"] = stand_in
    try:
        import _pickle  # noqa: F401
    finally:
        if sys.modules.get("functools") is stand_in:
            del sys.modules["functools"]


try:
    _import_c_pickler()
    from _pickle import dumps as _dumps
    from _pickle import loads as _loads
except ImportError:  # a Python without the C pickler
    from pickle import dumps as _dumps
    from pickle import loads as _loads
_LONG_HEADER = Struct("!Q")


#: Where the interpreter keeps each digest the handshake may name: (modules, function),
#: the first module that imports wins (Python 3.12 merged _sha256 and _sha512 into _sha2).
_HASHES = {
    "md5": (("_md5",), "md5"),
    "sha256": (("_sha2", "_sha256"), "sha256"),
    "sha384": (("_sha2", "_sha512"), "sha384"),
    "sha3_256": (("_sha3",), "sha3_256"),
    "sha3_384": (("_sha3",), "sha3_384"),
}
_IPAD = bytes(x ^ 0x36 for x in range(256))  # HMAC's inner and outer pads, as hmac.py
_OPAD = bytes(x ^ 0x5C for x in range(256))  # builds them, for bytes.translate


def _hash(digest: str) -> Callable[..., Any] | None:
    """The interpreter's own (not OpenSSL's) constructor of ``digest``; None if it has
    none (a Python built without its fallback hashes)."""
    modules, name = _HASHES.get(digest, ((), ""))
    for module in modules:
        try:
            return getattr(__import__(module), name)
        except (ImportError, AttributeError):
            continue
    return None


def mac(key: bytes, message: bytes, digest: str) -> bytes:
    """HMAC (RFC 2104) of ``message``: the same bytes as ``hmac.new(key, message,
    digest).digest()``. Computed with the interpreter's built-in hash functions, because
    loading OpenSSL (``_hashlib``, as ``hmac`` does) costs a client about 4 ms of
    start-up, more than the whole handshake; OpenSSL's HMAC where those are missing."""
    new = _hash(digest)
    if new is None:
        import hmac

        return hmac.new(key, message, digest).digest()
    inner, outer = new(), new()
    block = inner.block_size
    if len(key) > block:
        key = new(key).digest()
    key = key.ljust(block, b"\0")
    inner.update(key.translate(_IPAD))
    inner.update(message)
    outer.update(key.translate(_OPAD))
    outer.update(inner.digest())
    return outer.digest()


def same(a: bytes, b: bytes) -> bool:
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


def digest_of(message: bytes) -> tuple[str, bytes]:
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

    def __init__(self, sock: socket) -> None:
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
        name, _ = digest_of(message)
        if name:
            response = b"{%s}%s" % (name.encode(), mac(key, message, name))
        else:
            response = mac(key, message, "md5")
        # Our challenge (legacy length: services on every Python version answer it) goes
        # with our response, unasked: the service reads it once it has welcomed us, so
        # the handshake takes two round trips, not three.
        ours = os.urandom(20)
        challenge = CHALLENGE + ours
        self._sock.sendall(
            _HEADER.pack(len(response)) + response + _HEADER.pack(len(challenge)) + challenge
        )
        if self.recv_bytes(256) != WELCOME:
            raise AuthenticationFailed("the service rejected the key")
        name, theirs = digest_of(self.recv_bytes(256))
        if not same(mac(key, ours, name or "md5"), theirs):
            self.send_bytes(FAILURE)
            raise AuthenticationFailed("the service does not hold the key")
        self.send_bytes(WELCOME)
