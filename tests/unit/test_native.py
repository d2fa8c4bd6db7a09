"""Processes started by orcha's clone3 helper (orcha.service.native and its compiled
module orcha/service/_clone3.c): real processes, compared with what subprocess.Popen
does for the same arguments, and a real cgroup where this machine gives them."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from orcha.defaults import ENV_PETITION_TOKEN
from orcha.service import native
from orcha.service.cgroup_fs import hierarchy, unavailable
from orcha.service.procs import ProcessControl
from tests.conftest import wait_for

pytestmark = pytest.mark.skipif(not native.usable(), reason="orcha.service._clone3 not built")

ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}


def _run(argv: list[str], cwd: str = "/", **kwargs: Any) -> native.NativeProcess:
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    kwargs.setdefault("env", ENV)
    return native.NativeProcess(argv, cwd=cwd, **kwargs)


@pytest.fixture
def cgroup() -> Iterator[Path]:
    """A real cgroup (skipped where this machine gives none), removed once empty."""
    if why := unavailable():
        pytest.skip(why)
    fs = hierarchy()
    group = Path(fs.path(fs.own(), f"orcha-test-native-{os.getpid()}-{threading.get_ident()}"))
    group.mkdir()
    try:
        yield group
    finally:
        wait_for(lambda: not (group / "cgroup.procs").read_text().split())
        group.rmdir()


def test_the_child_is_set_up_as_popen_with_a_new_session_and_no_fds_sets_it_up(
    tmp_path: Path,
) -> None:
    """Own session; the given directory and environment, and nothing of ours; fds 0, 1
    and 2 only (an inheritable fd of ours is not passed); SIGPIPE at its default (Python
    ignores it); exit code through wait()."""
    leak_r, leak_w = os.pipe()
    os.set_inheritable(leak_w, True)
    try:
        script = "echo $$ $(cut -d' ' -f6 /proc/$$/stat); grep SigIgn /proc/$$/status; pwd; "
        script += "env | sort | tr '\\n' ' '; echo; ls /proc/$$/fd; exit 3"
        proc = _run(["sh", "-c", script], cwd=str(tmp_path))
        out, err = proc.communicate(timeout=10)
    finally:
        os.close(leak_r)
        os.close(leak_w)
    assert proc.returncode == 3 and err == b""
    ids, ignored, cwd, env, *fds = out.decode().split("\n")[:-1]
    pid, session = ids.split()
    assert int(pid) == proc.pid and session == pid
    assert int(ignored.split()[1], 16) & 0x7FFFFFFF == 0
    assert cwd == str(tmp_path)
    assert set(env.split()) >= {"LC_ALL=C", "PATH=/usr/bin:/bin"}
    assert not any(v.startswith(("HOME=", "USER=")) for v in env.split())
    assert sorted(fds) == ["0", "1", "2"]


def test_handlers_are_reset_ignored_signals_stay_ignored_and_the_mask_is_kept() -> None:
    """A Python handler of ours never runs in the child (it is back at its default); a
    signal we ignore stays ignored across exec, as with Popen; our signal mask is the
    child's (Popen's too), though every signal is blocked while it is set up."""
    old_usr1 = signal.signal(signal.SIGUSR1, lambda *_: None)
    old_hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        proc = _run(["cat", "/proc/self/status"])
        out, _ = proc.communicate(timeout=10)
        popen = subprocess.Popen(
            ["cat", "/proc/self/status"], stdout=subprocess.PIPE,
            start_new_session=True, env=ENV,
        )  # fmt: skip
        expected, _ = popen.communicate(timeout=10)
    finally:
        signal.signal(signal.SIGUSR1, old_usr1)
        signal.signal(signal.SIGHUP, old_hup)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    masks = {
        line.split(":")[0]: int(line.split()[1], 16)
        for line in out.decode().splitlines()
        if line.startswith(("SigIgn", "SigCgt", "SigBlk"))
    }
    bit = lambda sig: 1 << (sig - 1)  # noqa: E731
    assert masks["SigCgt"] == 0
    assert masks["SigIgn"] & bit(signal.SIGHUP) and not masks["SigIgn"] & bit(signal.SIGPIPE)
    assert masks["SigBlk"] & bit(signal.SIGUSR2)
    # The same as Popen's child, bit for bit (not SigQ: the signals queued for the user
    # by any process, which other tests running meanwhile change).
    dispositions = (b"SigBlk", b"SigIgn", b"SigCgt")
    assert [line for line in out.splitlines() if line.startswith(dispositions)] == [
        line for line in expected.splitlines() if line.startswith(dispositions)
    ]


@pytest.mark.parametrize(
    "case", ["missing", "missing-path", "not-executable", "directory", "bad-cwd", "cwd-file"]
)
def test_what_cannot_be_started_fails_exactly_as_with_popen(tmp_path: Path, case: str) -> None:
    """Same exception type, errno and filename as Popen's, and no child left behind."""
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    argv, cwd = {
        "missing": (["no-such-command-orcha"], "/"),
        "missing-path": ([str(tmp_path / "nothing")], "/"),
        "not-executable": ([str(plain)], "/"),
        "directory": ([str(tmp_path)], "/"),
        "bad-cwd": (["true"], str(tmp_path / "nowhere")),
        "cwd-file": (["true"], str(plain)),
    }[case]
    before = {p.pid for p in psutil.Process().children()}
    with pytest.raises(OSError) as ours:
        _run(argv, cwd=cwd)
    with pytest.raises(OSError) as theirs:
        subprocess.Popen(argv, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL)
    assert type(ours.value) is type(theirs.value)
    assert (ours.value.errno, ours.value.filename) == (theirs.value.errno, theirs.value.filename)
    assert {p.pid for p in psutil.Process().children()} <= before  # reaped, no zombie


