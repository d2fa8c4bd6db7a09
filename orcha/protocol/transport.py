"""Sockets and authenticated connections between clients and the service.

The wire format is ``multiprocessing.connection``'s (length-prefixed frames, HMAC
challenge/response with the shared key), so the standard ``multiprocessing.managers``
proxies of the original Orcha API work against the same socket. The service uses the
standard implementation; orcha's own clients use the lean one in ``orcha.protocol.wire``.
What this module adds over the standard Listener/Client: a deadline on every handshake
(a silent peer cannot block anyone), ``TCP_NODELAY`` (no 40 ms Nagle stalls), errors
mapped to orcha's hierarchy, and a listening socket the service can poll from its loop.
A client's connection is a ``_socket`` socket: ``socket.py`` builds its enums on import,
which costs every ``orcha`` command several milliseconds; the service's side uses
``socket``.
"""

from __future__ import annotations

import _socket
import errno
import os

from orcha.address import Address
from orcha.defaults import CONNECT_TIMEOUT, HANDSHAKE_TIMEOUT, LISTEN_BACKLOG
from orcha.errors import (
    AlreadyRunningError,
    AuthError,
    ConfigError,
    DroppedError,
    NoAnswerError,
    NoServiceError,
)
from orcha.protocol.wire import (
    CHALLENGE,
    FAILURE,
    WELCOME,
    AuthenticationFailed,
    WireConnection,
    digest_of,
    mac,
    same,
)

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    import socket
    from multiprocessing.connection import Connection

__all__ = ["accept", "authenticate", "challenge", "connect", "listen", "set_recv_timeout"]


def _family(address: Address) -> int:
    if address.is_unix:
        return _socket.AF_UNIX
    return _socket.AF_INET6 if ":" in (address.host or "") else _socket.AF_INET


def _client_socket(family: int) -> _socket.socket:
    """A new stream socket for a client (the seam tests replace to make ``connect``
    fail as they need)."""
    return _socket.socket(family, _socket.SOCK_STREAM)


def set_recv_timeout(fd: int, seconds: float) -> None:
    """Bound blocking reads on ``fd`` (0 removes the bound). Reads past it raise OSError."""
    import socket
    import struct

    sock = socket.socket(fileno=fd)  # no dup: it must work with no descriptor to spare
    try:
        whole = int(seconds)
        sock.setsockopt(
            socket.SOL_SOCKET,
            socket.SO_RCVTIMEO,
            struct.pack("ll", whole, int((seconds - whole) * 1e6)),
        )
    finally:
        sock.detach()


def _nodelay(sock: _socket.socket) -> None:
    if sock.family in (_socket.AF_INET, _socket.AF_INET6):
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)


def connect(
    address: Address, key: bytes | None, timeout: float = CONNECT_TIMEOUT
) -> WireConnection:
    """Connect and authenticate to the service at ``address`` (the client's end).

    Raises NoServiceError when nothing listens or it does not answer in time, and
    AuthError when the key is missing or refused.

    A handshake the service drops (DroppedError: it is overloaded, or too many clients
    connect at once) is tried once more before that error is raised: nothing was sent
    yet, so nothing can happen twice.
    """
    try:
        return _connect_once(address, key, timeout)
    except DroppedError:
        return _connect_once(address, key, timeout)


