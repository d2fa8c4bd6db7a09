"""Per-petition cgroups (orcha.service.cgroups) on a fake cgroupfs: a directory whose
"cgroups" get the interface files a kernel would create."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from orcha.service.cgroup_fs import CgroupFS, CgroupUnavailable
from orcha.service.cgroups import Cgroups
from tests.conftest import wait_for


class FakeCgroupFS(CgroupFS):
    """A cgroupfs stand-in on a plain directory: ``mkdir`` creates the interface files
    a kernel would; ``rmdir`` removes them (refused while processes are listed)."""

    def __init__(self, root: Path, own: str = "/svc", cgroup2: bool = True) -> None:
        super().__init__(str(root))
        self._own = own
        self.cgroup2 = cgroup2
        self.killed: list[str] = []

    def is_cgroup2(self) -> bool:
        return self.cgroup2

    def own(self) -> str:
        return self._own

    def mkdir(self, path: str) -> None:
        os.mkdir(path)
        parent = os.path.dirname(path)
        enabled = self.read(os.path.join(parent, "cgroup.subtree_control")).split()
        files = {"cgroup.procs": "", "cgroup.kill": "", "cgroup.subtree_control": "",
                 "cgroup.controllers": " ".join(enabled),
                 "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"}  # fmt: skip
        if "memory" in enabled:
            files.update({"memory.max": "max\n", "memory.swap.max": "max\n",
                          "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
                          "memory.peak": "0\n"})  # fmt: skip
        for name, text in files.items():
            CgroupFS.write(self, os.path.join(path, name), text)

    def write(self, path: str, text: str) -> None:
        name = os.path.basename(path)
        if name == "cgroup.kill":
            self.killed.append(os.path.dirname(path))
            super().write(os.path.join(os.path.dirname(path), "cgroup.procs"), "")
            return
        if name == "cgroup.subtree_control" and text.strip():
            current = set(self.read(path).split()) if os.path.exists(path) else set()
            for word in text.split():
                (current.add if word[0] == "+" else current.discard)(word[1:])
            text = " ".join(sorted(current))
        super().write(path, text)

    def rmdir(self, path: str) -> None:
        if self.read(os.path.join(path, "cgroup.procs")).split():
            raise OSError(16, "Device or resource busy", path)
        shutil.rmtree(path)


def _fs(tmp_path: Path, controllers: str = "cpu memory pids io") -> FakeCgroupFS:
    base = tmp_path / "svc"
    base.mkdir()
    (base / "cgroup.controllers").write_text(controllers)
    (base / "cgroup.subtree_control").write_text("")
    (base / "cgroup.procs").write_text("4242\n")
    return FakeCgroupFS(tmp_path)


def test_setup_moves_the_service_into_a_leaf_and_enables_memory(tmp_path: Path) -> None:
    fs = _fs(tmp_path)
    cgroups = Cgroups.setup(fs, pid=4242, namespace="ns")
    assert (tmp_path / "svc" / "orcha-service" / "cgroup.procs").read_text() == "4242"
    assert cgroups.memory
    assert (tmp_path / "svc" / "cgroup.subtree_control").read_text().split() == [
        "memory", "pids"
    ]  # fmt: skip


def test_a_service_already_in_its_leaf_keeps_the_cgroup_above(tmp_path: Path) -> None:
    fs = _fs(tmp_path)
    Cgroups.setup(fs, pid=4242)
    fs._own = "/svc/orcha-service"  # the next service, started from the first one's leaf
    cgroups = Cgroups.setup(fs, pid=4343)
    assert cgroups.base == str(tmp_path / "svc")
    assert not (tmp_path / "svc" / "orcha-service" / "orcha-service").exists()


def test_without_cgroup2_or_rights_setup_says_why(tmp_path: Path) -> None:
    fs = _fs(tmp_path)
    fs.cgroup2 = False
    with pytest.raises(CgroupUnavailable, match="not a cgroup v2 mount"):
        Cgroups.setup(fs, pid=1)
    fs = FakeCgroupFS(tmp_path, own="/missing")
    with pytest.raises(CgroupUnavailable, match="cannot create cgroups under"):
        Cgroups.setup(fs, pid=1)


def test_a_petitions_cgroup_limits_memory_and_counts_oom_kills(tmp_path: Path) -> None:
    cgroups = Cgroups.setup(_fs(tmp_path), pid=4242, namespace="ns")
    procs = cgroups.create("tok", memory_limit=10 << 20)
    path = tmp_path / "svc" / "orcha-p-ns-tok"
    assert procs == str(path / "cgroup.procs")
    assert (path / "memory.max").read_text() == str(10 << 20)
    assert (path / "memory.swap.max").read_text() == "0"
    assert cgroups.oom_kills("tok") == 0
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (path / "memory.peak").write_text(f"{10 << 20}\n")
    assert cgroups.oom_kills("tok") == 1
    assert cgroups.usage("tok") == 10 << 20


def test_without_the_memory_controller_there_is_no_memory_max(tmp_path: Path) -> None:
    cgroups = Cgroups.setup(_fs(tmp_path, controllers="cpu pids"), pid=4242)
    assert not cgroups.memory
    cgroups.create("tok", memory_limit=10 << 20)
    assert not (tmp_path / "svc" / "orcha-p-tok" / "memory.max").exists()


def test_the_main_process_enters_its_cgroup_before_it_execs(tmp_path: Path) -> None:
    argv = Cgroups.wrap("/cg/orcha-p-tok/cgroup.procs", ["python3", "-c", "print(1)"])
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[3:] == ["/cg/orcha-p-tok/cgroup.procs", "python3", "-c", "print(1)"]
    # The line itself, run by a real shell on a plain file standing for cgroup.procs.
    procs = tmp_path / "cgroup.procs"
    import subprocess

    done = subprocess.run(Cgroups.wrap(str(procs), ["echo", "hi"]), capture_output=True)
    assert done.stdout == b"hi\n" and procs.read_text() == "0\n"
    bad = subprocess.run(Cgroups.wrap(str(tmp_path / "no" / "x"), ["echo", "hi"]))
    assert bad.returncode == 127  # never runs outside its cgroup


def test_kill_remove_and_stale_cgroups(tmp_path: Path) -> None:
    fs = _fs(tmp_path)
    cgroups = Cgroups.setup(fs, pid=4242, namespace="ns")
    cgroups.create("tok")
    path = tmp_path / "svc" / "orcha-p-ns-tok"
    (path / "cgroup.procs").write_text("11\n12\n")
    assert cgroups.pids("tok") == [11, 12]
    cgroups.kill("tok")
    assert fs.killed == [str(path)] and cgroups.pids("tok") == []
    assert cgroups.remove("tok") and not path.exists()
    # A previous run's cgroups (this namespace only) are killed and removed at setup.
    cgroups.create("old")
    (tmp_path / "svc" / "orcha-p-ns-old" / "cgroup.procs").write_text("13\n")
    other = Cgroups(fs, cgroups.base, memory=True, namespace="other")
    other.create("theirs")
    Cgroups.setup(fs, pid=4242, namespace="ns")
    assert not (tmp_path / "svc" / "orcha-p-ns-old").exists()
    assert (tmp_path / "svc" / "orcha-p-other-theirs").exists()


def test_a_parent_alone_in_the_cgroup_moves_into_the_leaf_too(tmp_path: Path) -> None:
    fs = _fs(tmp_path)
    (tmp_path / "svc" / "cgroup.procs").write_text(f"{os.getppid()}\n")  # the service left
    Cgroups.setup(fs, pid=4242)
    assert (tmp_path / "svc" / "orcha-service" / "cgroup.procs").read_text() == str(os.getppid())


def test_other_processes_in_the_cgroup_are_left_alone(tmp_path: Path) -> None:
    fs = _fs(tmp_path)
    (tmp_path / "svc" / "cgroup.procs").write_text(f"{os.getppid()}\n777\n")
    Cgroups.setup(fs, pid=4242)
    assert (tmp_path / "svc" / "orcha-service" / "cgroup.procs").read_text() == "4242"


def test_empty_cgroups_of_dead_services_are_removed(tmp_path: Path) -> None:
    fs = _fs(tmp_path)
    cgroups = Cgroups.setup(fs, pid=4242, namespace="ns")
    dead = Cgroups(fs, cgroups.base, memory=True, namespace="other")
    dead.create("999999999.123-1")  # its service's PID is no process
    alive = Cgroups(fs, cgroups.base, memory=True, namespace="more")
    alive.create(f"{os.getpid()}.123-1")
    busy = Cgroups(fs, cgroups.base, memory=True, namespace="busy")
    busy.create("999999999.123-2")
    (Path(busy.path("999999999.123-2")) / "cgroup.procs").write_text("5\n")
    Cgroups.setup(fs, pid=4242, namespace="ns")
    assert not os.path.exists(dead.path("999999999.123-1"))
    assert os.path.exists(alive.path(f"{os.getpid()}.123-1"))
    assert os.path.exists(busy.path("999999999.123-2"))


def test_a_tree_spawned_into_its_cgroup_is_contained_and_commands_are_rechecked(
    tmp_path: Path,
) -> None:
    """What the sweep after a petition's end may skip: its main processes were spawned
    into its cgroup (none that its action reported from elsewhere); and a command found
    once is checked again where it was found, so one no longer executable is refused."""
    from orcha.defaults import ENV_PETITION_TOKEN
    from orcha.service.procs import ProcessControl

    procs = ProcessControl(cgroups=Cgroups.setup(_fs(tmp_path), pid=4242))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", ENV_PETITION_TOKEN: "tok"}
    proc = procs.spawn(["tool"], cwd="/", env=env)
    proc.communicate()
    assert proc.returncode == 0
    assert procs.contained("tok", [proc.pid])
    assert not procs.contained("tok", [proc.pid, 1])  # 1: reported, not spawned here
    assert not procs.contained("other", [proc.pid])
    tool.chmod(0o644)
    with pytest.raises(PermissionError):
        procs.spawn(["tool"], cwd="/", env=env)
    procs.finished("tok")
    assert not procs.contained("tok", [proc.pid])


def _cpu(cgroups: Cgroups, token: str, usec: int) -> None:
    """The kernel's count of CPU time in petition ``token``'s cgroup, all petitions in it."""
    Path(cgroups.path(token), "cpu.stat").write_text(f"usage_usec {usec}\nuser_usec 0\n")


def test_an_emptied_cgroup_goes_to_the_next_petition_which_is_charged_only_its_own_cpu(
    tmp_path: Path,
) -> None:
    fs = _fs(tmp_path, controllers="cpu pids")  # no memory controller: reusable
    cgroups = Cgroups.setup(fs, pid=4242, namespace="ns")
    assert cgroups.reusing
    procs = cgroups.create("a")
    # Named for the service, not the petition: it will hold others.
    assert procs == str(tmp_path / "svc" / f"orcha-p-ns-{os.getpid()}.c1" / "cgroup.procs")
    Path(procs).write_text("11\n")
    assert not cgroups.emptied("a") and not cgroups.release("a")  # still busy: not kept
    Path(procs).write_text("")
    assert cgroups.emptied("a")
    _cpu(cgroups, "a", 5000)
    assert cgroups.cpu_seconds("a") == 0.005
    assert cgroups.release("a")
    assert cgroups.create("b") == procs  # the same cgroup, not a new one
    _cpu(cgroups, "b", 8000)
    assert cgroups.cpu_seconds("b") == 0.003  # not what "a" used before it
    # The petition that had it no longer sees, nor kills, what runs in it now.
    Path(procs).write_text("21\n")
    assert cgroups.pids("a") == [] and cgroups.pids("b") == [21]
    cgroups.kill("a")
    assert fs.killed == [] and cgroups.pids("b") == [21]
    cgroups.kill("b")
    assert fs.killed == [os.path.dirname(procs)]


def test_a_cgroup_is_kept_only_if_found_empty_since_its_last_process_started(
    tmp_path: Path,
) -> None:
    fs = _fs(tmp_path, controllers="cpu pids")
    cgroups = Cgroups.setup(fs, pid=4242, namespace="ns")
    first = cgroups.create("a")
    assert cgroups.emptied("a")
    cgroups.create("a")  # a second attempt starts a process: the look before is stale
    assert not cgroups.release("a")
    assert cgroups.remove("a") and not os.path.exists(os.path.dirname(first))
    # Never looked at (a cancelled petition, say): removed, not kept.
    cgroups.create("b")
    assert not cgroups.release("b") and cgroups.remove("b")
    assert cgroups.create("c") != first  # nothing was kept: a new one


def test_spares_are_bounded_removed_at_stop_and_at_the_next_start(tmp_path: Path) -> None:
    fs = _fs(tmp_path, controllers="cpu pids")
    cgroups = Cgroups.setup(fs, pid=4242, namespace="ns")
    cgroups.spares = 1
    for token in ("a", "b"):
        cgroups.create(token)
    assert cgroups.emptied("a") and cgroups.emptied("b")
    assert cgroups.release("a")
    assert not cgroups.release("b")  # one spare at most: this one is removed
    assert cgroups.remove("b")
    made = sorted(n for n in os.listdir(tmp_path / "svc") if n.startswith("orcha-p-"))
    assert made == [f"orcha-p-ns-{os.getpid()}.c1"]
    cgroups.remove_spares()
    assert not [n for n in os.listdir(tmp_path / "svc") if n.startswith("orcha-p-")]
    # A service that died with spares: the next one removes them, as any of its cgroups.
    cgroups.create("c")
    assert cgroups.emptied("c") and cgroups.release("c")
    Cgroups.setup(fs, pid=4242, namespace="ns")
    assert not [n for n in os.listdir(tmp_path / "svc") if n.startswith("orcha-p-")]


def test_with_the_memory_controller_every_petition_gets_a_new_cgroup(tmp_path: Path) -> None:
    cgroups = Cgroups.setup(_fs(tmp_path), pid=4242, namespace="ns")
    assert cgroups.memory and not cgroups.reusing  # memory.peak cannot be reset
    procs = cgroups.create("a")
    assert procs == str(tmp_path / "svc" / "orcha-p-ns-a" / "cgroup.procs")
    assert cgroups.emptied("a") and not cgroups.release("a")
    assert cgroups.remove("a")
    assert cgroups.create("b") == str(tmp_path / "svc" / "orcha-p-ns-b" / "cgroup.procs")


@pytest.mark.parametrize("controllers", ["cpu pids", "cpu memory pids"])
def test_a_killed_cgroup_never_gets_a_process_again(tmp_path: Path, controllers: str) -> None:
    """Some kernels (6.18 here) SIGKILL a child cloned into a cgroup after its
    ``cgroup.kill``: the next attempt of the petition gets a new cgroup, the killed one
    is not kept for others, and it is removed at the stop."""
    fs = _fs(tmp_path, controllers=controllers)
    cgroups = Cgroups.setup(fs, pid=4242, namespace="ns")
    first = cgroups.create("a")
    cgroups.kill("a")  # a timeout's forced stop, say
    assert fs.killed == [os.path.dirname(first)]
    second = cgroups.create("a")  # its retry
    assert second != first and os.path.exists(second)
    assert not os.path.exists(os.path.dirname(first))  # emptied: removed at once
    assert cgroups.emptied("a") and cgroups.release("a") is cgroups.reusing
    if not cgroups.reusing:
        assert cgroups.remove("a")
    other = cgroups.create("b")  # the spare "a" left, where cgroups are reused
    cgroups.kill("b")
    assert cgroups.emptied("b") and not cgroups.release("b")  # not a spare: removed
    assert cgroups.remove("b")
    assert (other == second) is cgroups.reusing
    assert cgroups.create("c") not in (first, other)  # no killed cgroup is handed on
    cgroups.remove_spares()
    cgroups.remove("c")
    assert not [n for n in os.listdir(tmp_path / "svc") if n.startswith("orcha-p-")]


def test_a_service_sharing_the_state_directory_keeps_its_cgroups_when_another_starts(
    tmp_path: Path,
) -> None:
    """Two services may share a state directory at two addresses (docs/scheduling.rst):
    the one starting second must not take the first one's cgroups for stale ones."""
    import subprocess
    import sys

    fs = _fs(tmp_path, controllers="cpu pids")
    first = Cgroups.setup(fs, pid=4242, namespace="ns")
    idle = [sys.executable, "-c", "import sys; sys.stdin.read()"]
    with subprocess.Popen([*idle, "orcha"], stdin=subprocess.PIPE) as service, \
            subprocess.Popen(idle, stdin=subprocess.PIPE) as other:  # fmt: skip
        theirs = tmp_path / "svc" / f"orcha-p-ns-{service.pid}.c1"
        reused_pid = tmp_path / "svc" / f"orcha-p-ns-{other.pid}.c1"  # not an orcha process
        for path in (theirs, reused_pid):
            fs.mkdir(str(path))
        # Popen returns once the child has exec'd, a moment before the kernel has set
        # up its new command line (read as empty until then).
        cmdline = Path(f"/proc/{service.pid}/cmdline")
        assert wait_for(lambda: b"\0orcha\0" in cmdline.read_bytes())
        second = Cgroups(fs, first.base, memory=False, namespace="ns")
        assert second.remove_stale() == 1  # what it removed, not what it saw
        assert theirs.exists() and not reused_pid.exists()
        service.communicate(b"")
        other.communicate(b"")
    # A spare removed behind this service's back (by the successor of a service that
    # shared its state directory, say) is not handed out: a new one is made.
    first.create("a")
    assert first.emptied("a") and first.release("a")
    (spare,) = first._spare
    fs.rmdir(spare.path)
    procs = first.create("b")
    assert procs != os.path.join(spare.path, "cgroup.procs") and os.path.exists(procs)


