"""Plugin discovery: entry points, legacy ``orcha_*`` modules, broken plugins, conflicts;
the CLI's view of it (argparse plugins bridged into click commands)."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from orcha.cli.bridge import discover as cli_discover
from orcha.plugins import BasePlugin, LoadedPlugin, discover
from orcha.plugins.discovery import _instantiate
from orcha_plugins.hello import HelloKind, HelloPlugin
from orcha_plugins.shell import ShellKind, ShellPlugin

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TUTORIAL = FIXTURES / "tutorial_plugin"


def _drop_modules(prefixes: tuple[str, ...], keep: frozenset[str] | set[str] = frozenset()) -> None:
    for name in list(sys.modules):
        if name.split(".")[0].startswith(prefixes) and name not in keep:
            del sys.modules[name]


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for ``orcha_t*`` modules; they are unloaded afterwards."""
    before = set(sys.modules)
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    yield path
    importlib.invalidate_caches()
    for name in set(sys.modules) - before:
        if name.startswith("orcha_t"):
            del sys.modules[name]


def write(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    importlib.invalidate_caches()


def by_module(found: list[LoadedPlugin], module: str) -> LoadedPlugin:
    matches = [p for p in found if p.module == module]
    assert len(matches) == 1, [p.module for p in found]
    return matches[0]


def plain_plugin(name: str, extra: str = "") -> str:
    return f"""
        from orcha.plugins import BasePlugin

        class P(BasePlugin):
            name = {name!r}
            help = "a test plugin"
            {extra}

            @staticmethod
            def version():
                return "{name} - 1.2.3"

        plugin = P
    """


def argparse_plugin(name: str, aliases: tuple[str, ...] = ()) -> str:
    return f"""
        from orcha.plugins import BasePlugin

        class P(BasePlugin):
            name = {name!r}
            aliases = {aliases!r}

            def create_parser(self, parser):
                parser.add_argument("x")

        plugin = P
    """


# -- embedded plugins ----------------------------------------------------------------------


def test_embedded_plugins_found() -> None:
    found = discover()
    hello = by_module(found, "orcha_plugins.hello")
    shell = by_module(found, "orcha_plugins.shell")
    for entry, name, command, kind in (
        (hello, "hello", "send", HelloKind),
        (shell, "shell", "run", ShellKind),
    ):
        assert entry.error is None
        assert entry.name == name
        assert entry.embedded is True
        assert entry.origin == f"entry point {name}"
        assert list(entry.commands) == [command]
        assert isinstance(entry.commands[command], click.Command)
        assert entry.aliases == {}
        assert list(entry.kinds) == [name]
        assert isinstance(entry.kinds[name], kind)
        assert entry.display.startswith(f"{name}* - ")
    assert isinstance(hello.plugin, HelloPlugin)
    assert isinstance(shell.plugin, ShellPlugin)
    # embedded plugins come first
    assert [p.name for p in found[:2]] == ["hello", "shell"]


def test_disabled_plugin_is_marked_and_left_out() -> None:
    found = discover(disabled=frozenset({"hello"}))
    hello = by_module(found, "orcha_plugins.hello")
    assert hello.error == "disabled"
    assert hello.plugin is None
    assert hello.commands == {} and hello.kinds == {}
    shell = by_module(found, "orcha_plugins.shell")
    assert shell.error is None and "run" in shell.commands


# -- legacy modules ------------------------------------------------------------------------


def test_legacy_module_plugin_found(plugin_dir: Path) -> None:
    write(plugin_dir, "orcha_tgood", plain_plugin("tgood"))
    entry = by_module(discover(), "orcha_tgood")
    assert entry.error is None
    assert entry.name == "tgood"
    assert entry.origin == "module orcha_tgood"
    assert entry.embedded is False
    assert isinstance(entry.plugin, BasePlugin)
    assert entry.version == "tgood - 1.2.3"
    assert entry.display == "tgood - 1.2.3"


def test_legacy_package_plugin_found(plugin_dir: Path) -> None:
    pkg = plugin_dir / "orcha_tpkg"
    pkg.mkdir()
    (pkg / "impl.py").write_text(textwrap.dedent(plain_plugin("tpkg")))
    (pkg / "__init__.py").write_text("from .impl import P as plugin\n")
    importlib.invalidate_caches()
    entry = by_module(discover(), "orcha_tpkg")
    assert entry.error is None
    assert entry.name == "tpkg"


def test_legacy_argparse_plugin_is_bridged(plugin_dir: Path) -> None:
    write(plugin_dir, "orcha_targ", argparse_plugin("targ", ("ta", "tb")))
    found = by_module(discover(), "orcha_targ")  # discovery: names only, no CLI
    assert found.error is None and found.commands == {}
    assert found.command_names == ["targ"]
    assert found.aliases == {"ta": "targ", "tb": "targ"}
    entry = by_module(cli_discover(), "orcha_targ")  # the CLI bridges it
    assert entry.error is None
    assert entry.plugin is not None and entry.plugin.is_argparse
    assert list(entry.commands) == ["targ"]
    assert isinstance(entry.commands["targ"], click.Command)
    assert entry.commands["targ"].name == "targ"
    assert entry.aliases == {"ta": "targ", "tb": "targ"}


class _ArgparsePlugin(BasePlugin):
    """An argparse plugin with a subcommand, as the tutorial's hello-world is."""

    name = "targ"

    def create_parser(self, parser: Any) -> None:
        parser.add_argument("--level", type=int)
        sub = parser.add_subparsers(required=True, metavar="command")
        send = sub.add_parser("send")
        send.add_argument("id", metavar="ID")

    def handle(self, namespace: Any) -> int:
        return 0


@pytest.mark.parametrize(
    ("args", "line"),
    [
        ([], "orcha targ: the following arguments are required: command "
             "(see 'orcha targ --help')"),
        (["--level", "x", "send", "a"],
         "orcha targ: argument --level: invalid int value: 'x' (see 'orcha targ --help')"),
        (["send"], "orcha targ send: the following arguments are required: ID "
                   "(see 'orcha targ send --help')"),
        (["send", "a", "--bogus"], "orcha targ: unrecognized arguments: --bogus "
                                   "(see 'orcha targ --help')"),
    ],
)  # fmt: skip
def test_an_argparse_plugins_usage_errors_are_one_line_as_orchas_own(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    line: str,
) -> None:
    """argparse prints its usage block and 'PROG: error: ...'; the bridge says the same in
    one line, as orcha's own commands do (exit code 2)."""
    from orcha import settings
    from orcha.cli.bridge import bridge

    monkeypatch.setattr(settings, "_current", settings._current)  # the command sets it
    command = bridge(_ArgparsePlugin())
    assert command.main(args, prog_name="orcha targ", standalone_mode=False) == 2
    assert capsys.readouterr().err == f"{line}\n"
    assert command.main(["send", "a"], prog_name="orcha targ", standalone_mode=False) == 0
    assert command.main(["send", "--help"], prog_name="orcha targ", standalone_mode=False) == 0
    assert capsys.readouterr().out.startswith("usage: orcha targ send [-h] ID")


class _OwnServiceClient(BasePlugin):
    """An argparse plugin whose client finds no service (``subcommands``: its own)."""

    name = "tclient"
    subcommands: tuple[str, ...] = ("serve", "send")
    advice = ""

    def create_parser(self, parser: Any) -> None:
        sub = parser.add_subparsers(required=True, metavar="command")
        for name in self.subcommands:
            sub.add_parser(name)

    def handle(self, namespace: Any) -> int:
        from orcha.errors import NoServiceError

        raise NoServiceError("/run/x.sock", "no socket there", self.advice)


@pytest.mark.parametrize(
    ("subcommands", "own_service", "advice", "said"),
    [
        (("serve", "send"), True, "",
         "start the plugin's own service with 'orcha tclient serve' ('orcha serve' does not "
         "run its messages)"),
        (("start", "send"), True, "",
         "start the plugin's own service (see 'orcha tclient --help'; 'orcha serve' does not "
         "run its messages)"),
        # a plugin with kinds is served by 'orcha serve'; an advice of its own is kept
        (("serve", "send"), False, "", "start one with 'orcha serve'"),
        (("serve", "send"), True, "check --address", "check --address"),
    ],
)  # fmt: skip
def test_the_client_of_a_plugins_own_service_says_to_start_that_one(
    monkeypatch: pytest.MonkeyPatch,
    subcommands: tuple[str, ...],
    own_service: bool,
    advice: str,
    said: str,
) -> None:
    from orcha import settings
    from orcha.cli.bridge import bridge
    from orcha.errors import NoServiceError

    monkeypatch.setattr(settings, "_current", settings._current)  # the command sets it
    plugin = _OwnServiceClient()
    plugin.subcommands, plugin.advice = subcommands, advice
    command = bridge(plugin, own_service=own_service)
    with pytest.raises(NoServiceError) as caught:
        command.main(["send"], prog_name="orcha tclient", standalone_mode=False)
    assert str(caught.value) == (
        f"no orcha service is running at /run/x.sock (no socket there); {said}"
    )


def test_tutorial_plugin_found_as_legacy_module(monkeypatch: pytest.MonkeyPatch) -> None:
    before = set(sys.modules)
    _drop_modules(("orcha_hello_world",))
    monkeypatch.syspath_prepend(str(TUTORIAL))
    try:
        entry = by_module(cli_discover(), "orcha_hello_world")
        assert entry.error is None
        assert entry.name == "hello-world"
        assert list(entry.commands) == ["hello-world"]
        assert entry.aliases == {"hw": "hello-world"}
        assert entry.version.startswith("orcha-hello-world - ")
        assert sys.modules["orcha_hello_world"].__file__.startswith(str(TUTORIAL))
    finally:
        _drop_modules(("orcha_hello_world",), keep=before)


@pytest.mark.parametrize(
    ("source", "error_start"),
    [
        ("raise ImportError('needs libfoo')\n", "ImportError: needs libfoo"),
        ("import orcha_t_does_not_exist\n", "ModuleNotFoundError: "),
        ("def broken(:\n", "SyntaxError: "),
        ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
        ("raise RuntimeError('boom')\n", "RuntimeError: boom"),
        ("x = 1\n", "TypeError: module orcha_tbad has no 'plugin' attribute"),
        ("plugin = 42\n", "TypeError: 42 is not a subclass"),
        (
            "from orcha.plugins import BasePlugin\nclass P(BasePlugin):\n    pass\nplugin = P\n",
            "TypeError: plugin P has no name",
        ),
        (
            "from orcha.plugins import BasePlugin\n"
            "class P(BasePlugin):\n    name = 'x'\n    def __init__(self):\n"
            "        raise ValueError('ctor')\nplugin = P\n",
            "ValueError: ctor",
        ),
    ],
    ids=[
        "import-error",
        "missing-dep",
        "syntax",
        "sys-exit",
        "runtime",
        "no-plugin",
        "not-a-plugin",
        "no-name",
        "ctor-raises",
    ],
)
def test_broken_legacy_module_listed_with_error(
    plugin_dir: Path, source: str, error_start: str
) -> None:
    write(plugin_dir, "orcha_tbad", source)
    write(plugin_dir, "orcha_tgood", plain_plugin("tgood"))
    found = discover()
    bad = by_module(found, "orcha_tbad")
    assert bad.plugin is None
    assert bad.error is not None and bad.error.startswith(error_start), bad.error
    assert bad.name == "orcha_tbad"
    assert bad.version == "unknown"
    good = by_module(found, "orcha_tgood")
    assert good.error is None and good.plugin is not None
    assert by_module(found, "orcha_plugins.hello").error is None
    assert by_module(found, "orcha_plugins.shell").error is None


def test_plugin_whose_kinds_raise_is_listed_with_error(plugin_dir: Path) -> None:
    extra = "def kinds(self):\n                raise RuntimeError('no kinds')"
    write(plugin_dir, "orcha_tkinds", plain_plugin("tkinds", extra))
    entry = by_module(discover(), "orcha_tkinds")
    assert entry.error == "RuntimeError: no kinds"
    assert entry.plugin is None


def test_plugin_version_error_does_not_break_listing(plugin_dir: Path) -> None:
    write(
        plugin_dir,
        "orcha_tver",
        """
        from orcha.plugins import BasePlugin
        class P(BasePlugin):
            name = "tver"
            @staticmethod
            def version():
                raise OSError("no metadata")
        plugin = P
    """,
    )
    entry = by_module(discover(), "orcha_tver")
    assert entry.error is None
    assert entry.version == "unknown (OSError: no metadata)"


def test_legacy_plugin_can_be_disabled(plugin_dir: Path) -> None:
    write(plugin_dir, "orcha_tgood", plain_plugin("tgood"))
    entry = by_module(discover(disabled=frozenset({"tgood"})), "orcha_tgood")
    assert entry.error == "disabled"
    assert entry.plugin is None


# -- conflicts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "aliases", "taken", "owner"),
    [
        ("send", (), "send", "hello"),
        ("tcmd", ("run",), "run", "shell"),
        ("tcmd", ("serve",), "serve", "orcha"),
        ("ls", (), "ls", "orcha"),
    ],
)
def test_command_conflict_names_the_owner(
    plugin_dir: Path, name: str, aliases: tuple[str, ...], taken: str, owner: str
) -> None:
    write(plugin_dir, "orcha_tclash", argparse_plugin(name, aliases))
    found = discover()
    entry = by_module(found, "orcha_tclash")
    assert entry.plugin is None
    assert entry.commands == {}
    assert entry.error is not None
    assert entry.error.startswith(f"conflict: plugin {name} claims")
    assert f"command {taken!r} (already provided by {owner})" in entry.error
    # the owner keeps its name
    if owner != "orcha":
        assert taken in by_module(found, f"orcha_plugins.{owner}").commands


