"""The process spawner (orcha.service.spawner and its process, orcha.service.zygote): real
processes, with plain files standing for the cgroups' ``cgroup.procs`` (then it moves
itself, the way taken where clone3 is refused), and one real cgroup where this machine
gives them."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from orcha.defaults import ENV_PETITION_TOKEN
from orcha.service.cgroup_fs import hierarchy, unavailable
from orcha.service.rusage import reap
from orcha.service.spawner import CgroupJoinError, SpawnedProcess, Spawner, SpawnerUnavailable
from tests.conftest import wait_for
from tests.unit.test_cgroups import _fs

ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spawner") / "home.procs"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def spawner(home: Path) -> Iterator[Spawner]:
    spawner = Spawner(str(home))
    spawner.start()
    yield spawner
    spawner.close()


def _run(
    spawner: Spawner, procs: Path, argv: list[str], cwd: str = "/", **kwargs: object
) -> SpawnedProcess:
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return SpawnedProcess(spawner, str(procs), argv, cwd=cwd, env=ENV, **kwargs)  # type: ignore[arg-type]


def test_a_command_starts_in_its_cgroup_as_popen_would_start_it(
    spawner: Spawner, home: Path, tmp_path: Path
) -> None:
    """It joined the cgroup (wrote 0 to its cgroup.procs) and came back home; the child
    has its own session, SIGPIPE at its default (not inherited ignored), the petition's
    directory and environment, and no fd but 0, 1 and 2; exit code and rusage come
    back."""
    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    script = "echo $$ $(cut -d' ' -f6 /proc/$$/stat); grep SigIgn /proc/$$/status; pwd; "
    script += "echo $LC_ALL; ls /proc/$$/fd; exit 3"
    proc = _run(spawner, procs, ["sh", "-c", script], cwd=str(tmp_path))
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 3 and err == b""
    ids, ignored, cwd, lc_all, *fds = out.decode().split("\n")[:-1]
    pid, session = ids.split()
    assert int(pid) == proc.pid and session == pid
    # No standard signal ignored (Python ignores SIGPIPE and SIGXFSZ). glibc's posix_spawn
    # leaves its own internal ones (32, 33) ignored, as its system() and popen() do.
    assert int(ignored.split()[1], 16) & 0x7FFFFFFF == 0
    assert (cwd, lc_all) == (str(tmp_path), "C")
    assert sorted(fds) == ["0", "1", "2"]
    assert procs.read_text() == "0" and home.read_text() == "0"
    cpu, rss = proc.usage  # sh's peak, below the spawner's own: cannot be told apart
    assert cpu is not None and cpu >= 0 and rss is None


def test_in_a_real_cgroup_the_command_is_born_inside_and_the_spawner_never_moves(
    spawner: Spawner, home: Path, tmp_path: Path
) -> None:
    """Where this machine gives cgroups: clone3(CLONE_INTO_CGROUP) starts the command in
    its cgroup (the spawner never writes a cgroup.procs, so no RCU wait of a move), and
    the child is set up as posix_spawn would: own session, no signal ignored, the
    petition's directory and environment, fds 0, 1 and 2 only."""
    if why := unavailable():
        pytest.skip(why)
    fs = hierarchy()
    group = fs.path(fs.own(), f"orcha-test-spawner-{os.getpid()}")
    os.mkdir(group)
    try:
        before = home.read_text()
        script = "echo $$ $(cut -d' ' -f6 /proc/$$/stat); grep SigIgn /proc/$$/status; "
        script += "pwd; echo $LC_ALL; cat /proc/self/cgroup; ls /proc/$$/fd; exit 3"
        procs = Path(group) / "cgroup.procs"
        proc = _run(spawner, procs, ["sh", "-c", script], cwd=str(tmp_path))
        assert proc.stdout is not None and proc.stderr is not None
        out, err = proc.stdout.read(), proc.stderr.read()
        assert err == b""
        ids, ignored, cwd, lc_all, *rest = out.decode().split("\n")[:-1]
        pid, session = ids.split()
        assert int(pid) == proc.pid and session == pid
        assert int(ignored.split()[1], 16) & 0x7FFFFFFF == 0
        assert (cwd, lc_all) == (str(tmp_path), "C")
        cgroups = [line for line in rest if line.startswith("0::")]
        assert cgroups == ["0::" + group[len(fs.root) :]]
        assert sorted(line for line in rest if line.isdigit()) == ["0", "1", "2"]
        assert home.read_text() == before  # it never went home: it never left
        # CLONE_PARENT: our own child, waited for here (wait4's figures), not reported.
        assert proc.adopted and psutil.Process(proc.pid).ppid() == os.getpid()
        code, cpu, rss = reap(proc)
        assert code == 3 and cpu is not None and rss is None  # sh's, below ours: not known
        # A command that cannot be executed: refused as by Popen, and its child (ours,
        # exited 127 after its report) reaped, not left a zombie.
        plain = tmp_path / "plain"
        plain.write_text("#!/bin/sh\n")
        before_children = {p.pid for p in psutil.Process().children()}
        with pytest.raises(PermissionError):
            _run(spawner, procs, [str(plain)])
        assert {p.pid for p in psutil.Process().children()} <= before_children
    finally:
        wait_for(lambda: not fs.read(str(Path(group) / "cgroup.procs")).split())
        os.rmdir(group)


