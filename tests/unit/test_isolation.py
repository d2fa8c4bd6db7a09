"""Choosing how petitions are isolated (orcha.service.isolation)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orcha.errors import ConfigError
from orcha.service import cgroups, isolation, orphans
from orcha.service.cgroups import CgroupUnavailable


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


@pytest.mark.parametrize("enabled", [True, False])
def test_with_cgroups_processes_start_through_the_spawner_unless_disabled(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, enabled: bool
) -> None:
    from orcha import defaults
    from tests.unit.test_cgroups import _fs

    fake = cgroups.Cgroups.setup(_fs(tmp_path), pid=4242)
    monkeypatch.setattr(cgroups.Cgroups, "setup", lambda **_: fake)
    monkeypatch.setattr(defaults, "SPAWNER_ENABLED", enabled)
    procs = isolation.process_control("cgroup")
    try:
        assert procs.isolation == "cgroup" and procs.cgroups is fake
        assert (procs.spawner is not None) is enabled
        if procs.spawner is not None:
            assert procs.spawner.home == fake.home and procs.spawner.lock is fake.visiting
    finally:
        procs.stop_strays(0)
