"""orcha.protocol.wire speaks multiprocessing.connection's protocol byte for byte."""

from __future__ import annotations

import hmac
import os
import random
import socket
import threading
from collections.abc import Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge

import pytest

from orcha.protocol.wire import CHALLENGE, WELCOME, AuthenticationFailed, WireConnection

KEY = b"k" * 32


def _pair() -> tuple[WireConnection, Connection]:
    a, b = socket.socketpair()
    return WireConnection(a), Connection(b.detach())


def _serve(conn: Connection, key: bytes, errors: list[BaseException]) -> None:
    try:
        deliver_challenge(conn, key)
        answer_challenge(conn, key)
    except (AuthenticationError, EOFError, OSError) as e:
        errors.append(e)


def test_handshake_with_the_standard_server() -> None:
    client, server = _pair()
    errors: list[BaseException] = []
    t = threading.Thread(target=_serve, args=(server, KEY, errors))
    t.start()
    client.authenticate(KEY)
    t.join(5)
    assert errors == []
    client.send_bytes(b"ping")
    assert server.recv_bytes() == b"ping"
    server.send_bytes(b"pong")
    assert client.recv_bytes() == b"pong"


def test_wrong_key_is_refused_on_both_sides() -> None:
    client, server = _pair()
    errors: list[BaseException] = []
    t = threading.Thread(target=_serve, args=(server, KEY, errors))
    t.start()
    with pytest.raises(AuthenticationFailed):
        client.authenticate(b"wrong")
    t.join(5)
    assert errors and isinstance(errors[0], AuthenticationError)


def test_answers_a_digest_prefixed_challenge_as_python_312_does() -> None:
    client, server = _pair()
    message = b"{sha256}" + os.urandom(40)
    result: list[bytes] = []

    def modern_server() -> None:
        server.send_bytes(CHALLENGE + message)
        result.append(server.recv_bytes(256))
        server.send_bytes(WELCOME)
        challenge = server.recv_bytes(256)[len(CHALLENGE) :]
        server.send_bytes(b"{sha256}" + hmac.new(KEY, challenge, "sha256").digest())
        result.append(server.recv_bytes(256))

    t = threading.Thread(target=modern_server)
    t.start()
    client.authenticate(KEY)
    t.join(5)
    assert result[0] == b"{sha256}" + hmac.new(KEY, message, "sha256").digest()
    assert result[1] == WELCOME


def test_a_server_without_the_key_is_detected() -> None:
    client, server = _pair()

    def impostor() -> None:
        server.send_bytes(CHALLENGE + os.urandom(20))
        server.recv_bytes(256)
        server.send_bytes(WELCOME)  # accepts anything...
        challenge = server.recv_bytes(256)[len(CHALLENGE) :]
        server.send_bytes(hmac.new(b"other", challenge, "md5").digest())  # ...but has no key
        server.recv_bytes(256)

    t = threading.Thread(target=impostor)
    t.start()
    with pytest.raises(AuthenticationFailed):
        client.authenticate(KEY)
    t.join(5)


def test_the_handshake_takes_two_round_trips() -> None:
    """The client's challenge comes with its response, before the service's WELCOME:
    a service reading the next frame before it answers finds it there."""
    a, b = socket.socketpair()
    a.settimeout(10)  # a client that waits for WELCOME first fails, not hangs
    client, server = WireConnection(a), Connection(b.detach())
    got: list[bytes] = []

    def server_side() -> None:
        message = os.urandom(20)
        server.send_bytes(CHALLENGE + message)
        got.append(server.recv_bytes(256))
        if server.poll(2):  # before WELCOME: only there if the client did not wait
            challenge = server.recv_bytes(256)
            got.append(challenge)
            server.send_bytes(WELCOME)
            server.send_bytes(hmac.new(KEY, challenge[len(CHALLENGE) :], "md5").digest())
            got.append(server.recv_bytes(256))

    t = threading.Thread(target=server_side)
    t.start()
    client.authenticate(KEY)
    t.join(5)
    assert len(got) == 3 and got[1].startswith(CHALLENGE) and got[2] == WELCOME, got


@pytest.mark.parametrize("size", [0, 1, 16384, 16385, 3 << 20])
def test_frames_interoperate(size: int) -> None:
    client, server = _pair()
    data = os.urandom(size)
    t = threading.Thread(target=client.send_bytes, args=(data,))
    t.start()
    assert server.recv_bytes() == data
    t.join(5)
    t = threading.Thread(target=server.send_bytes, args=(data,))
    t.start()
    assert client.recv_bytes() == data
    t.join(5)


def test_eof_and_oversized_frames() -> None:
    client, server = _pair()
    server.send_bytes(b"x" * 100)
    with pytest.raises(OSError):
        client.recv_bytes(10)
    server.close()
    client2, server2 = _pair()
    server2.close()
    with pytest.raises(EOFError):
        client2.recv_bytes()


def test_not_an_orcha_service() -> None:
    client, server = _pair()
    server.send_bytes(b"HTTP/1.1 400 Bad Request")
    with pytest.raises(AuthenticationFailed):
        client.authenticate(KEY)


