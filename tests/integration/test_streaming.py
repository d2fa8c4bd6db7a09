"""Streaming a petition's output through the real service: a client that does not read
holds the petition back instead of growing the service's memory."""

from __future__ import annotations

import psutil

from orcha.defaults import OUTPUT_BUFFER_BYTES, PIPE_CHUNK
from tests.conftest import Env, Service, wait_for

#: Output of the petition: many times the bound, so an unbounded service would show it.
_TOTAL = 96 << 20
#: How much the service may grow meanwhile: the bound, a batch, and a generous margin.
_GROWTH = 48 << 20


def test_a_client_that_does_not_read_does_not_grow_the_service(env: Env, service: Service) -> None:
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
