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


def _pickler() -> tuple[Callable[..., bytes], Callable[..., Any]]:
    """(dumps, loads) of the C pickler (pickle.py's without one), imported the first
    time a value is not plain data (:func:`request_frame`, :func:`answer`)."""
    try:
        _import_c_pickler()
        from _pickle import dumps, loads
    except ImportError:  # a Python without the C pickler
        from pickle import dumps, loads
    return dumps, loads


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


# -- plain data as pickles, without a pickle module -----------------------------------------
# Requests and most answers hold plain data only: None, bools, ints, floats, str, bytes,
# tuples, lists and dicts. Those are written and read here, in protocol 4's opcodes (any
# unpickler reads them); anything else (an exception, a class) raises NotPlain and goes
# through the C pickler. Importing ``_pickle`` (with ``_compat_pickle`` and ``copyreg``)
# costs a client about 1 ms of start-up, more than all it pickles.


class NotPlain(Exception):
    """A value (or an opcode) outside the plain data this codec handles."""


_DOUBLE = Struct(">d")


def _long(value: int) -> bytes:
    """An int as LONG1 or LONG4: little-endian two's complement (pickle's encode_long)."""
    data = value.to_bytes((value.bit_length() >> 3) + 1, "little", signed=True)
    if len(data) < 256:
        return b"\x8a" + bytes((len(data),)) + data
    return b"\x8b" + len(data).to_bytes(4, "little") + data


def _sized(short: bytes, long: bytes, huge: bytes, data: bytes) -> bytes:
    n = len(data)
    if n < 256:
        return short + bytes((n,)) + data
    if n <= 0xFFFFFFFF:
        return long + n.to_bytes(4, "little") + data
    return huge + n.to_bytes(8, "little") + data


def _put(value: Any, out: list[bytes]) -> None:
    kind = type(value)
    if value is None:
        out.append(b"N")
    elif kind is bool:
        out.append(b"\x88" if value else b"\x89")
    elif kind is int:
        if 0 <= value < 256:
            out.append(b"K" + bytes((value,)))
        elif -0x80000000 <= value < 0x80000000:
            out.append(b"J" + value.to_bytes(4, "little", signed=True))
        else:
            out.append(_long(value))
    elif kind is float:
        out.append(b"G" + _DOUBLE.pack(value))
    elif kind is str:
        out.append(_sized(b"\x8c", b"X", b"\x8d", value.encode("utf-8", "surrogatepass")))
    elif kind is bytes:
        out.append(_sized(b"C", b"B", b"\x8e", value))
    elif kind is tuple:
        if len(value) <= 3:
            for item in value:
                _put(item, out)
            out.append(_TUPLES[len(value)])
        else:
            out.append(b"(")
            for item in value:
                _put(item, out)
            out.append(b"t")
    elif kind is list:
        out.append(b"](")
        for item in value:
            _put(item, out)
        out.append(b"e")
    elif kind is dict:
        out.append(b"}(")
        for key, item in value.items():
            _put(key, out)
            _put(item, out)
        out.append(b"u")
    else:
        raise NotPlain(kind.__name__)


_TUPLES = (b")", b"\x85", b"\x86", b"\x87")


def dumps_plain(value: object) -> bytes:
    """``value`` pickled (protocol 4, no framing or memo); NotPlain if it holds anything
    but None, bool, int, float, str, bytes, tuple, list or dict (exactly those types)."""
    out = [b"\x80\x04"]
    _put(value, out)
    out.append(b".")
    return b"".join(out)


