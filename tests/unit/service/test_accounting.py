"""Accounting (orcha.service.accounting and what feeds it): wait4's figures for a
reaped process, a cgroup's cpu.stat and memory.peak, how attempts add up, wall time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from orcha.model import Petition
from orcha.protocol.outputs import DISCARD
from orcha.service.accounting import live_usage, wall_time
from orcha.service.cgroups import Cgroups
from orcha.service.job import Job
from orcha.service.machines import LocalMachine
from orcha.service.procs import ProcessControl
from orcha.service.rusage import high_water, own_peak, reap
from tests.unit.test_cgroups import _fs

MIB = 1 << 20


def _job() -> Job:
    petition = Petition(id="a", queue=DISCARD, action=None, condition=None)  # type: ignore[arg-type]
    return Job(petition, native=True, token_prefix="t")


def test_reap_gives_the_kernels_cpu_time_and_peak_of_what_the_process_waited_for() -> None:
    # The child burns CPU and writes 40 MB more than this process ever held (what its
    # exec counts into its figure: see the next test); its parent (the reaped process)
    # waits for it.
    size = high_water() + (40 << 20)
    burn = (
        f"import time; block = b'x' * {size}; t = time.process_time()\n"
        "while time.process_time() - t < 0.1: pass"
    )
    proc = subprocess.Popen(["sh", "-c", f'"{sys.executable}" -c "{burn}"; exit 3'])
    returncode, cpu, rss = reap(proc)
    assert returncode == 3 and proc.returncode == 3 and proc.wait() == 3
    assert cpu is not None and 0.1 <= cpu < 20
    assert rss is not None and size <= rss < size + 1024 * MIB
    # Reaped already (by poll or wait): no figures, the same returncode.
    assert reap(proc) == (3, None, None)


def test_a_small_processs_peak_is_unknown_not_the_size_of_its_starter() -> None:
    # Linux counts the memory of the process that started a child (this one) into the
    # child's ru_maxrss at its exec: 'true' would show this process's size.
    for spawn in (
        lambda: subprocess.Popen(["true"]),  # vfork (posix_spawn) or fork
        lambda: subprocess.Popen(["true"], preexec_fn=lambda: None),  # a real fork
    ):
        returncode, cpu, rss = reap(spawn())
        assert (returncode, rss) == (0, None) and cpu is not None
    assert own_peak(1) is None and own_peak((high_water() >> 10) + 1024) is not None


def test_a_killed_process_reaps_to_popens_negative_returncode() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), 9)"])
    assert reap(proc)[0] == -9 == proc.returncode


def test_attempts_add_up_cpu_and_keep_the_largest_peak() -> None:
    job = _job()
    assert (job.cpu_time, job.peak_rss) == (None, None)
    job.used(1.5, 10 * MIB)
    job.used(0.5, 4 * MIB)
    assert (job.cpu_time, job.peak_rss) == (2.0, 10 * MIB)
    job.used(1.0, total=True)  # a cgroup's total below what was summed: kept
    job.used(3.0, 12 * MIB, total=True)
    assert (job.cpu_time, job.peak_rss) == (3.0, 12 * MIB)


def test_a_petitions_cgroup_accounts_for_its_whole_tree(tmp_path: Path) -> None:
    cgroups = Cgroups.setup(_fs(tmp_path), pid=4242)
    job = _job()
    cgroups.create(job.token)
    path = Path(cgroups.path(job.token))
    (path / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    (path / "memory.peak").write_text(f"{64 * MIB}\n")
    assert cgroups.cpu_seconds(job.token) == 2.5
    machine = LocalMachine(procs=ProcessControl(cgroups=cgroups))
    job.used(1.0, 80 * MIB)  # what wait4 said of the main process
    machine.account(job)
    assert (job.cpu_time, job.peak_rss) == (2.5, 80 * MIB)
    assert cgroups.cpu_seconds("none") is None


def test_a_cgroups_peak_is_its_memory_peak_never_its_memory_now(tmp_path: Path) -> None:
    cgroups = Cgroups.setup(_fs(tmp_path), pid=4242)
    cgroups.memory = True
    job = _job()
    cgroups.create(job.token)
    path = Path(cgroups.path(job.token))
    (path / "memory.peak").unlink(missing_ok=True)  # a kernel before 5.19
    (path / "memory.current").write_text(f"{3 * MIB}\n")  # the page cache left, say
    machine = LocalMachine(procs=ProcessControl(cgroups=cgroups))
    machine.account(job)
    assert job.peak_rss is None
    (path / "memory.peak").write_text(f"{64 * MIB}\n")
    machine.account(job)
    assert job.peak_rss == 64 * MIB


def test_wall_time_is_the_time_from_start_to_end() -> None:
    assert wall_time({"started": None, "state": "QUEUED"}, 100.0) is None
    assert wall_time({"started": 10.0, "ended": 12.5, "state": "FAILED"}, 100.0) == 2.5
    assert wall_time({"started": 10.0, "ended": None, "state": "RUNNING"}, 100.0) == 90.0
    assert wall_time({"started": 10.0, "ended": None, "state": "INTERRUPTED"}, 100.0) is None


def test_a_running_petitions_usage_adds_its_live_tree() -> None:
    job = _job()
    job.used(1.0, 5 * MIB)
    machine: Any = SimpleNamespace(
        measure_tree=lambda j: {"processes": 2.0, "cpu_seconds": 0.25, "rss": float(9 * MIB)}
    )
    job.machine = machine
    assert live_usage(job) == {"cpu_time": 1.25, "peak_rss": 9 * MIB}
    machine.measure_tree = lambda j: 1 / 0  # a tree that cannot be measured: what is known
    assert live_usage(job) == {"cpu_time": 1.0, "peak_rss": 5 * MIB}
