"""Address parsing and printing: unix socket paths and TCP HOST:PORT."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orcha.address import MAX_UNIX_PATH, Address, is_loopback, parse_address
from orcha.errors import ConfigError


def test_absolute_unix_path() -> None:
    addr = parse_address("/run/orcha/orcha.sock")
    assert addr == Address(path="/run/orcha/orcha.sock")
    assert addr.is_unix
    assert addr.host is None and addr.port is None
    assert addr.sockaddr == "/run/orcha/orcha.sock"


def test_relative_path_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    addr = parse_address("sub/o.sock")
    assert addr.path == str(tmp_path / "sub" / "o.sock")
    assert os.path.isabs(addr.path)


def test_unix_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_address("unix:/tmp/a.sock").path == "/tmp/a.sock"
    # with the prefix, a bare name (no slash) is a socket path too, made absolute
    assert parse_address("unix:plain.sock").path == str(tmp_path / "plain.sock")


def test_unix_path_normalised() -> None:
    assert parse_address("/tmp//x/../y.sock").path == "/tmp/y.sock"


def test_tilde_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_address("~/o.sock").path == str(tmp_path / "o.sock")
    assert parse_address("unix:~/p.sock").path == str(tmp_path / "p.sock")


def test_surrounding_whitespace_is_ignored() -> None:
    assert parse_address("  /tmp/a.sock \n").path == "/tmp/a.sock"
    assert parse_address(" 8080 ") == Address(host="127.0.0.1", port=8080)


def test_longest_unix_path_accepted() -> None:
    path = "/" + "a" * (MAX_UNIX_PATH - 1)
    assert len(path) == MAX_UNIX_PATH
    assert parse_address(path).path == path


def test_too_long_unix_path_is_config_error() -> None:
    path = "/" + "a" * MAX_UNIX_PATH
    with pytest.raises(ConfigError) as info:
        parse_address(path)
    assert repr(path) in str(info.value)
    assert str(MAX_UNIX_PATH) in str(info.value)


def test_unix_path_length_counts_bytes() -> None:
    path = "/" + "é" * 60  # 121 bytes, 61 characters
    with pytest.raises(ConfigError):
        parse_address(path)


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("example.org:9000", "example.org", 9000),
        ("0.0.0.0:1", "0.0.0.0", 1),
        ("localhost:65535", "localhost", 65535),
        (":7000", "127.0.0.1", 7000),
        ("7000", "127.0.0.1", 7000),
        ("[::1]:7001", "::1", 7001),
        ("[fe80::1]:22", "fe80::1", 22),
    ],
)
def test_tcp_addresses(text: str, host: str, port: int) -> None:
    addr = parse_address(text)
    assert addr == Address(host=host, port=port)
    assert not addr.is_unix
    assert addr.path is None
    assert addr.sockaddr == (host, port)


@pytest.mark.parametrize("text", ["host:abc", "abc", "host:", "localhost:80x", "1.5"])
def test_invalid_port_text_is_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_address(text)
    message = str(info.value)
    assert repr(text) in message
    assert "not a number" in message


@pytest.mark.parametrize("text", ["host:1_000", "8_080", "+80", "host: 80", "\u0668\u0660"])
def test_port_must_be_plain_digits(text: str) -> None:
    # int() also accepts "1_000", "+80", " 80" and non-ASCII digits; none is a port number
    with pytest.raises(ConfigError) as info:
        parse_address(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("text", ["0", "host:0", "65536", ":70000", "-1", "[::1]:99999"])
def test_port_out_of_range_is_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_address(text)
    message = str(info.value)
    assert repr(text) in message
    assert "1-65535" in message


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_address_is_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_address(text)
    assert repr(text) in str(info.value)


def test_empty_unix_path_is_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # "unix:" names no socket; it must not silently become the current directory
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError):
        parse_address("unix:")


def test_config_error_exit_code_is_usage() -> None:
    with pytest.raises(ConfigError) as info:
        parse_address("x:y")
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "printed"),
    [
        ("/tmp/o.sock", "/tmp/o.sock"),
        ("unix:/tmp/o.sock", "/tmp/o.sock"),
        ("example.org:9000", "example.org:9000"),
        ("9000", "127.0.0.1:9000"),
        (":9000", "127.0.0.1:9000"),
        ("[::1]:9000", "[::1]:9000"),
        ("[2001:db8::2]:443", "[2001:db8::2]:443"),
    ],
)
def test_str_round_trip(text: str, printed: str) -> None:
    addr = parse_address(text)
    assert str(addr) == printed
    assert parse_address(str(addr)) == addr


@pytest.mark.parametrize(
    ("text", "loopback"),
    [
        ("/tmp/o.sock", True),
        ("9000", True),
        ("localhost:9000", True),
        ("127.0.0.1:9000", True),
        ("127.1.2.3:9000", True),
        ("[::1]:9000", True),
        ("0.0.0.0:9000", False),
        ("10.0.0.1:9000", False),
        ("example.org:9000", False),
        ("[fe80::1]:9000", False),
    ],
)
def test_is_loopback(text: str, loopback: bool) -> None:
    assert is_loopback(parse_address(text)) is loopback


def test_address_equality_and_hash() -> None:
    addr = parse_address("9000")
    assert {addr, parse_address(":9000"), parse_address("127.0.0.1:9000")} == {addr}
    assert addr != parse_address("9001")
    assert addr != parse_address("localhost:9000")
    assert parse_address("/tmp/a.sock") != Address(host="/tmp/a.sock")
    assert addr != "127.0.0.1:9000"


def test_a_socket_path_that_is_not_utf8_is_refused_in_words() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_address(os.fsdecode(b"/tmp/s\xffock"))
    message = refused.value.message
    assert "/tmp/s\\xffock" in message and "UTF-8" in message and message.isprintable()
