"""A plugin predicate that blocks (a stat() on a hung NFS mount, say) holds the scheduler:
'orcha health' names it and exits 1, and 'orcha status' still answers (without the
reasons petitions wait) instead of waiting for it (a real service, a fixture plugin on
ORCHA_PLUGIN_PATH whose predicate blocks while a flag file exists). So does a plugin
kind's start that blocks: it holds up the petition loop, and 'orcha health' says so."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Env, wait_for

pytestmark = pytest.mark.timeout(120)

SLOW_PLUGIN = """
import os
import time

from orcha.plugins import BasePlugin

FLAG = {flag!r}
INSIDE = {inside!r}


class SlowPlugin(BasePlugin):
    name = "slowpred"

    def predicates(self):
        def nfs_quota_ok(petition):
            open(INSIDE, "w").close()
            while os.path.exists(FLAG):
                time.sleep(0.05)
            return True

        return [nfs_quota_ok]


plugin = SlowPlugin
"""


def test_a_blocking_predicate_is_reported_and_status_still_answers(
    env: Env, tmp_path: Path
) -> None:
    flag, inside = tmp_path / "hung", tmp_path / "inside"
    env.add_plugin("slowpred", SLOW_PLUGIN.format(flag=str(flag), inside=str(inside)))
    service = env.serve("--grace", "1")
    flag.touch()
    submit = env.popen("run", "p1", "--detach", "--", "true")
    try:
        assert wait_for(inside.exists)  # the scheduler is asking it, under its lock
        began = time.monotonic()
        status = env.run("status", timeout=15)
        assert status.returncode == 0, status.stderr
        assert time.monotonic() - began < 10  # not for as long as the predicate blocks
        health = env.run("health", timeout=15)
        assert health.returncode == 1, health.stdout
        assert "plugin slowpred: UNHEALTHY (stuck=predicate nfs_quota_ok has not returned for " in (
            health.stdout
        )
    finally:
        flag.unlink()
        try:
            submit.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            submit.kill()
            submit.communicate()
    assert submit.returncode == 0
    assert env.run("health").returncode == 0
    assert service.stop() == 0


HANGING_START = """
import os
import time

from orcha.kinds import Kind
from orcha.plugins import BasePlugin

FLAG = {flag!r}
INSIDE = {inside!r}


class MountKind(Kind):
    name = "mount"

    def start(self, ctx):
        open(INSIDE, "w").close()
        while os.path.exists(FLAG):
            time.sleep(0.05)
        return ctx.spawn(["true"])


class HangPlugin(BasePlugin):
    name = "hangstart"

    def kinds(self):
        return [MountKind()]


plugin = HangPlugin
"""


def test_a_kind_start_that_blocks_is_reported_by_health(env: Env, tmp_path: Path) -> None:
    flag, inside = tmp_path / "hung", tmp_path / "inside"
    env.add_plugin("hangstart", HANGING_START.format(flag=str(flag), inside=str(inside)))
    service = env.serve("--grace", "1")
    assert env.run("kinds", "add", "mnt", "--from", "mount").returncode == 0
    flag.touch()
    try:
        assert env.run("send", "--kind", "mnt", "--detach", "m1").returncode == 0
        assert wait_for(inside.exists)  # its start runs in the petition loop
        answers: list[subprocess.CompletedProcess[str]] = []

        def unhealthy() -> bool:  # healthy until it has been stuck for 3 s
            began = time.monotonic()
            answers.append(env.run("health", timeout=15))
            assert time.monotonic() - began < 5  # the answer itself never waits for it
            return answers[-1].returncode != 0

        assert wait_for(unhealthy, timeout=30, interval=0.2)
        health = answers[-1]
        assert health.returncode == 1, health.stdout
        assert "scheduler: the petition loop has waited " in health.stdout
        assert "s for petition m1 (kind mnt) to start or end: the petitions it runs " in (
            health.stdout
        )
        assert health.stdout.startswith("service: UNHEALTHY;")
    finally:
        flag.unlink()
    assert wait_for(lambda: env.run("health").returncode == 0)
    assert service.stop() == 0