def test_real_cgroups_go_to_the_next_petition_only_when_found_empty(tmp_path: Path) -> None:
    """On this host's own hierarchy (no memory controller for petitions: reused), through
    ProcessControl as the runner drives it: a petition whose cgroup was empty when its
    action returned hands it to the next; one that left a process behind has it killed
    and removed; nothing is left once the service stops."""
    import psutil

    from orcha.defaults import ENV_PETITION_TOKEN
    from orcha.service import native
    from orcha.service.cgroup_fs import hierarchy, unavailable
    from orcha.service.procs import ProcessControl

    if why := unavailable():
        pytest.skip(why)
    fs = hierarchy()
    cgroups = Cgroups(fs, fs.path(fs.own()), memory=False, namespace=f"reuse{os.getpid()}")
    control = ProcessControl(cgroups=cgroups, native=native.usable())

    def run(token: str, script: str) -> str:
        env = {"PATH": "/usr/bin:/bin", ENV_PETITION_TOKEN: token}
        proc = control.spawn(["sh", "-c", script], cwd=str(tmp_path), env=env)
        assert proc.stdout is not None and proc.stderr is not None
        out = proc.stdout.read().decode()
        proc.stderr.close()
        assert proc.wait(10) == 0
        return out

    def mine() -> list[str]:
        return [n for n in fs.listdir(cgroups.base) if n.startswith(cgroups.prefix)]

    try:
        first = run("a", "cat /proc/self/cgroup")
        assert control.stop_leftovers([], "a", 1.0) == 0
        control.finished("a")
        assert run("b", "cat /proc/self/cgroup") == first  # the same cgroup, handed on
        assert control.stop_leftovers([], "b", 1.0) == 0
        control.finished("b")
        # "c" leaves a process behind in it: killed, and its cgroup is not handed on.
        left = int(run("c", "sleep 30 >/dev/null 2>&1 & echo $!"))
        assert control.stop_leftovers([], "c", 1.0) == 1
        assert not psutil.pid_exists(left) or psutil.Process(left).status() == "zombie"
        control.finished("c")
        assert run("d", "cat /proc/self/cgroup") != first
        assert control.stop_leftovers([], "d", 1.0) == 0
        control.finished("d")
        # A cgroup killed (a forced stop) and the petition's next attempt: it runs (this
        # kernel killed any child cloned into a killed cgroup before it could exec).
        killed = run("e", "cat /proc/self/cgroup")
        cgroups.kill("e")
        assert run("e", "echo again") == "again\n"
        assert control.stop_leftovers([], "e", 1.0) == 0
        control.finished("e")
        assert run("f", "cat /proc/self/cgroup") != killed
        assert control.stop_leftovers([], "f", 1.0) == 0
        control.finished("f")
    finally:
        control.stop_strays(0)
    assert mine() == []
