"""Load: 100 concurrent clients x 10 petitions each, all with correct output and codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import Env, wait_for

CLIENTS = 100
PETITIONS = 10


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_hundred_concurrent_clients(env: Env) -> None:
    service = env.serve("--max-running", "4")
    driver = Path(__file__).with_name("load_client.py")
    root = Path(__file__).parent.parent.parent
    procs = [
        subprocess.Popen(
            [sys.executable, str(driver), str(i), str(PETITIONS)],
            env={**env.vars, "PYTHONPATH": str(root)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(CLIENTS)
    ]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            results.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    bad = [r for r in results if r[0] != 0]
    assert not bad, bad[:3]
    assert sum(f"{PETITIONS}/{PETITIONS} ok" in r[1] for r in results) == CLIENTS
    # Nothing leaked in the service: no petition processes, queues, proxies or sessions.
    # (Below its guard: the service alone and its process spawner, if it has one, with
    # no child; no orphan reparented to the guard.)
    below = psutil.Process(service.pid).children

    def left() -> list[int]:
        return [p.pid for p in below(recursive=True) if not _spawner(p)]

    assert wait_for(lambda: left() == [service.service_pid], 10)
    info = env.info()
    assert info["petitions"] == [] and info["served_objects"] == 0, info
    assert info["sessions"] == 1, info  # the one asking
    assert service.stop() == 0


def _spawner(proc: psutil.Process) -> bool:
    """Whether ``proc`` is the service's process spawner (orcha.service.zygote)."""
    try:
        return any(arg.endswith("zygote.py") for arg in proc.cmdline())
    except psutil.Error:
        return False
