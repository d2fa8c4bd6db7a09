"""orcha.cli.seen_commands: the commands each plugin had when last loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from orcha.cli import seen_commands
from orcha.plugins import BasePlugin, LoadedPlugin


def _entry(module: str, commands: tuple[str, ...] = (), loaded: bool = True) -> LoadedPlugin:
    entry = LoadedPlugin(name=module, origin=f"module {module}", module=module)
    if loaded:
        entry.plugin = BasePlugin()
        entry.commands = dict.fromkeys(commands)
    else:
        entry.error = "disabled"
    return entry


def test_a_plugin_not_loaded_now_keeps_what_it_had(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHA_STATE_DIR", str(tmp_path))
    a, b = _entry("orcha_a", ("a1", "a2")), _entry("orcha_b", ("b1",))
    b.aliases = {"bb": "b1"}
    seen_commands.remember([a, b])
    assert seen_commands.read() == {"module orcha_a orcha_a": ["a1", "a2"],
                                    "module orcha_b orcha_b": ["b1", "bb"]}  # fmt: skip
    # a is disabled now (not imported: no commands), b lost a command
    seen_commands.remember([_entry("orcha_a", loaded=False), _entry("orcha_b", ())])
    assert seen_commands.read() == {"module orcha_a orcha_a": ["a1", "a2"],
                                    "module orcha_b orcha_b": []}  # fmt: skip
    assert seen_commands.key(_entry("orcha_a", loaded=False)) == "module orcha_a orcha_a"


def test_without_a_state_directory_nothing_is_noted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHA_STATE_DIR", str(tmp_path / "missing"))
    seen_commands.remember([_entry("orcha_a", ("a1",))])
    assert seen_commands.read() == {}
    assert not (tmp_path / "missing").exists()
