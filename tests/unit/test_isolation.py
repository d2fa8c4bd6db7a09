"""Choosing how petitions are isolated (orcha.service.isolation)."""

from __future__ import annotations

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