def test_click_command_conflict(plugin_dir: Path) -> None:
    write(
        plugin_dir,
        "orcha_tclick",
        """
        import click
        from orcha.plugins import BasePlugin

        @click.command("run")
        def run():
            pass

        class P(BasePlugin):
            name = "tclick"
            def commands(self):
                return [run]

        plugin = P
    """,
    )
    entry = by_module(discover(), "orcha_tclick")
    assert entry.error == "conflict: plugin tclick claims command 'run' (already provided by shell)"


def test_kind_conflict(plugin_dir: Path) -> None:
    write(
        plugin_dir,
        "orcha_tkind",
        """
        from orcha.kinds import Kind
        from orcha.plugins import BasePlugin

        class K(Kind):
            name = "hello"

        class P(BasePlugin):
            name = "tkind"
            def kinds(self):
                return [K()]

        plugin = P
    """,
    )
    entry = by_module(discover(), "orcha_tkind")
    assert entry.error == "conflict: plugin tkind claims kind 'hello' (already provided by hello)"
    assert entry.kinds == {}


def test_conflict_between_legacy_plugins_first_module_wins(plugin_dir: Path) -> None:
    write(plugin_dir, "orcha_ta", argparse_plugin("tshared"))
    write(plugin_dir, "orcha_tb", argparse_plugin("tother", ("tshared",)))
    found = discover()
    assert by_module(found, "orcha_ta").error is None
    b = by_module(found, "orcha_tb")
    assert b.error == (
        "conflict: plugin tother claims command 'tshared' (already provided by tshared)"
    )