def _refused(address: Address) -> NoServiceError:
    """A refused connection: a path that is not a socket says so (a mistyped --address
    naming a directory or a file); else the socket is stale, or the port closed."""
    if isinstance(address.sockaddr, str):
        import stat

        try:
            mode = os.stat(address.sockaddr).st_mode
        except OSError:
            mode = stat.S_IFSOCK
        if not stat.S_ISSOCK(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a file"
            return NoServiceError(
                str(address), f"{kind}, not a socket",
                "check --address, ORCHA_ADDRESS or the configuration's address",
            )  # fmt: skip
    return NoServiceError(str(address), "connection refused")


def _connect_once(
    address: Address, key: bytes | None, timeout: float = CONNECT_TIMEOUT
) -> WireConnection:
    """One connection and handshake (see :func:`connect`)."""
    sock = _client_socket(_family(address))
    sock.settimeout(timeout)
    try:
        sock.connect(address.sockaddr)
    except FileNotFoundError:
        sock.close()
        raise NoServiceError(str(address), "no socket there") from None
    except ConnectionRefusedError:
        sock.close()
        raise _refused(address) from None
    except TimeoutError:
        sock.close()
        raise NoAnswerError(str(address), timeout) from None
    except PermissionError:
        sock.close()
        raise AuthError(_permission_denied(address)) from None
    except OSError as e:
        sock.close()
        raise NoServiceError(str(address), e.strerror or str(e)) from e
    if key is None:
        sock.close()
        raise AuthError(
            f"a service listens at {address} but this user has no key for it; "
            "pass the service's key with --key or ORCHA_KEY"
        )
    _nodelay(sock)
    sock.settimeout(HANDSHAKE_TIMEOUT)
    # The service speaks first (its challenge). Silence is no orcha service there, or
    # one that does not accept: not a handshake it dropped, so it is not tried again.
    try:
        greeted = sock.recv(1, _socket.MSG_PEEK)
    except TimeoutError:
        sock.close()
        raise NoAnswerError(str(address), HANDSHAKE_TIMEOUT) from None
    except OSError:
        greeted = b""
    if not greeted:  # hung up at once (too many handshakes pending)
        sock.close()
        raise DroppedError(str(address))
    conn = WireConnection(sock)
    try:
        conn.authenticate(key)
    except AuthenticationFailed:
        conn.close()
        raise AuthError(
            f"the service at {address} refused this key; use the key in its key file "
            "(the same user's state directory) or pass it with --key or ORCHA_KEY"
        ) from None
    except (OSError, EOFError):
        conn.close()
        raise DroppedError(str(address)) from None
    sock.settimeout(None)
    return conn


def _permission_denied(address: Address) -> str:
    """Why this user may not connect to a unix socket, and whose service it is."""
    owner = "another user"
    if address.path is not None:
        try:
            uid = os.stat(address.path).st_uid
            import pwd

            owner = f"user {pwd.getpwuid(uid).pw_name}"
        except (OSError, KeyError):
            pass
    return (
        f"permission denied at {address}: the service there belongs to {owner} and only "
        "that user may connect; run orcha as that user, or start your own service with "
        "'orcha serve'"
    )


def listen(address: Address) -> socket.socket:
    """Bind a non-blocking listening socket at ``address`` (unix sockets get mode 0600).

    A unix socket path left by a crashed service is removed; a path another live
    service answers on raises AlreadyRunningError. The caller holds the address lock
    (see ``orcha.service.lock``), so checking then binding does not race.
    """
    import socket

    family = _family(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if address.is_unix:
            assert address.path is not None
            _remove_stale_socket(address)
            old_umask = os.umask(0o177)
            try:
                sock.bind(address.path)
            finally:
                os.umask(old_umask)
            os.chmod(address.path, 0o600)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address.sockaddr)
        sock.listen(LISTEN_BACKLOG)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise AlreadyRunningError(
                f"cannot listen on {address}: the address is already in use "
                "(is another orcha service running there? stop it or use --address)"
            ) from e
        raise ConfigError(f"cannot listen on {address}: {e.strerror or e}") from e
    sock.setblocking(False)
    return sock


def _remove_stale_socket(address: Address) -> None:
    """Remove the socket a service that died left at the address (nobody answers there);
    AlreadyRunningError if one answers; ConfigError if something other than a socket is
    there (a file or a directory given by mistake: never removed)."""
    import stat

    assert address.path is not None
    try:
        mode = os.lstat(address.path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else
                "a symbolic link" if stat.S_ISLNK(mode) else "a file")  # fmt: skip
        raise ConfigError(
            f"cannot listen on {address}: it is {kind}, not a socket, and orcha leaves it "
            "as it is; choose another --address"
        )
    import socket

    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(address.path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(address.path)  # nobody listens: a crashed service left it
        return
    except OSError:
        os.unlink(address.path)
        return
    finally:
        probe.close()
    raise AlreadyRunningError(
        f"another orcha service is already listening at {address}; "
        "stop it first ('orcha shutdown', or Ctrl+C in its terminal) or use --address"
    )


def accept(listener: socket.socket) -> Connection | None:
    """Accept one pending client, not yet authenticated (see :func:`authenticate`);
    None if there was none."""
    try:
        sock, _ = listener.accept()
    except (BlockingIOError, InterruptedError):
        return None
    from multiprocessing.connection import Connection

    sock.setblocking(True)
    _nodelay(sock)
    return Connection(sock.detach())


def challenge(conn: Connection) -> bytes:
    """Send the service's challenge on a just-accepted connection; the message to give
    :func:`authenticate`. Called before the connection's thread is started, so the client
    works out its answer meanwhile. A few dozen bytes into a new connection: never waits.

    The message is the one ``multiprocessing.connection.deliver_challenge`` of this
    Python sends: ``{sha256}`` and 40 random bytes from 3.12 on, 20 random bytes (for
    HMAC-MD5) before it."""
    import sys

    if sys.version_info >= (3, 12):
        message = b"{sha256}" + os.urandom(40)
    else:
        message = os.urandom(20)
    conn.send_bytes(CHALLENGE + message)
    return message


def authenticate(conn: Connection, key: bytes, message: bytes | None = None) -> None:
    """Run the service's side of the handshake on an accepted connection, with a deadline:
    check the client's answer to ``message`` (sent by :func:`challenge`; None: send one
    now), then answer the client's challenge. Raises AuthError for a wrong key or a peer
    that does not speak the protocol, OSError or EOFError if it goes away or is too slow."""
    from multiprocessing import AuthenticationError
    from multiprocessing.connection import answer_challenge

    set_recv_timeout(conn.fileno(), HANDSHAKE_TIMEOUT)
    try:
        if message is None:
            message = challenge(conn)
        try:
            name, answer = digest_of(conn.recv_bytes(256))
            right = same(answer, mac(key, message, name or "md5"))
        except AuthenticationFailed:
            right = False
        except ValueError:  # a digest this Python's hashlib does not have
            right = False
        if not right:
            conn.send_bytes(FAILURE)
            raise AuthError("client failed authentication: digest received was wrong")
        conn.send_bytes(WELCOME)
        answer_challenge(conn, key)
    except AuthenticationError as e:
        raise AuthError(f"client failed authentication: {e}") from e
    finally:
        set_recv_timeout(conn.fileno(), 0)
