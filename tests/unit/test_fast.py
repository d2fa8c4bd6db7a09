"""orcha.cli.fast accepts only what the click commands accept, and means the same by it."""

from __future__ import annotations

from typing import Any

import pytest

from orcha.cli import fast

FAST_FORMS = [
    ["run", "x", "--", "true"],
    ["run", "x", "--priority", "3", "--", "sh", "-c", "echo hi"],
    ["run", "--priority=-2", "x", "--", "ls", "-la"],
    ["--address", "/tmp/s.sock", "run", "x", "--", "true"],
    ["run", "x", "--key", "k", "-v", "--", "true", "--", "--help"],
    ["send", "a"],
    ["send", "a", "--counter", "3", "--sleep-time", "0.5"],
    ["send", "--counter=0", "a", "--priority", "7"],
    ["-v", "--key=secret", "send", "a", "--sleep-time", "1e-3"],
    ["run", "x", "--detach", "--", "sleep", "9"],
    ["send", "--detach", "a", "--counter", "2"],
]

SLOW_FORMS = [
    [],
    ["ls"],
    ["serve"],
    ["run", "--help"],
    ["send", "--help"],
    ["--help"],
    ["--version"],
    ["run", "x", "true"],  # no '--': click decides
    ["run", "x", "--"],  # no command
    ["run", "--", "true"],  # no ID
    ["send"],
    ["send", "a", "b"],
    ["send", "a", "--counter", "-1"],
    ["send", "a", "--counter", "abc"],
    ["send", "a", "--sleep-time", "nan"],
    ["send", "a", "--sleep-time", "-1"],
    ["send", "a", "--priority", "x"],
    ["send", "a", "--counter"],
    ["send", "a", "--counter", "1", "--counter", "2"],
    ["send", "a", "--unknown"],
    ["send", "has space"],
    ["run", "x", "--timeout", "3", "--", "true"],
    ["hello-world", "send", "x"],
    ["--detach", "send", "x"],  # --detach belongs to the command, not before it
    ["send", "x", "--detach", "--detach"],
]


@pytest.mark.parametrize("args", SLOW_FORMS)
def test_everything_else_goes_to_click(args: list[str]) -> None:
    parsed = fast.parse(args)
    assert parsed is None or fast._params(parsed) is None or args == ["send", "has space"]


def _click_view(args: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the click command would submit for ``args``."""
    import orcha.client.submit as submit
    from orcha.cli.app import cli
    from orcha.cli.options import Globals

    seen: dict[str, Any] = {}

    def fake_attach(
        kind: str, petition_id: str, params: dict[str, Any], priority: Any, detach: bool = False
    ) -> int:
        import click

        g = click.get_current_context().find_root().obj
        assert isinstance(g, Globals)
        seen.update(
            kind=kind,
            id=petition_id,
            detach=detach,
            params=params,
            priority=priority,
            address=g.address,
            key=g.key,
            verbose=g.verbose,
        )
        return 0

    monkeypatch.setattr(submit, "attach", fake_attach)
    assert cli.main(args=args, prog_name="orcha", standalone_mode=False) == 0
    return seen


@pytest.mark.parametrize("args", FAST_FORMS)
def test_fast_and_click_agree(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = fast.parse(args)
    assert parsed is not None
    values = fast._params(parsed)
    assert values is not None
    params, priority = values
    clicked = _click_view(args, monkeypatch)
    assert (parsed.kind, parsed.petition_id, params, priority) == (
        clicked["kind"],
        clicked["id"],
        clicked["params"],
        clicked["priority"],
    )
    assert parsed.options.get("--address") == clicked["address"]
    assert parsed.options.get("--key") == clicked["key"]
    assert parsed.verbose == clicked["verbose"]
    assert ("--detach" in parsed.options) == clicked["detach"]


def test_disabled_plugin_turns_the_fast_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHA_DISABLE_PLUGINS", "x, shell")
    assert fast.try_fast(["run", "x", "--", "true"]) is None
