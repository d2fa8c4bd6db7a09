"""What the benchmarks share: a private orcha environment and the command to run orcha."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any


def private_env(prefix: str) -> tuple[Path, dict[str, str]]:
    """A new temporary directory and an environment whose orcha lives in it (runtime and
    state directories there; no address or key inherited from the caller)."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    env = {
        **os.environ,
        "ORCHA_RUNTIME_DIR": str(root / "run"),
        "ORCHA_STATE_DIR": str(root / "state"),
    }
    env.pop("ORCHA_ADDRESS", None)
    env.pop("ORCHA_KEY", None)
    return root, env


def orcha_command() -> list[str]:
    """The ``orcha`` script beside this Python (as users run it), else ``python -m orcha``."""
    script = Path(sys.executable).with_name("orcha")
    return [str(script)] if script.exists() else [sys.executable, "-m", "orcha"]


def start_service(orcha: list[str], env: dict[str, str], root: Path, max_running: int) -> Any:
    """Start ``orcha serve --max-running N`` with ``env`` (stderr to root/service.err),
    wait for its banner, point this process's client settings at it, and return
    (the Popen, an open Session). SystemExit with the service's stderr if it fails."""
    import subprocess

    with open(root / "service.err", "wb") as err:
        service = subprocess.Popen(
            [*orcha, "serve", "--max-running", str(max_running)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert service.stdout is not None
    banner = service.stdout.readline().decode()
    if "listening on" not in banner:
        raise SystemExit(f"bench: the service did not start\n{service_err(root)}")
    service.service_pid = banner_pid(banner)  # type: ignore[attr-defined]
    from orcha import settings
    from orcha.client.session import Session

    for name in ("ORCHA_RUNTIME_DIR", "ORCHA_STATE_DIR"):
        os.environ[name] = env[name]
    os.environ.pop("ORCHA_ADDRESS", None)
    os.environ.pop("ORCHA_KEY", None)
    return service, Session.open(settings.resolve())


def banner_pid(banner: str) -> int:
    """The service's own PID from its banner (``(pid N, guard M, ...``): the process to
    measure; the Popen's PID is its guard's (orcha/service/guard.py)."""
    import re

    match = re.search(r"\(pid (\d+),", banner)
    if match is None:
        raise SystemExit(f"bench: no pid in the banner {banner!r}")
    return int(match.group(1))


def service_err(root: Path) -> str:
    """The last of what the service wrote on stderr (for error messages)."""
    try:
        return (root / "service.err").read_text(errors="replace")[-2000:]
    except OSError:
        return ""


def stop_service(service: Any, timeout: float = 60.0) -> tuple[float | None, int]:
    """SIGTERM the service and wait for it: (seconds it took, exit code), or (None, code)
    if it had to be killed after ``timeout`` seconds."""
    import signal
    import subprocess
    import time

    start = time.perf_counter()
    service.send_signal(signal.SIGTERM)
    try:
        service.wait(timeout)
    except subprocess.TimeoutExpired:
        service.kill()
        service.wait()
        return None, service.returncode
    return time.perf_counter() - start, service.returncode


def kill_leftovers(procs: Any, belongs: Any) -> list[int]:
    """Kill the processes of ``procs`` still running for which ``belongs(p)`` holds (the
    benchmark's petitions, left behind by a stop); return their PIDs."""
    import psutil

    left = []
    for p in procs:
        try:
            if p.is_running() and belongs(p):
                left.append(p)
        except psutil.Error:
            pass
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    return [p.pid for p in left]
