"""Fault injection for the chaos suite (``pytest -m chaos``; part of the normal run).

Each test here starts a real ``orcha serve`` (the fixtures of ``tests/conftest.py``) and
hurts it the way a hostile user, a full disk or a dying process would. What a fault needs
that this machine may not give (root for a tmpfs, ``prlimit``, cgroups) is checked here,
and a test that cannot have it is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

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
