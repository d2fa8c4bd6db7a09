"""Fault injection for the chaos suite (``pytest -m chaos``; part of the normal run).

Each test here starts a real ``orcha serve`` (the fixtures of ``tests/conftest.py``) and
hurts it the way a hostile user, a full disk or a dying process would. What a fault needs
that this machine may not give (root for a tmpfs, ``prlimit``, cgroups) is checked here,
and a test that cannot have it is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Env, Service


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.chaos)


@pytest.fixture
def tmpfs() -> Iterator[Callable[[str], Path]]:
    """Mount a tmpfs of the given size (``"2m"``) and return its path: a disk that
    really fills up. Skips unless this process may mount (CI runs as root)."""
    mounts: list[Path] = []

    def _mount(size: str) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("a small tmpfs needs root and mount(8)")
        path = Path(tempfile.mkdtemp(prefix="orcha-fs-", dir="/tmp"))
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            path.rmdir()
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounts.append(path)
        return path

    yield _mount
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
        shutil.rmtree(path, ignore_errors=True)


def fill(path: Path) -> Path:
    """Fill the file system holding ``path`` until a write fails; returns the filler file
    (delete it to free the space)."""
    filler = path / "filler"
    with open(filler, "wb") as f:
        block = b"\0" * 65536
        try:
            while True:
                f.write(block)
                f.flush()
        except OSError:
            pass
    return filler


def serve_limited(env: Env, limits: dict[str, int], *args: str) -> Service:
    """Start ``orcha serve ARGS`` under ``prlimit`` (e.g. ``{"nproc": 120, "nofile": 64}``);
    skips if prlimit is missing."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit(1) is not installed")
    flags = tuple(f"--{name}={value}" for name, value in limits.items())
    service = Service(env, list(args), {}, ("serve",))
    service.prefix = ("prlimit", *flags)
    env.services.append(service)
    service.start()
    return service


# -- the service's processes, clients, and what a test leaves behind ----------------------------
def service_pid(service: Service) -> int:
    """The PID of the process that serves (its threads, memory and descriptors), whether
    ``orcha serve`` runs it itself or under a guard: ``Service.service_pid`` if the
    fixture has it, else the PID the banner names ("pid N"), else the serve process, or
    its only orcha child if it has exactly one (the serve process is then a guard)."""
    try:
        known = getattr(service, "service_pid", None)
    except AssertionError:  # the fixture's reads the banner, which may not have come
        known = None
    if isinstance(known, int):
        return known
    found = re.search(r"\(pid (\d+)", service.banner)
    if found:
        return int(found.group(1))
    try:
        kids = [
            p for p in psutil.Process(service.pid).children()
            if any("orcha" in part for part in p.cmdline()[:3])
        ]  # fmt: skip
    except psutil.Error:
        return service.pid
    return kids[0].pid if len(kids) == 1 else service.pid


def guard_pid(service: Service) -> int | None:
    """The guard process above the service (the serve process itself), if there is one."""
    pid = service_pid(service)
    return service.pid if pid != service.pid else None


def crash(service: Service, timeout: float = 20.0) -> None:
    """SIGKILL the serving process, as a crash would, and wait until every process of
    ``orcha serve`` (the guard too, if there is one) has exited; the test fails if one
    is still alive after ``timeout`` seconds."""
    assert service.proc is not None
    pid = service_pid(service)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    try:
        service.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"orcha serve (pid {service.pid}) outlived its service") from None
    if pid != service.pid:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).wait(timeout)


def start_unready(env: Env, *args: str) -> Service:
    """Start ``orcha serve ARGS`` without waiting for "listening on" (a service that may
    die before it listens: a restart that runs a petition which kills it)."""
    service = Service(env, list(args), {}, ("serve",))
    env.services.append(service)
    service.start(expect_ready=False)
    return service


def env_processes(env: Env) -> list[psutil.Process]:
    """Live processes of this user (not this one) whose environment names ``env``'s state
    directory: its services and clients, and the petitions they started with their
    descendants, orphans included."""
    me, uid, wanted = os.getpid(), os.getuid(), str(env.state)
    found = []
    for proc in psutil.process_iter(["uids", "status"]):
        try:
            if proc.pid == me or proc.info["uids"].real != uid:
                continue
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("ORCHA_STATE_DIR") == wanted:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


@pytest.fixture
def sweep(env: Env) -> Iterator[Callable[[], list[psutil.Process]]]:
    """Yields ``env_processes`` for ``env`` (what would be left behind now); after the
    test, kills every such process, so a failed test leaves none."""
    yield lambda: env_processes(env)
    found = env_processes(env)
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(found, timeout=5)


@pytest.fixture
def client(env: Env) -> Iterator[Callable[[], Any]]:
    """Yields a function returning an ``orcha.Client`` of ``env``'s service (once it
    has started and written its key); every client made is closed after the test."""
    from orcha import Client

    made: list[Any] = []

    def _client() -> Any:
        key = (env.state / "key").read_text().strip()
        made.append(Client(address=str(env.socket), key=key))
        return made[-1]

    yield _client
    for c in made:
        with contextlib.suppress(Exception):
            c.close()