def test_what_cannot_be_started_fails_as_with_popen(spawner: Spawner, tmp_path: Path) -> None:
    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    with pytest.raises(FileNotFoundError) as missing:
        _run(spawner, procs, ["orcha-no-such-command-xyz"])
    assert missing.value.filename == "orcha-no-such-command-xyz"
    with pytest.raises(PermissionError):
        _run(spawner, procs, [str(plain)])
    with pytest.raises(FileNotFoundError) as no_dir:
        _run(spawner, procs, ["true"], cwd=str(tmp_path / "gone"))
    assert no_dir.value.filename == str(tmp_path / "gone")
    with pytest.raises(CgroupJoinError, match="cannot enter the petition's cgroup"):
        _run(spawner, tmp_path / "no-cgroup" / "cgroup.procs", ["true"])
    # None of that costs the spawner: the next one starts.
    assert _run(spawner, procs, ["true"]).wait(10) == 0 and spawner.usable


def test_the_popen_interface_waits_polls_and_signals(spawner: Spawner, tmp_path: Path) -> None:
    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    proc = _run(spawner, procs, ["cat"], stdin=subprocess.PIPE)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(0.05)
    assert proc.poll() is None
    assert proc.communicate(b"fed", timeout=10) == (b"fed", b"")
    assert proc.returncode == 0
    sleeper = _run(spawner, procs, ["sleep", "30"])
    sleeper.send_signal(signal.SIGTERM)
    assert sleeper.wait(10) == -signal.SIGTERM
    sleeper.send_signal(signal.SIGTERM)  # ended: nothing is signalled
    sleeper.communicate()


def test_its_processes_outlive_a_spawner_killed_and_the_next_spawn_starts_another(
    home: Path, tmp_path: Path
) -> None:
    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    spawner = Spawner(str(home))
    try:
        proc = _run(spawner, procs, ["sh", "-c", "read line"], stdin=subprocess.PIPE)
        first = spawner.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: spawner.pid is None)
        assert proc.poll() is None  # it runs on
        assert proc.communicate(b"go\n", timeout=10) == (b"", b"")
        assert proc.returncode == 1 and proc.lost is not None and "spawner" in proc.lost
        again = _run(spawner, procs, ["echo", "hi"])
        assert again.communicate(timeout=10) == (b"hi\n", b"") and again.returncode == 0
        assert spawner.pid not in (None, first)
    finally:
        spawner.close()


