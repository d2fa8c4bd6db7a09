"""A third-party plugin package found through the orcha.plugins entry-point group:
installed with pip (offline, into its own target dir), listed, and served."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Env
from tests.integration.clients import WAIT, new_id

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "entry_point_plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    src = tmp_path_factory.mktemp("src") / "entry_point_plugin"
    shutil.copytree(FIXTURE, src)
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--no-index", "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    yield target


def test_an_entry_point_plugin_is_listed_and_its_kind_served(env: Env, site: Path) -> None:
    env.vars["PYTHONPATH"] = str(site)
    listed = env.run("ls", "--json", timeout=WAIT)
    assert listed.returncode == 0, listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    ep = plugins["eptest"]
    assert (ep["origin"], ep["version"], ep["embedded"], ep["error"]) == (
        "entry point eptest", "2.0.0", False, None)  # fmt: skip
    assert [k["name"] for k in ep["kinds"]] == ["ep-echo"]

    service = env.serve("--grace", "2")
    assert "ep-echo" in service.banner
    petition = new_id("ep")
    sent = env.run("send", petition, "--kind", "ep-echo", timeout=WAIT)
    assert (sent.returncode, sent.stdout) == (0, "hello from an entry point\n"), sent.stderr


def test_disabling_an_entry_point_plugin_by_name(env: Env, site: Path) -> None:
    env.vars["PYTHONPATH"] = str(site)
    listed = env.run("ls", "--json", env={"ORCHA_DISABLE_PLUGINS": "eptest"}, timeout=WAIT)
    plugins = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert plugins["eptest"]["error"] == "disabled"