def loads_plain(frame: bytes | bytearray | memoryview) -> Any:
    """The value of a pickle of plain data (what :func:`dumps_plain` writes, and what
    the C pickler writes for the same values: with framing and memo); NotPlain at the
    first opcode it does not handle (a class, a reduce: the C pickler's to read)."""
    data = bytes(frame)
    stack: list[Any] = []
    marks: list[list[Any]] = []
    memo: list[Any] = []
    i, n = 0, len(data)
    while i < n:
        op = data[i]
        i += 1
        if op == 0x8C:  # SHORT_BINUNICODE
            k = data[i]
            stack.append(data[i + 1 : i + 1 + k].decode("utf-8", "surrogatepass"))
            i += 1 + k
        elif op == 0x94:  # MEMOIZE
            memo.append(stack[-1])
        elif op in _SIZED:  # the other strings and bytes
            width, is_text = _SIZED[op]
            k = int.from_bytes(data[i : i + width], "little")
            i += width
            chunk = data[i : i + k]
            stack.append(chunk.decode("utf-8", "surrogatepass") if is_text else chunk)
            i += k
        elif op == 0x28:  # MARK
            marks.append(stack)
            stack = []
        elif op in (0x65, 0x75, 0x74):  # APPENDS, SETITEMS, TUPLE
            items, stack = stack, marks.pop()
            if op == 0x65:
                stack[-1].extend(items)
            elif op == 0x75:
                target = stack[-1]
                for j in range(0, len(items), 2):
                    target[items[j]] = items[j + 1]
            else:
                stack.append(tuple(items))
        elif op == 0x4B:  # BININT1
            stack.append(data[i])
            i += 1
        elif op in _FIXED:
            width, signed = _FIXED[op]
            stack.append(int.from_bytes(data[i : i + width], "little", signed=signed))
            i += width
        elif op in _CONSTANTS:
            stack.append(_CONSTANTS[op]())
        elif 0x85 <= op <= 0x87:  # TUPLE1-3
            k = op - 0x84
            stack[-k:] = [tuple(stack[-k:])]
        elif op == 0x61:  # APPEND
            item = stack.pop()
            stack[-1].append(item)
        elif op == 0x73:  # SETITEM
            item = stack.pop()
            key = stack.pop()
            stack[-1][key] = item
        elif op == 0x47:  # BINFLOAT
            stack.append(_DOUBLE.unpack_from(data, i)[0])
            i += 8
        elif op in (0x8A, 0x8B):  # LONG1, LONG4
            width = 1 if op == 0x8A else 4
            k = int.from_bytes(data[i : i + width], "little")
            i += width
            stack.append(int.from_bytes(data[i : i + k], "little", signed=True))
            i += k
        elif op in (0x68, 0x6A):  # BINGET, LONG_BINGET
            width = 1 if op == 0x68 else 4
            stack.append(memo[int.from_bytes(data[i : i + width], "little")])
            i += width
        elif op in (0x71, 0x72):  # BINPUT, LONG_BINPUT (protocols 1-3)
            width = 1 if op == 0x71 else 4
            index = int.from_bytes(data[i : i + width], "little")
            memo.extend([None] * (index + 1 - len(memo)))
            memo[index] = stack[-1]
            i += width
        elif op == 0x80:  # PROTO
            i += 1
        elif op == 0x95:  # FRAME
            i += 8
        elif op == 0x2E:  # STOP
            if len(stack) != 1 or marks:
                raise NotPlain("malformed")
            return stack[0]
        else:
            raise NotPlain(f"opcode {op:#x}")
    raise NotPlain("no STOP")


#: Opcode: (length width, text?) of BINUNICODE, BINUNICODE8, SHORT_BINBYTES, BINBYTES,
#: BINBYTES8.
_SIZED = {0x58: (4, True), 0x8D: (8, True), 0x43: (1, False), 0x42: (4, False),
          0x8E: (8, False)}  # fmt: skip
#: Opcode: (width, signed) of BININT, BININT2.
_FIXED = {0x4A: (4, True), 0x4D: (2, False)}
#: Opcode: a new value of NONE, NEWTRUE, NEWFALSE, EMPTY_LIST, EMPTY_DICT, EMPTY_TUPLE.
_CONSTANTS: dict[int, Callable[[], Any]] = {
    0x4E: lambda: None, 0x88: lambda: True, 0x89: lambda: False, 0x5D: list, 0x7D: dict,
    0x29: tuple,
}  # fmt: skip


class RemoteError(Exception):
    """The service answered with a traceback or could not send its answer (the text)."""


def request_frame(
    ident: str | None, method: str, args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None
) -> bytes:
    """The frame of one request: ``method`` of the served object ``ident`` (None: of the
    server) with ``args`` and ``kwds``."""
    request = (ident, method, args, kwds or {})
    try:
        return dumps_plain(request)
    except NotPlain:
        return _pickler()[0](request, _PROTOCOL)


def answer(frame: bytes | bytearray | memoryview) -> object:
    """The value of an answer frame; its exception for ``#ERROR``, RemoteError for the
    other kinds of failure."""
    try:
        kind, value = loads_plain(frame)
    except NotPlain:
        kind, value = _pickler()[1](frame)
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