def test_disabling_the_owner_frees_its_name(plugin_dir: Path) -> None:
    write(plugin_dir, "orcha_tclash", argparse_plugin("send"))
    found = cli_discover(disabled=frozenset({"hello"}))
    assert by_module(found, "orcha_plugins.hello").error == "disabled"
    entry = by_module(found, "orcha_tclash")
    assert entry.error is None
    assert list(entry.commands) == ["send"]


# -- _instantiate --------------------------------------------------------------------------


def test_instantiate_accepts_class_instance_and_module() -> None:
    import orcha_plugins.hello as hello_module

    assert isinstance(_instantiate(HelloPlugin), HelloPlugin)
    instance = HelloPlugin()
    assert _instantiate(instance) is instance
    with pytest.raises(TypeError, match="no 'plugin' attribute"):
        _instantiate(hello_module)


def test_ls_names_a_plugin_that_gives_no_version_line() -> None:
    from orcha.plugins import BasePlugin, LoadedPlugin

    class Bare(BasePlugin):
        name = "bare"

    class Numbered(BasePlugin):
        name = "numbered"

        @staticmethod
        def version() -> str:
            return "2.1"

    assert LoadedPlugin("bare", "path x", "bare", plugin=Bare()).display == "bare - unknown"
    numbered = LoadedPlugin("numbered", "path x", "numbered", plugin=Numbered())
    assert numbered.display == "numbered - 2.1"


