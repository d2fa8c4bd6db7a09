"""Plugins that leave the rules the hard way (a real service, a fixture plugin on
ORCHA_PLUGIN_PATH): a kind whose ``run`` calls ``os._exit`` kills its service, which
'orcha serve' says in one line and ends with exit code 1, and the petition is INTERRUPTED
by the next service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Env
from tests.integration.clients import new_id, orcha

pytestmark = pytest.mark.timeout(120)

EXIT_PLUGIN = '''
"""Kinds that break the contract of Kind.run on purpose."""
import os

from orcha.kinds import Kind
from orcha.plugins import BasePlugin


class QuitKind(Kind):
    name = "exittest_quit"
    help = "Ends the service's process with os._exit(7)."
    schema = {"type": "object"}

    def run(self, ctx):
        os._exit(7)


class ExitPlugin(BasePlugin):
    name = "exittest"

    def kinds(self):
        return [QuitKind()]


plugin = ExitPlugin
'''


@pytest.fixture
def xenv(env: Env, tmp_path: Path) -> Env:
    """The environment with the exit plugin on ORCHA_PLUGIN_PATH."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "exittest.py").write_text(EXIT_PLUGIN)
    env.vars["ORCHA_PLUGIN_PATH"] = str(plugins)
    return env


def record(env: Env, petition_id: str) -> dict[str, Any]:
    (row,) = json.loads(orcha(env, "status", "--json", petition_id)[0])["petitions"]
    return dict(row)


def test_a_kind_calling_os_exit_is_named_by_the_guard_and_serve_exits_1(xenv: Env) -> None:
    service = xenv.serve("--grace", "1")
    quitter = new_id("q")
    orcha(xenv, "send", quitter, "--kind", "exittest_quit", code=206)  # the service went away
    assert service.proc is not None
    assert service.proc.wait(30) == 1  # an internal error, not the plugin's 7
    line = (
        f"orcha serve: the service (pid {service.service_pid}) died unexpectedly with exit "
        "code 7 (not through its own stop: a plugin may have called os._exit); stopping "
        "what it left running; exiting 1\n"
    )
    assert line in service.stderr_lines, service.stderr
    # The next service finds it RUNNING and never runs it again.
    again = xenv.serve("--grace", "1")
    row = record(xenv, quitter)
    assert row["state"] == "INTERRUPTED", row
    assert again.stop() == 0