def test_a_name_is_looked_up_on_the_environments_path(tmp_path: Path) -> None:
    """Where ``PATH`` has a folder that is not there and one where the name is not
    executable before the one where it is, the executable one runs (as with Popen)."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "tool").write_text("#!/bin/sh\necho wrong\n")  # not executable
    tool = second / "tool"
    tool.write_text("#!/bin/sh\necho right\n")
    tool.chmod(0o755)
    env = {"PATH": f"{tmp_path / 'none'}:{first}:{second}:/usr/bin:/bin"}
    proc = _run(["tool"], env=env)
    assert proc.communicate(timeout=10)[0] == b"right\n" and proc.returncode == 0


def test_in_a_real_cgroup_the_child_is_born_inside(cgroup: Path, tmp_path: Path) -> None:
    """CLONE_INTO_CGROUP: the command's first read of /proc/self/cgroup shows it inside
    (it never ran anywhere else), and nothing of ours moved there."""
    fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        proc = _run(["cat", "/proc/self/cgroup"], cgroup=fd)
        out, _ = proc.communicate(timeout=10)
    finally:
        os.close(fd)
    fs = hierarchy()
    assert proc.returncode == 0
    assert [line for line in out.decode().splitlines() if line.startswith("0::")] == [
        "0::" + str(cgroup)[len(fs.root) :]
    ]
    assert str(os.getpid()) not in (cgroup / "cgroup.procs").read_text().split()


def test_a_directory_that_is_no_cgroup_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """The kernel refuses the clone itself (EBADF): CloneRefused, not permanent (only
    this cgroup), and no child."""
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    before = {p.pid for p in psutil.Process().children()}
    try:
        with pytest.raises(native.CloneRefused) as caught:
            _run(["true"], cgroup=fd)
    finally:
        os.close(fd)
    assert caught.value.errno == errno.EBADF and not caught.value.permanent
    assert {p.pid for p in psutil.Process().children()} == before


def test_many_threads_spawning_at_once_each_get_their_own_child() -> None:
    """The child shares our memory until it execs: threads that spawn at once (each its
    own stack and report) all get the right output and exit code."""
    results: list[tuple[int, bytes, int]] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(25):
            code = (n * 25 + i) % 7
            proc = _run(["sh", "-c", f"echo {n}.{i}; exit {code}"])
            out, _ = proc.communicate(timeout=30)
            with lock:
                results.append((code, out, proc.returncode))
            assert out == f"{n}.{i}\n".encode()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 100
    assert all(code == returned for code, _, returned in results)


def test_process_control_falls_back_for_good_when_the_kernel_refuses_clone3(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A sandbox that refuses clone3 (seccomp: ENOSYS): the first start goes through
    Popen instead, and the helper is not tried again."""
    calls = []

    def refuse(*args: object) -> int:
        calls.append(args)
        raise OSError(errno.ENOSYS, "Function not implemented", "clone")

    monkeypatch.setattr(native._clone3, "spawn", refuse)
    control = ProcessControl(native=True)
    try:
        for token in ("t1", "t2"):
            proc = control.spawn(
                ["true"], cwd=str(tmp_path), env={**ENV, ENV_PETITION_TOKEN: token}
            )
            assert not isinstance(proc, native.NativeProcess) and proc.wait(10) == 0
        assert len(calls) == 1 and not control.native
    finally:
        control.stop_strays(0)


