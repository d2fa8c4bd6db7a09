"""Two plugins of one name: the later is listed with its error and left out, as a clash of
commands or kinds is; the earlier keeps its settings, state and health."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from orcha.config import load
from orcha.plugins import discover
from orcha.service.plugin_host import load_plugins

FIRST = """
    from orcha.plugins import BasePlugin

    class P(BasePlugin):
        name = "tmaint"
        config_schema = {"type": "object", "properties": {"flag": {"type": "string",
                         "default": "x"}}, "additionalProperties": False}

    plugin = P
"""

SAME_NAME = """
    from orcha.plugins import BasePlugin

    class P(BasePlugin):
        name = {name!r}

    plugin = P
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    monkeypatch.setenv("ORCHA_PLUGIN_PATH", str(plugins))
    before = set(sys.modules)
    yield plugins
    for name in set(sys.modules) - before:
        if name.startswith(("ta_", "tb_")):
            del sys.modules[name]


def _write(folder: Path, module: str, source: str) -> None:
    (folder / f"{module}.py").write_text(textwrap.dedent(source))


def test_a_second_plugin_of_a_name_is_left_out_with_its_error(folder: Path, tmp_path: Path) -> None:
    _write(folder, "ta_maint", FIRST)
    _write(folder, "tb_tool", SAME_NAME.format(name="tmaint"))
    found = discover()
    first, second = (next(e for e in found if e.module == m) for m in ("ta_maint", "tb_tool"))
    assert first.error is None and first.plugin is not None
    assert second.plugin is None
    assert second.error == (
        "conflict: plugin tmaint of module tb_tool claims the name 'tmaint' "
        f"(already taken by module ta_maint, path {folder})"
    )
    # The first one's settings are checked against its own schema, not refused because
    # the second takes none.
    config_file = tmp_path / "config.yaml"
    config_file.write_text("plugins:\n  tmaint:\n    config: {flag: y}\n")
    host = load_plugins(load(str(config_file)), entries=found)
    assert host.plugins["tmaint"] is first.plugin
    assert host.settings["tmaint"] == {"flag": "y"}


def test_a_plugin_named_like_a_built_in_one_is_left_out(folder: Path) -> None:
    _write(folder, "tb_shell", SAME_NAME.format(name="shell"))
    found = discover()
    mine = next(e for e in found if e.module == "tb_shell")
    assert mine.plugin is None
    assert mine.error is not None
    assert mine.error.startswith("conflict: plugin shell of module tb_shell claims the name")
    assert "orcha_plugins.shell" in mine.error
    assert [e.module for e in found if e.name == "shell" and e.plugin is not None] == [
        "orcha_plugins.shell"
    ]
