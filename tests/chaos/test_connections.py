"""Point 5: connections before authentication are bounded.

A local user without the key opens hundreds of connections (to a service allowed 120
threads: as root it runs as ``nobody``, or the kernel would not apply the limit),
trickles a handshake one byte at a time, or exhausts the service's file descriptors;
the service stays up, bounds its threads and its log, and keeps serving clients that
have the key.
"""

from __future__ import annotations

import os
import pwd
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest

from orcha.defaults import HANDSHAKE_TIMEOUT, MAX_UNAUTHENTICATED
from tests.chaos.conftest import serve_limited
from tests.conftest import Env, Service, wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _connect(address: str | tuple[str, int]) -> socket.socket | None:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(2)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        return None
    sock.setblocking(False)
    return sock


@contextmanager
def flood(address: str | tuple[str, int], count: int) -> Iterator[dict[str, int]]:
    """Keep ``count`` keyless connections open (each the service closes is opened
    again) until the block ends. Yields counters: how many were opened in all."""
    stats = {"opened": 0}
    stop = threading.Event()
    socks: list[socket.socket] = []

    def run() -> None:
        while not stop.is_set():
            while len(socks) < count and not stop.is_set():
                sock = _connect(address)
                if sock is None:
                    break
                socks.append(sock)
                stats["opened"] += 1
            readable, _, _ = select.select(socks, [], [], 0.05) if socks else ([], [], [])
            for sock in readable:
                try:
                    if sock.recv(4096):
                        continue  # the challenge: never answered
                except OSError:
                    pass
                sock.close()
                socks.remove(sock)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: stats["opened"] >= count, timeout=20), stats
        yield stats
    finally:
        stop.set()
        thread.join(10)
        for sock in socks:
            sock.close()


def serve_with_few_threads(env: Env, nproc: int, *args: str) -> Service:
    """``orcha serve ARGS`` allowed ``nproc`` processes and threads. The kernel does not
    apply that limit to root, so as root the service runs as ``nobody`` (owning the
    environment; clients get the key from ORCHA_KEY)."""
    if os.geteuid() != 0:
        return serve_limited(env, {"nproc": nproc}, *args)
    if shutil.which("prlimit") is None or shutil.which("setpriv") is None:
        pytest.skip("prlimit(1) and setpriv(1) are needed to limit threads as root")
    nobody = pwd.getpwnam("nobody")
    uid, gid = nobody.pw_uid, nobody.pw_gid
    as_nobody = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    probe = subprocess.run(
        [*as_nobody, sys.executable, "-c", "import orcha"], capture_output=True, timeout=30
    )
    if probe.returncode != 0:
        # A checkout in a folder only root may enter (mktemp -d makes one, mode 0700):
        # the service could not even import orcha as nobody.
        why = (probe.stderr.decode().strip().splitlines() or ["?"])[-1]
        pytest.skip(f"nobody cannot import orcha from here: {why}")
    for path in [env.root, *env.root.rglob("*")]:
        os.chown(path, uid, gid)
    service = Service(env, list(args), {}, ("serve",))
    service.prefix = ("prlimit", f"--nproc={nproc}", *as_nobody)
    env.services.append(service)
    service.start()
    env.vars["ORCHA_KEY"] = (env.state / "key").read_text().strip()
    return service


def test_a_keyless_flood_on_tcp_neither_kills_the_service_nor_locks_out_clients(
    env: Env,
) -> None:
    port = _free_port()
    env.vars["ORCHA_ADDRESS"] = f"127.0.0.1:{port}"
    service = serve_with_few_threads(env, 120, "--max-running", "2", "--grace", "1")
    proc = psutil.Process(service.pid)
    with flood(("127.0.0.1", port), 300) as stats:
        threads = proc.num_threads()
        ls = env.run("ls", timeout=30)
        run = env.run("run", "keyed", "--", "echo", "keyed", timeout=30)
        threads = max(threads, proc.num_threads())
    print(f"flood: {stats['opened']} keyless connections opened, service threads at most "
          f"{threads}")  # fmt: skip
    assert service.proc is not None and service.proc.poll() is None, service.stderr
    assert ls.returncode == 0, ls.stderr
    assert run.returncode == 0 and run.stdout == "keyed\n", run.stderr
    assert threads < MAX_UNAUTHENTICATED + 40
    assert "internal error" not in service.stderr


def test_a_handshake_trickled_one_byte_at_a_time_is_cut_off(env: Env) -> None:
    env.serve("--grace", "1")
    sock = _connect(str(env.socket))
    assert sock is not None
    sock.setblocking(True)
    # A frame header announcing 100 bytes, then the bytes: every read gets a byte in
    # time, so only a deadline on the whole handshake ends it.
    trickle = iter(struct.pack("!i", 100) + b"a" * 100)
    started = time.monotonic()
    closed = False
    try:
        sock.settimeout(2.5)
        # Without a deadline on the whole handshake this would be held for minutes.
        while time.monotonic() - started < 6 * HANDSHAKE_TIMEOUT:
            try:
                if sock.recv(4096) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
            except OSError:
                closed = True
                break
            try:
                sock.send(bytes((next(trickle),)))
            except OSError:
                closed = True
                break
    finally:
        sock.close()
    held = time.monotonic() - started
    print(f"slow loris: closed after {held:.1f} s")
    # Closed within 6 x HANDSHAKE_TIMEOUT (the loop gives up then, so ``closed`` is that
    # bound): without a deadline on the whole handshake its 104 bytes, one every 2.5 s,
    # would hold it for over 4 minutes. Bounded that far from the alternative (not by
    # 3 x, as before) so that a loaded machine, late with the service's deadline by some
    # seconds, cannot fail it.
    assert closed, f"a one-byte-every-2.5 s handshake was still open after {held:.0f} s"


def test_out_of_descriptors_the_service_backs_off_and_logs_little(env: Env) -> None:
    service = serve_limited(env, {"nofile": 64}, "--grace", "1")
    before = len(service.stderr_lines)
    with flood(str(env.socket), 150) as stats:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # hold the flood while the service is out of fds
            time.sleep(0.1)
        during = env.run("ls", timeout=30)
    assert wait_for(lambda: env.run("ls", timeout=30).returncode == 0, timeout=20)
    lines = service.stderr_lines[before:]
    print(f"fd flood: {stats['opened']} connections, {len(lines)} log lines, a keyed client "
          f"during the flood exited {during.returncode}")  # fmt: skip
    assert service.proc is not None and service.proc.poll() is None, service.stderr
    print("".join(lines))
    assert len(lines) < 20, "".join(lines)
