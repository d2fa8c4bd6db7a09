"""Choosing how petitions are isolated (orcha.service.isolation)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orcha.errors import ConfigError
from orcha.service import cgroups, isolation, orphans
from orcha.service.cgroup_fs import CgroupUnavailable


def _no_cgroups(**_: object) -> None:
    raise CgroupUnavailable("/sys/fs/cgroup is not a cgroup v2 mount")


def test_cgroup_where_none_can_be_created_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cgroups.Cgroups, "setup", _no_cgroups)
    with pytest.raises(ConfigError) as caught:
        isolation.process_control("cgroup")
    assert "\n" not in str(caught.value) and "Delegate=yes" in str(caught.value)


@pytest.mark.parametrize("mode", ["auto", "none"])
def test_otherwise_the_service_tracks_as_a_subreaper(
    monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setattr(cgroups.Cgroups, "setup", _no_cgroups)
    monkeypatch.setattr(orphans, "become_subreaper", lambda: True)
    procs = isolation.process_control(mode)
    assert procs.isolation == "tracking" and procs.cgroups is None
    assert procs.tracker is not None and procs.tracker.subreaper


@pytest.mark.parametrize("mode", ["cgroup", "none"])
def test_where_the_clone3_helper_was_built_processes_start_through_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: str
) -> None:
    """With cgroups no spawner process is started: the helper's children are born in
    their cgroups. Without (tracking), it starts them too."""
    from orcha import defaults
    from orcha.service import native
    from tests.unit.test_cgroups import _fs

    if not native.usable():
        pytest.skip("orcha.service._clone3 is not built here")
    fake = cgroups.Cgroups.setup(_fs(tmp_path), pid=4242)
    monkeypatch.setattr(cgroups.Cgroups, "setup", lambda **_: fake)
    monkeypatch.setattr(orphans, "become_subreaper", lambda: True)
    monkeypatch.setattr(defaults, "NATIVE_SPAWN", True)
    procs = isolation.process_control(mode)
    try:
        assert procs.native and procs.spawner is None
        assert procs.isolation == ("cgroup" if mode == "cgroup" else "tracking")
    finally:
        procs.stop_strays(0)


@pytest.mark.parametrize("enabled", [True, False])
def test_with_cgroups_processes_start_through_the_spawner_unless_disabled(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, enabled: bool
) -> None:
    from orcha import defaults
    from tests.unit.test_cgroups import _fs

    fake = cgroups.Cgroups.setup(_fs(tmp_path), pid=4242)
    monkeypatch.setattr(cgroups.Cgroups, "setup", lambda **_: fake)
    monkeypatch.setattr(defaults, "NATIVE_SPAWN", False)  # as where it was not built
    monkeypatch.setattr(defaults, "SPAWNER_ENABLED", enabled)
    procs = isolation.process_control("cgroup")
    try:
        assert procs.isolation == "cgroup" and procs.cgroups is fake
        assert (procs.spawner is not None) is enabled
        if procs.spawner is not None:
            assert procs.spawner.home == fake.home and procs.spawner.lock is fake.visiting
    finally:
        procs.stop_strays(0)


def test_the_spawner_starts_after_a_quiet_moment_the_shell_in_a_stream_and_for_mem(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SPAWNER_QUIET_SECONDS: a start with none in the last 10 ms goes through the spawner
    (no cgroup move, no RCU wait); one right after another, or of a petition held to
    --mem, through the shell that joins the cgroup."""
    import subprocess

    from orcha import defaults
    from orcha.defaults import ENV_PETITION_TOKEN, SPAWNER_QUIET_SECONDS
    from orcha.service import starting as procs_module
    from orcha.service.spawner import SpawnedProcess
    from tests.unit.test_cgroups import _fs

    fake = cgroups.Cgroups.setup(_fs(tmp_path), pid=4242)
    monkeypatch.setattr(cgroups.Cgroups, "setup", lambda **_: fake)
    monkeypatch.setattr(defaults, "NATIVE_SPAWN", False)  # as where it was not built
    monkeypatch.setattr(defaults, "SPAWNER_ENABLED", True)
    now = [1000.0]
    monkeypatch.setattr(procs_module.time, "monotonic", lambda: now[0])
    control = isolation.process_control("cgroup")
    env = {"PATH": "/usr/bin:/bin"}
    started: list[subprocess.Popen[bytes]] = []

    def start(token: str) -> subprocess.Popen[bytes]:
        proc = control.spawn(["true"], cwd=str(tmp_path), env={**env, ENV_PETITION_TOKEN: token})
        started.append(proc)
        return proc

    try:
        assert isinstance(start("t1"), SpawnedProcess)  # quiet: the spawner
        now[0] += SPAWNER_QUIET_SECONDS / 2
        assert not isinstance(start("t2"), SpawnedProcess)  # in a stream: the shell
        now[0] += 2 * SPAWNER_QUIET_SECONDS
        control.limit_memory("t3", 1 << 20, lambda: [], lambda _: None)
        assert not isinstance(start("t3"), SpawnedProcess)  # held to --mem: the shell
        now[0] += 2 * SPAWNER_QUIET_SECONDS
        assert isinstance(start("t4"), SpawnedProcess)  # quiet again
        assert [proc.wait(10) for proc in started] == [0, 0, 0, 0]
    finally:
        control.memory.remove("t3")
        control.stop_strays(0)
