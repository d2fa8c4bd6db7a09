"""What ``orcha serve`` says when it starts must be true when it says it."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Env, wait_for

SLOW_START_PLUGIN = """
import os
import time

from orcha.plugins import BasePlugin


class SlowStart(BasePlugin):
    name = "slowstart"

    def start(self, service):
        time.sleep(1.0)  # a plugin that connects to something slow at start
        with open(os.environ["ORCHA_TEST_STARTED"], "w") as f:
            f.write("started")


plugin = SlowStart
"""


def test_listening_on_is_printed_once_the_plugins_have_started(env: Env, tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "orcha_slowstart.py").write_text(SLOW_START_PLUGIN)
    started = tmp_path / "started"
    service = env.serve(env={"ORCHA_PLUGIN_PATH": str(plugins), "ORCHA_TEST_STARTED": str(started)})
    # The banner has been read: the start hook had finished before it was printed, and a
    # client is served at once.
    assert started.read_text() == "started"
    assert "listening on" in service.banner
    result = env.run("health", "--json")
    assert result.returncode == 0, result.stderr
    assert '"slowstart"' in result.stdout


def test_a_file_naming_a_plugin_no_longer_installed_still_serves(env: Env) -> None:
    # 'orcha serve' refused to start (rc 2) once the plugin was uninstalled, even for a
    # file that only disabled it; so did 'orcha config validate' and 'show'.
    (env.config_dir / "orcha").mkdir(parents=True)
    (env.config_dir / "orcha" / "config.yaml").write_text("plugins:\n  greet: {enabled: false}\n")
    validate = env.run("config", "validate")
    assert validate.returncode == 0, validate.stderr
    assert "plugin greet will not load: no installed plugin is named 'greet'" in validate.stderr
    service = env.serve()
    said = "plugin greet not loaded: no installed plugin is named 'greet'"
    assert wait_for(lambda: said in service.stderr), service.stderr
    assert env.run("run", "--", "true").returncode == 0