def test_a_child_forked_from_the_service_does_not_keep_its_spawner(spawner: Spawner) -> None:
    assert spawner.pid is not None
    pid = os.fork()
    if pid == 0:  # the child: its copy of the request socket is closed
        os._exit(0 if spawner._requests is None and spawner.pid is None else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert spawner._requests is not None


def test_a_spawner_that_never_comes_up_is_given_up_for_the_shell(
    home: Path, tmp_path: Path
) -> None:
    from orcha.service.cgroups import Cgroups
    from orcha.service.procs import ProcessControl

    broken = Spawner(str(home), python="/bin/false")
    with pytest.raises(SpawnerUnavailable, match="could not start"):
        _run(broken, tmp_path / "x", ["true"])
    assert not broken.usable
    # The first petition already goes through the shell when it is found broken.
    for n, python in enumerate(("/bin/false", str(tmp_path / "no-python"))):
        spawner = Spawner(str(home), python=python)
        where = tmp_path / f"cg{n}"
        where.mkdir()
        cgroups = Cgroups.setup(_fs(where), pid=4242)
        control = ProcessControl(cgroups=cgroups, spawner=spawner)
        proc = control.spawn(["echo", "hi"], cwd="/", env={**ENV, ENV_PETITION_TOKEN: "tok"})
        assert proc.communicate(timeout=10)[0] == b"hi\n"
        assert not isinstance(proc, SpawnedProcess) and proc.args[0] == "/bin/sh"
        assert not spawner.usable
        control.stop_strays(0)


def test_process_control_spawns_through_it_and_never_counts_it_in_a_tree(
    home: Path, tmp_path: Path
) -> None:
    """Petitions' processes go through the spawner (ordered capture and stdin too), are
    reaped with their figures, and the spawner is neither part of a petition's tree nor
    present while its cgroup is killed (the kill waits for it to be back home)."""
    from orcha.service.cgroups import Cgroups
    from orcha.service.procs import ProcessControl
    from orcha.service.rusage import reap

    cgroups = Cgroups.setup(_fs(tmp_path), pid=4242)
    spawner = Spawner(cgroups.home, cgroups.visiting)
    control = ProcessControl(cgroups=cgroups, spawner=spawner)
    env = {**ENV, ENV_PETITION_TOKEN: "tok"}
    try:
        proc = control.spawn(["cat"], cwd="/", env=env, stdin=True)
        assert isinstance(proc, SpawnedProcess) and control.contained("tok", [proc.pid])
        assert proc.stdin is not None
        proc.stdin.write(b"in\n")
        proc.stdin.close()
        assert proc.stdout is not None and proc.stdout.read() == b"in\n"
        code, cpu, rss = reap(proc)
        assert code == 0 and cpu is not None and rss is None  # cat's, below ours
        ordered = control.spawn(["echo", "both"], cwd="/", env=env, ordered=True)
        assert ordered.stdout is not None and ordered.stdout.recv(100) == b"both\n"  # type: ignore[attr-defined]
        assert reap(ordered)[0] == 0
        # The spawner's PID listed in the petition's cgroup is never taken for its own.
        assert spawner.pid is not None
        Path(cgroups.path("tok"), "cgroup.procs").write_text(f"{spawner.pid}\n")
        assert spawner.pid not in control.tree([], "tok")
        # A kill of a petition's cgroup waits while the spawner may be inside one.
        killed = threading.Event()
        with cgroups.visiting:
            killer = threading.Thread(target=lambda: (cgroups.kill("tok"), killed.set()))
            killer.start()
            assert not killed.wait(0.1)
        assert killed.wait(10)
        killer.join()
    finally:
        control.stop_strays(0)
    assert spawner.pid is None and not spawner.usable


def test_a_command_found_on_path_is_looked_up_again_once_it_cannot_run(tmp_path: Path) -> None:
    from orcha.service import zygote

    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
        (folder / "tool").write_text("#!/bin/sh\n")
        (folder / "tool").chmod(0o755)
    env = {"PATH": f"{first}:{second}"}
    assert zygote._find("tool", env) == str(first / "tool")
    (first / "tool").chmod(0o644)  # no longer runnable where it was found
    assert zygote._find("tool", env) == str(second / "tool")
    (second / "tool").unlink()
    with pytest.raises(PermissionError):
        zygote._find("tool", env)
    with pytest.raises(FileNotFoundError):
        zygote._find("tool", {"PATH": str(second)})


def test_in_a_real_cgroup_a_killed_spawner_loses_no_exit_status(home: Path, tmp_path: Path) -> None:
    """A process of clone3 is our own child (CLONE_PARENT): it outlives its spawner and
    its end comes as any child's, with its figures (not 'lost')."""
    if why := unavailable():
        pytest.skip(why)
    fs = hierarchy()
    group = fs.path(fs.own(), f"orcha-test-spawner-k{os.getpid()}")
    os.mkdir(group)
    spawner = Spawner(str(home))
    try:
        procs = Path(group) / "cgroup.procs"
        proc = _run(spawner, procs, ["sh", "-c", "read line; exit 4"], stdin=subprocess.PIPE)
        first = spawner.pid
        assert first is not None and proc.adopted
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: spawner.pid is None)
        assert proc.poll() is None  # it runs on
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        code, cpu, rss = reap(proc)
        assert code == 4 and proc.lost is None and cpu is not None and rss is None
        assert proc.stdout is not None and proc.stdout.read() == b""
    finally:
        spawner.close()
        wait_for(lambda: not fs.read(str(Path(group) / "cgroup.procs")).split())
        os.rmdir(group)