def test_process_control_starts_a_petition_in_its_real_cgroup_without_a_shell(
    tmp_path: Path,
) -> None:
    """Through ProcessControl with real cgroups: the petition's main process is the
    command itself (no /bin/sh in between), in its cgroup."""
    if why := unavailable():
        pytest.skip(why)
    from orcha.service.cgroups import Cgroups

    fs = hierarchy()
    cgroups = Cgroups(fs, fs.path(fs.own()), memory=False, namespace=f"native{os.getpid()}")
    control = ProcessControl(cgroups=cgroups, native=True)
    token = f"t{os.getpid()}"
    try:
        proc = control.spawn(
            ["cat", "/proc/self/cgroup"], cwd=str(tmp_path), env={**ENV, ENV_PETITION_TOKEN: token}
        )
        assert isinstance(proc, native.NativeProcess)
        assert proc.stdout is not None
        out = proc.stdout.read()
        assert proc.wait(10) == 0
        assert b"0::" + cgroups.path(token)[len(fs.root) :].encode() + b"\n" in out
    finally:
        cgroups.remove(token)
        control.stop_strays(0)


def test_an_environment_in_layers_reaches_the_child_whole_with_upper_layers_winning() -> None:
    """An Environment (a shared base, an array member's variables over it, the
    petition's over those) is what the child sees, exactly; the base's block is encoded
    once and shared by the next spawn; a variable over one of the base's replaces it."""
    from orcha.service.environments import Environment

    base = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "SHARED": "base", "ÜNI": "wert ü"}
    member = Environment(base, {"ORCHA_ARRAY_INDEX": "3", "SHARED": "member"})
    env = Environment(member, {"ORCHA_PETITION_ID": "a_3", "LC_ALL": "POSIX"})
    expected = {**base, "ORCHA_ARRAY_INDEX": "3", "SHARED": "member"}
    expected.update(ORCHA_PETITION_ID="a_3", LC_ALL="POSIX")
    block, over = native.environ_block(env)
    assert len(block) + len(over) == len(expected)
    assert over == {"ORCHA_ARRAY_INDEX": "3", "SHARED": "member", "ORCHA_PETITION_ID": "a_3",
                    "LC_ALL": "POSIX"}  # fmt: skip
    again, _ = native.environ_block(Environment(base, {"X": "1"}))
    assert again == [f"{k}={v}".encode() for k, v in base.items()]  # one encoding, kept
    proc = _run(["env", "-0"], env=env)
    out, _ = proc.communicate(timeout=10)
    seen = dict(item.split("=", 1) for item in out.decode().split("\0") if item)
    assert seen == expected
    # A plain mapping goes to the C side as it is; a key Popen would refuse is refused.
    assert native.environ_block(base) is base
    with pytest.raises(ValueError, match="illegal environment variable name"):
        _run(["true"], env=Environment(base, {"A=B": "1"}))
    with pytest.raises(ValueError, match="illegal environment variable name"):
        _run(["true"], env={**base, "A=B": "1"})


def test_a_base_that_is_replaced_is_not_taken_from_the_cache() -> None:
    """The cache holds each base it encoded, so a new base never reuses a cached
    one's id; a new base object is encoded anew."""
    from orcha.service.environments import Environment

    first = {"PATH": "/bin", "V": "1"}
    native.environ_block(Environment(first, {"X": "1"}))
    second = {"PATH": "/bin", "V": "2"}
    block, _ = native.environ_block(Environment(second, {"X": "1"}))
    assert b"V=2" in block


def test_a_petitions_start_holds_its_own_lock_which_signals_to_its_tree_take(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cgroup: Path
) -> None:
    """While a petition's process is born and until it execs, that petition's lock
    (Starter.quiet) is held, and only that one: a 'pause --running' (signal_tree) of
    it waits for the exec, so it never stops the child before it is the command, while
    starts of other petitions go on. It is dropped once the petition is forgotten."""
    from orcha.service.cgroups import Cgroups

    fs = hierarchy()
    cgroups = Cgroups(fs, str(cgroup), memory=False, namespace="lock")
    control = ProcessControl(cgroups=cgroups, native=True)
    real = native._clone3.spawn
    held: list[tuple[bool, bool]] = []

    def spawn(*args: Any) -> int:
        held.append((control.starter.quiet("t1").locked(), control.starter.quiet("t2").locked()))
        return real(*args)

    monkeypatch.setattr(native._clone3, "spawn", spawn)
    try:
        proc = control.spawn(["true"], cwd=str(tmp_path), env={**ENV, ENV_PETITION_TOKEN: "t1"})
        assert proc.wait(10) == 0
        assert held == [(True, False)]
        assert not control.starter.quiet("t1").locked()
        assert control.signal_tree([], "t1", signal.SIGCONT) == 0  # takes it, and returns
        lock = control.starter.quiet("t1")
        control.finished("t1")
        assert control.starter.quiet("t1") is not lock  # forgotten: a new one
    finally:
        cgroups.remove("t1")
        control.stop_strays(0)