# -- third-party entry points, path modules, predicates -------------------------------------


def _with_entry_point(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    from importlib.metadata import EntryPoint

    import orcha.plugins.discovery as discovery

    real = discovery._entry_points
    extra = EntryPoint(name=name, value=value, group=discovery.ENTRY_POINT_GROUP)
    monkeypatch.setattr(discovery, "_entry_points", lambda: [*real(), extra])


def test_third_party_entry_point_found_once(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(plugin_dir, "orcha_tep", plain_plugin("tep"))
    _with_entry_point(monkeypatch, "tep", "orcha_tep:P")
    found = discover()
    entry = by_module(found, "orcha_tep")  # not found again as a legacy module
    assert entry.error is None
    assert entry.origin == "entry point tep"
    assert entry.embedded is False
    assert entry.display == "tep - 1.2.3"


def test_entry_point_disabled_by_name_is_not_imported(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(plugin_dir, "orcha_tep", "raise RuntimeError('imported')\n")
    _with_entry_point(monkeypatch, "tep", "orcha_tep:P")
    entry = by_module(discover(disabled=frozenset({"tep"})), "orcha_tep")
    assert entry.error == "disabled"
    assert "orcha_tep" not in sys.modules


def test_disabled_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from orcha.plugins.discovery import disabled_from_env

    monkeypatch.setenv("ORCHA_DISABLE_PLUGINS", " hello, ,tep ")
    assert disabled_from_env() == frozenset({"hello", "tep"})
    monkeypatch.delenv("ORCHA_DISABLE_PLUGINS")
    assert disabled_from_env() == frozenset()


def test_path_module_survives_a_second_discovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI and the service may each discover in one process (orcha serve)."""
    (tmp_path / "tpath_mod.py").write_text(textwrap.dedent(plain_plugin("tpath")))
    monkeypatch.setenv("ORCHA_PLUGIN_PATH", str(tmp_path))
    try:
        first = by_module(discover(), "tpath_mod")
        second = by_module(discover(), "tpath_mod")
        assert first.error is None and second.error is None, second.error
        assert first.origin == f"path {tmp_path}"
    finally:
        sys.modules.pop("tpath_mod", None)


def test_predicates_are_adapted_and_keep_their_names(plugin_dir: Path) -> None:
    extra = (
        "def predicates(self):\n"
        "                def licence_free(petition):\n"
        "                    return False\n"
        "                return [licence_free]"
    )
    write(plugin_dir, "orcha_tpred", plain_plugin("tpred", extra))
    entry = by_module(discover(), "orcha_tpred")
    assert entry.error is None
    [predicate] = entry.predicates
    assert getattr(predicate, "__name__", None) == "licence_free"
    assert predicate(object(), None) == "waiting for a plugin's predicate to hold"


@pytest.mark.parametrize(
    ("hook", "error"),
    [
        ("predicates", "TypeError: 42 (a predicate) is not callable"),
        ("event_sinks", "TypeError: 42 (an event sink) is not callable"),
        ("kinds", "TypeError: plugin tbadhook supplies a kind without a name: 42"),
    ],
)
def test_a_hook_of_the_wrong_shape_is_reported_not_fatal(
    plugin_dir: Path, hook: str, error: str
) -> None:
    extra = f"def {hook}(self):\n                return [42]"
    write(plugin_dir, "orcha_tbadhook", plain_plugin("tbadhook", extra))
    found = discover()
    entry = by_module(found, "orcha_tbadhook")
    assert entry.plugin is None
    assert entry.error == error
    assert by_module(found, "orcha_plugins.shell").error is None
