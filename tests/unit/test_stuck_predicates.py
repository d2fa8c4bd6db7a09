"""A plugin predicate that blocks holds the scheduler's lock: ``orcha health`` names it
(its plugin UNHEALTHY) while it has been running for more than PREDICATE_STUCK_SECONDS,
and it costs each call one timestamp."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from orcha.config import Config
from orcha.plugins import BasePlugin, LoadedPlugin
from orcha.plugins.predicates import as_predicate
from orcha.service import plugin_host
from orcha.service.plugin_host import load_plugins


class Slow(BasePlugin):
    name = "slowpred"


def test_a_predicate_that_does_not_return_makes_its_plugin_unhealthy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()

    def nfs_quota_ok(petition: Any) -> bool:
        release.wait(10)
        return True

    predicate = as_predicate(nfs_quota_ok)
    entry = LoadedPlugin("slowpred", "test", __name__, Slow(), predicates=[predicate])
    host = load_plugins(Config("config.yaml", False, {"plugins": {}}), entries=[entry])
    assert host.health()["slowpred"] == {"healthy": True, "details": {}}
    monkeypatch.setattr(plugin_host, "PREDICATE_STUCK_SECONDS", 0.0, raising=False)
    asking = threading.Thread(target=predicate, args=(object(),))
    asking.start()
    try:
        deadline = time.monotonic() + 2
        while getattr(predicate, "since", None) is None and time.monotonic() < deadline:
            release.wait(0.001)  # until it is being asked
        result = host.health()["slowpred"]
    finally:
        release.set()
        asking.join(10)
    assert result["healthy"] is False
    assert result["details"]["stuck"].startswith("predicate nfs_quota_ok has not returned for ")
    assert result["details"]["stuck"].endswith(
        "s; the scheduler waits for it (no petition starts; submissions and 'status' wait)"
    )
    assert host.health()["slowpred"] == {"healthy": True, "details": {}}  # it returned
