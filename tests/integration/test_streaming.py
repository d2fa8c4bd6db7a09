"""Streaming a petition's output through the real service (one service for the module):
a client that does not read holds the petition back instead of growing the service's
memory; ``--ordered`` keeps the order between stdout and stderr however fast they come."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from orcha.defaults import OUTPUT_BUFFER_BYTES, PIPE_CHUNK
from tests.conftest import Env, Service, private_env, wait_for

#: Output of the petition: many times the bound, so an unbounded service would show it.
_TOTAL = 48 << 20
#: How much the service may grow meanwhile: the bound, a batch, and a generous margin.
_GROWTH = 32 << 20


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[Env, Service]]:
    with private_env("orcha-st-") as env:
        yield env, env.serve("--max-running", "2", "--grace", "1")


def test_a_client_that_does_not_read_does_not_grow_the_service(
    shared: tuple[Env, Service],
) -> None:
    env, service = shared
    proc = psutil.Process(service.service_pid)
    before = proc.memory_info().rss
    client = env.popen("run", "flood", "--", "head", "-c", str(_TOTAL), "/dev/zero")
    try:
        # The client reads nothing: its stdout pipe fills, then its socket, then the
        # petition's queue up to the bound, and the petition waits. (A service that
        # buffered without bound would grow instead.)
        def grown() -> int:
            return int(proc.memory_info().rss - before)

        def full_or_grown() -> bool:
            return env.info()["output_peak_bytes"] >= OUTPUT_BUFFER_BYTES or grown() > _GROWTH

        assert wait_for(full_or_grown, 30)
        assert grown() <= _GROWTH, f"the service grew by {grown() >> 20} MiB"
        out, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 0, err
    assert len(out) == _TOTAL and not out.strip(b"\0")
    # Queued and being written to the client, together: the bound plus one read.
    assert env.info()["output_peak_bytes"] <= OUTPUT_BUFFER_BYTES + PIPE_CHUNK


_FOUR = "echo 1; echo 2 >&2; echo 3; echo 4 >&2"


def _merged(env: Env, *args: str) -> bytes:
    """What an orcha command prints, stdout and stderr on one pipe."""
    done = subprocess.run(
        [sys.executable, "-m", "orcha", *args], env=env.vars, timeout=60,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
    return done.stdout


def test_ordered_keeps_the_order_the_petition_wrote_in(shared: tuple[Env, Service]) -> None:
    env, _ = shared
    attached = env.run_bytes("run", "--ordered", "four", "--", "sh", "-c", _FOUR)
    # The attached client still keeps the streams apart.
    assert (attached.returncode, attached.stdout, attached.stderr) == (0, b"1\n3\n", b"2\n4\n")
    assert _merged(env, "logs", "four") == b"1\n2\n3\n4\n"
    assert _merged(env, "follow", "four") == b"1\n2\n3\n4\n"
    assert _merged(env, "logs", "--tail", "2", "four") == b"3\n4\n"


def test_one_write_beyond_the_socket_buffer_fails_in_the_petition(
    shared: tuple[Env, Service],
) -> None:
    """The documented price of --ordered: one write larger than the petition's socket
    buffer (8 MiB as the service raises it) fails with EMSGSIZE where a pipe would have
    blocked; the petition sees the error."""
    env, _ = shared
    code = "import os\ntry:\n    os.write(1, bytes(16 << 20))\nexcept OSError as e:\n" \
        "    print(e.errno, file=__import__('sys').stderr); raise SystemExit(3)"  # fmt: skip
    done = env.run_bytes("run", "--ordered", "huge", "--", sys.executable, "-c", code)
    assert done.returncode == 3 and done.stderr.split() == [b"90"], done.stderr
