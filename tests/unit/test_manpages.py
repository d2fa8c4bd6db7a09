"""The man pages (orcha.cli.manpages): one per command, shipped up to date, each listing
its command's options, rendered by man without a warning."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from orcha.cli import manpages

SHIPPED = Path(__file__).resolve().parents[2] / manpages.SHIPPED
REGENERATE = "run 'python -m orcha.cli.manpages --write' and commit man/man1"


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return manpages.pages()


def test_every_command_has_a_shipped_page_and_no_page_is_stale(generated: dict[str, str]) -> None:
    shipped = {p.name for p in SHIPPED.glob("*.1")}
    assert shipped == set(generated), f"{REGENERATE} (missing or extra pages)"
    stale = [name for name, text in generated.items() if (SHIPPED / name).read_text() != text]
    assert stale == [], f"{REGENERATE}: these do not match their commands: {stale}"
    for name in ("orcha.1", "orcha-run.1", "orcha-send.1", "orcha-serve.1",
                 "orcha-config-reload.1", "orcha-group-set.1"):  # fmt: skip
        assert name in shipped


def test_each_page_lists_its_commands_options_and_subcommands(generated: dict[str, str]) -> None:
    for path, command, ctx in manpages.commands():
        page = generated[manpages.page_name(path)]
        assert page.startswith(f'.TH "{"-".join(path).upper()}" "1"'), path
        for param in command.get_params(ctx):
            if not isinstance(param, click.Option) or param.hidden:
                continue
            if len(path) > 1 and (param.name in manpages._GLOBAL or "--help" in param.opts):
                assert "orcha (1)" in page  # the global options are on orcha(1)
                continue
            for opt in param.opts:
                assert opt.replace("-", "\\-") in page, (path, opt)
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                assert f".BR {'-'.join([*path, name]).replace('-', chr(92) + '-')} (1)" in page


def test_pages_are_reproducible_and_say_no_date_or_version(generated: dict[str, str]) -> None:
    from orcha import __version__

    assert manpages.pages() == generated
    assert all(__version__ not in text for text in generated.values())


def test_the_pages_render_without_warnings() -> None:
    pages = sorted(str(p) for p in SHIPPED.glob("*.1"))
    if shutil.which("groff"):
        # Every page, in one run: groff's own warnings (-ww), no output.
        checked = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", *pages],
                                 capture_output=True, text=True, timeout=60)  # fmt: skip
        assert (checked.returncode, checked.stderr) == (0, "")
    if not shutil.which("man"):
        pytest.skip("man is not installed: only groff checked the pages (if present)")
    run_page, root_page = str(SHIPPED / "orcha-run.1"), str(SHIPPED / "orcha.1")
    shown = subprocess.run(
        ["man", "-l", "--warnings=all", run_page, root_page], capture_output=True, text=True,
        timeout=60, env={**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": ""},
    )  # fmt: skip
    assert (shown.returncode, shown.stderr) == (0, "")
    text = shown.stdout
    assert "orcha run [OPTIONS] [ID] -- CMD [ARG]..." in text
    # Options stay ASCII hyphens, ready to copy: no hyphen or dash lookalike before them.
    assert "--timeout DURATION" in text and "--cpus N" in text
    assert not any(c in text for c in "\u2010\u2013\u2014\u2212")
    assert "EXIT STATUS" in text and "ORCHA_ADDRESS" in text


def test_the_command_line_checks_and_writes_pages_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert manpages.main(["--check"]) == 0
    assert manpages.main(["--out", str(tmp_path)]) == 0  # every installed command
    written = {p.name for p in (tmp_path / "man1").glob("*.1")}
    assert {"orcha.1", "orcha-run.1", "orcha-config-reload.1"} <= written
    assert "pages to" in capsys.readouterr().err


ARGPARSE_PLUGIN = """
from orcha.plugins import BasePlugin


class P(BasePlugin):
    name = "tman-arg"
    aliases = ("tma",)
    help = "an argparse test plugin"

    def create_parser(self, parser):
        parser.add_argument("x")


plugin = P
"""


@pytest.fixture
def argparse_plugin_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An argparse plugin with an alias (as the tutorial's hello-world, the docs'
    countdown) in ORCHA_PLUGIN_PATH; no configuration file."""
    import sys

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "tman_arg.py").write_text(ARGPARSE_PLUGIN)
    monkeypatch.setenv("ORCHA_PLUGIN_PATH", str(folder))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("ORCHA_CONFIG", raising=False)
    monkeypatch.delenv("ORCHA_DISABLE_PLUGINS", raising=False)
    yield tmp_path
    sys.modules.pop("tman_arg", None)


def test_out_writes_the_page_of_an_argparse_plugin_with_an_alias(
    argparse_plugin_on_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = argparse_plugin_on_path / "mp"
    assert manpages.main(["--out", str(out)]) == 0
    page = (out / "man1" / "orcha-tman-arg.1").read_text()
    assert "an argparse test plugin" in page
    assert not (out / "man1" / "orcha-tma.1").exists()  # an alias has no page of its own
    assert "pages to" in capsys.readouterr().err
    # The shipped set (--write, --check) is orcha's own plugins' only.
    assert "orcha-tman-arg.1" not in manpages.pages()


def test_out_leaves_out_disabled_plugins(
    argparse_plugin_on_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHA_DISABLE_PLUGINS", "tman-arg")
    out = argparse_plugin_on_path / "mp"
    assert manpages.main(["--out", str(out)]) == 0
    written = {p.name for p in (out / "man1").glob("*.1")}
    assert "orcha-run.1" in written and "orcha-tman-arg.1" not in written
