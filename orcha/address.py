"""Parsing and printing service addresses: a unix socket path or a TCP ``HOST:PORT``."""

from __future__ import annotations

import os

from orcha.defaults import DEFAULT_TCP_HOST
from orcha.errors import ConfigError

#: Longest unix socket path the kernel accepts (sun_path is 108 bytes with its NUL).
MAX_UNIX_PATH = 107


class Address:
    """Where a service listens. Exactly one of ``path`` or (``host``, ``port``) is set."""

    __slots__ = ("host", "path", "port")
    path: str | None
    host: str | None
    port: int | None

    def __init__(self, path: str | None = None, host: str | None = None, port: int | None = None):
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Address is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Address) and (self.path, self.host, self.port) == (
            other.path,
            other.host,
            other.port,
        )

    def __hash__(self) -> int:
        return hash((self.path, self.host, self.port))

    def __repr__(self) -> str:
        return f"Address({str(self)!r})"

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    @property
    def sockaddr(self) -> str | tuple[str, int]:
        """The address in the form ``socket.connect`` and ``bind`` take."""
        if self.path is not None:
            return self.path
        assert self.host is not None and self.port is not None
        return (self.host, self.port)

    def __str__(self) -> str:
        if self.path is not None:
            return self.path
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{self.port}"


def check_text_path(path: str, what: str, hint: str) -> None:
    """ConfigError if ``path`` is not valid UTF-8 (bytes the file system decoding kept
    as surrogates): orcha writes its paths as text (lock files, records, digests), so
    such a path failed deep inside as an internal error. ``what`` names where it came
    from; ``hint`` says what to do."""
    try:
        path.encode()
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise ConfigError(f"{what} '{shown}' is not valid UTF-8; {hint}") from None


def parse_address(text: str) -> Address:
    """Parse ``--address``: ``unix:PATH`` or a path with a ``/`` is a unix socket;
    ``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` or ``PORT`` is TCP (host defaults to loopback).

    Raises ConfigError quoting the bad value and the accepted forms.
    """
    raw = text.strip()
    forms = "expected a socket path (unix:PATH or /path) or HOST:PORT"
    if not raw:
        raise ConfigError(f"invalid address {text!r}: {forms}")
    if raw.startswith("unix:") or "/" in raw:
        given = raw.removeprefix("unix:")
        if not given:
            raise ConfigError(f"invalid address {text!r}: the socket path is empty; {forms}")
        path = os.path.abspath(os.path.expanduser(given))
        check_text_path(path, "socket path", "choose a UTF-8 path with --address")
        if len(os.fsencode(path)) > MAX_UNIX_PATH:
            raise ConfigError(
                f"socket path {path!r} is longer than {MAX_UNIX_PATH} bytes; "
                "choose a shorter path with --address"
            )
        return Address(path=path)
    host, sep, port_text = raw.rpartition(":")
    if not sep:
        host, port_text = "", raw
    host = host.strip("[]") or DEFAULT_TCP_HOST
    if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        raise ConfigError(
            f"invalid address {text!r}: port {port_text!r} is not a number from 1-65535; {forms}"
        )
    port = int(port_text)
    return Address(host=host, port=port)


def is_loopback(address: Address) -> bool:
    """Whether a TCP address is on the loopback interface (unix sockets count as local)."""
    if address.is_unix:
        return True
    host = address.host or ""
    return host == "localhost" or host.startswith("127.") or host == "::1"


def check_dask_address(address: str, where: str) -> str:
    """``address`` if it is a Dask address (``tcp://HOST:PORT``, ``tls://...``,
    ``HOST:PORT``); ConfigError naming ``where`` otherwise."""
    scheme, _, rest = address.rpartition("://")
    host, _, port = rest.rpartition(":")
    if (
        scheme not in ("", "tcp", "tls", "ucx", "ws", "wss")
        or not host
        or not (port.isascii() and port.isdigit())
    ):
        raise ConfigError(
            f"{where}: {address!r} is not a Dask scheduler address; give tcp://HOST:PORT "
            "(or tls://HOST:PORT)"
        )
    return address if scheme else f"tcp://{address}"