def test_requests_and_answers_are_the_managers_protocol_frames() -> None:
    """What the lean client sends unpickles to the standard request tuple; what the
    standard server sends (Connection.send) reads as its value or its exception."""
    import pickle

    from orcha.protocol.wire import RemoteError, answer, request_frame

    frame = request_frame(None, "call", ("info", {}))
    assert pickle.loads(frame) == (None, "call", ("info", {}), {})
    assert pickle.loads(request_frame("7f", "get_batch")) == ("7f", "get_batch", (), {})
    client, server = _pair()
    try:
        server.send(("#RETURN", {"queue": "7f", "data": b"\0"}))
        assert answer(client.recv_bytes()) == {"queue": "7f", "data": b"\0"}
        server.send(("#ERROR", RuntimeError("refused", "no")))
        with pytest.raises(RuntimeError) as refused:
            answer(client.recv_bytes())
        assert refused.value.args == ("refused", "no")
        server.send(("#TRACEBACK", "Traceback: boom"))
        with pytest.raises(RemoteError, match="boom"):
            answer(client.recv_bytes())
    finally:
        client.close()
        server.close()


def _plain(rng: random.Random, depth: int = 0) -> object:
    """A random value of the plain data the lean codec handles."""
    scalars: list[Callable[[], object]] = [
        lambda: None, lambda: rng.random() < 0.5, lambda: rng.randint(-300, 300),
        lambda: rng.choice([2**31 - 1, -(2**31), 2**31, 2**63, -(2**70), 255, 256, 65535,
                            65536, -1, 0]),
        lambda: rng.uniform(-1e9, 1e9), lambda: rng.choice([0.0, -0.0, 1e308, float("inf")]),
        lambda: "".join(rng.choice("ab\u00e9\u4e2d\U0001f600\udc80 ")
                        for _ in range(rng.choice([0, 3, 255, 256, 300]))),
        lambda: os.urandom(rng.choice([0, 1, 255, 256, 70000])),
    ]  # fmt: skip
    if depth >= 3 or rng.random() < 0.5:
        return rng.choice(scalars)()
    size = rng.choice([0, 1, 2, 3, 4, 7])
    shape = rng.choice(["tuple", "list", "dict"])
    if shape == "dict":
        return {str(rng.random()): _plain(rng, depth + 1) for _ in range(size)}
    items = [_plain(rng, depth + 1) for _ in range(size)]
    return tuple(items) if shape == "tuple" else items


def test_plain_data_pickles_both_ways_as_the_pickle_module_does() -> None:
    """What dumps_plain writes, pickle reads as the same value; what pickle writes for
    plain data (protocols 3-5: framing, memo, shared strings), loads_plain reads."""
    import pickle

    from orcha.protocol.wire import NotPlain, dumps_plain, loads_plain

    rng = random.Random(14)
    shared = "shared" * 50
    for _ in range(400):
        value = _plain(rng)
        assert pickle.loads(dumps_plain(value)) == value
        for protocol in (3, 4, 5):
            assert loads_plain(pickle.dumps(value, protocol)) == value
        nested = [shared, {"a": shared, "b": (shared, value)}, shared]  # BINGET
        assert loads_plain(pickle.dumps(nested, 4)) == nested
    others: list[object] = [RuntimeError("x"), {1, 2}, frozenset(), bytearray(b"x"), 1j, type]
    for other in others:
        with pytest.raises(NotPlain):
            dumps_plain([other])
        with pytest.raises(NotPlain):
            loads_plain(pickle.dumps(("#ERROR", other), 4))


def test_the_lean_wire_imports_no_pickle_module_and_no_re() -> None:
    import subprocess
    import sys

    code = ("import sys; before = set(sys.modules); import orcha.protocol.wire; "
            "print(' '.join(sorted(set(sys.modules) - before)))")  # fmt: skip
    added = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.split()  # fmt: skip
    assert not {"_pickle", "pickle", "re", "json", "typing"} & set(added), added


@pytest.mark.parametrize("digest", ["md5", "sha256", "sha384", "sha3_256", "sha3_384"])
def test_the_handshake_mac_is_hmac_byte_for_byte(digest: str) -> None:
    """The client's own HMAC (built-in hash functions, no OpenSSL) gives hmac's bytes
    for every digest a service may name, for keys shorter than, as long as and longer
    than the hash's block (longer ones are hashed first)."""
    from orcha.protocol.wire import _hash, mac

    assert _hash(digest) is not None  # this interpreter has them: the fallback is not tested
    for length in (0, 1, 32, 64, 65, 104, 128, 136, 137, 200):
        key = os.urandom(length)
        for message in (b"", os.urandom(20), os.urandom(1000)):
            assert mac(key, message, digest) == hmac.new(key, message, digest).digest()


def test_the_handshake_mac_falls_back_to_hmac_without_built_in_hashes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orcha.protocol import wire

    monkeypatch.setattr(wire, "_HASHES", {})
    assert wire._hash("sha256") is None
    assert wire.mac(KEY, b"m", "sha256") == hmac.new(KEY, b"m", "sha256").digest()
