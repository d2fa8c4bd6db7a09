"""The fast path and click read one grammar: whatever the fast path accepts, click
accepts and means the same by; everything else the fast path leaves to click."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import click
import pytest

from orcha.cli import fast, fast_commands
from orcha.cli.app import OrchaGroup, cli
from orcha.cli.grammar import COUNT, FLAG, Argument, Command
from orcha_plugins.hello_command import SEND
from orcha_plugins.shell_command import RUN

FAST_FORMS = [
    ["run", "x", "--", "true"],
    ["run", "x", "--priority", "3", "--", "sh", "-c", "echo hi"],
    ["run", "--priority=-2", "x", "--", "ls", "-la"],
    ["--address", "/tmp/s.sock", "run", "x", "--", "true"],
    ["run", "x", "--key", "k", "-v", "--", "true", "--", "--help"],
    ["run", "x", "true"],  # no '--': all words are the command, no ID
    ["run", "--", "x", "true"],  # no ID: the service numbers it
    ["run", "--", "true"],
    ["run", "--id", "-x", "--", "true"],  # an ID that starts with '-'
    ["run", "--id=y", "--priority", "1", "--", "echo", "--id"],
    ["run", "x", "--detach", "--", "true", "--"],
    ["run", "x", "--timeout", "3", "--cpus", "2", "--mem", "1G", "--", "true"],
    ["run", "x", "--after", "a,b", "--after", "c", "--after-any", "d", "--", "true"],
    ["run", "x", "--env", "A=1", "--env", "B=x=y", "--cwd", "/tmp", "--", "env"],
    ["run", "x", "--no-stdin", "--", "cat"],
    ["run", "x", "--group", "g", "--retries", "2", "--retry-delay", "1m", "--", "true"],
    ["run", "x", "--notify", "http://localhost:1/h", "--gpus", "0", "--", "true"],
    ["send", "a"],
    ["send", "a", "--counter", "3", "--sleep-time", "0.5"],
    ["send", "--counter=0", "a", "--priority", "7"],
    ["-v", "--key=secret", "send", "a", "--sleep-time", "1e-3"],
    ["-vv", "send", "a", "-v", "--verbose"],
    ["run", "x", "--detach", "--", "sleep", "9"],
    ["send", "--detach", "a", "--counter", "2"],
    ["send", "--", "a"],
    ["send", "-", "--counter", " 4 "],
    ["send"],  # no ID: the service numbers it
    ["send", "--id", "--weird", "--counter", "2"],
]

SLOW_FORMS = [
    [],
    ["ls"],
    ["serve"],
    ["run", "--help"],
    ["send", "-h"],
    ["--help"],
    ["--version"],
    ["run", "x", "--"],  # no command
    ["run", "x", "y", "--", "true"],  # two words before '--'
    ["run", "x", "--id", "y", "--", "true"],  # two IDs
    ["run", "12", "--", "true"],  # numbers name records
    ["run", "--id", "a~1", "--", "true"],  # so does NAME~N
    ["run", "x", "--detach", "--delay", "1s", "--at", "12:00", "--", "true"],  # click refuses
    ["send", "x", "--at", "12:00", "--delay", "1s"],
    ["run", "x", "--timeout", "3651d", "--", "true"],  # beyond the longest duration
    ["run", "--group", "--", "true"],  # '--' as a value: click's to read
    ["run", "x", "--", ""],  # an empty command name
    ["run", "x", "--cpus", "0", "--", "true"],
    ["run", "x", "--timeout", "0", "--", "true"],
    ["run", "x", "--env", "NOEQUALS", "--", "true"],
    ["run", "x", "--cwd", "/no/such/dir", "--", "true"],
    ["run", "x", "--after", "a b", "--", "true"],
    ["--config", "/tmp/c.yaml", "run", "x", "--", "true"],
    ["send", "a", "b"],
    ["send", "7"],
    ["send", "a", "--counter", "-1"],
    ["send", "a", "--counter", "abc"],
    ["send", "a", "--sleep-time", "nan"],
    ["send", "a", "--sleep-time", "-1"],
    ["send", "a", "--priority", "x"],
    ["send", "a", "--counter"],
    ["send", "a", "--counter", "1", "--counter", "2"],
    ["send", "a", "--unknown"],
    ["send", "a", "-x"],
    ["send", "a", "-v=1"],
    ["send", "a", "--detach=yes"],
    ["send", "a", "--kind", "hello"],
    ["send", "has space"],
    ["hello-world", "send", "x"],
    ["--detach", "send", "x"],  # --detach belongs to the command, not before it
    ["send", "x", "--detach", "--detach"],
    ["--address", "a", "send", "x", "--address", "b"],
    ["--", "send", "x"],
    ["-", "send", "x"],
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Discovery as installed; its note for the fast path in a private state directory,
    no configuration file, no plugin disabled."""
    (tmp_path / "state").mkdir()
    monkeypatch.setenv("ORCHA_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("ORCHA_DISABLE_PLUGINS", "ORCHA_CONFIG", "ORCHA_ADDRESS", "ORCHA_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(OrchaGroup, "_plugins", None)


def fast_view(args: list[str], disabled: frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """What the fast path would send for ``args``; None if it leaves them to click."""
    request = fast.prepare(args, disabled)
    if request is None:
        return None
    values = request.values
    return {
        "kind": request.kind, "id": request.petition_id, "params": request.params,
        "priority": request.priority, "detach": request.detach, "stdin": request.stdin,
        "schedule": request.schedule.to_wire() if request.schedule else {},
        "env": request.env, "cwd": request.cwd, "address": values.get("address"),
        "key": values.get("key"), "verbose": values.get("verbose", 0),
    }  # fmt: skip


def click_view(args: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any] | None:
    """What the click command would send for ``args``; None if click refuses them."""
    import orcha.cli.petition as submit
    from orcha.cli.options import globals_of
    from orcha.cli.petition_options import chosen
    from orcha.protocol.schedule import Schedule

    seen: dict[str, Any] = {}

    def fake_attach(
        kind: str,
        petition_id: str | None,
        params: dict[str, Any],
        priority: Any,
        detach: bool = False,
        stdin: bool = False,
    ) -> int:
        from orcha.protocol.messages import check_id

        ctx = click.get_current_context()
        options, g = chosen(ctx), globals_of(ctx)
        seen.update(
            kind=kind, id=petition_id and check_id(petition_id),
            params=submit._checked(ctx, kind, params), priority=priority, detach=detach,
            stdin=stdin,
            schedule=Schedule.from_wire(options.schedule).to_wire(), env=options.env,
            cwd=options.cwd, address=g.address, key=g.key, verbose=g.verbose,
        )  # fmt: skip
        return 0

    monkeypatch.setattr(submit, "attach", fake_attach)
    try:
        rv = cli.main(args=list(args), prog_name="orcha", standalone_mode=False)
    except (click.ClickException, ValueError):
        return None
    return seen if rv == 0 and seen else None


def _note(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the click application discover the plugins and write its note."""
    assert click_view(["send", "x"], monkeypatch) is not None


@pytest.mark.parametrize("args", FAST_FORMS)
def test_fast_and_click_agree(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _note(monkeypatch)
    fast_says = fast_view(args)
    assert fast_says is not None
    assert fast_says == click_view(args, monkeypatch)


@pytest.mark.parametrize("args", SLOW_FORMS)
def test_everything_else_goes_to_click(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _note(monkeypatch)
    assert fast_view(args) is None


WORDS = ["x", "y", "--", "-", "true", "", "a,b", "-v", "-vv", "-x", "--verbose", "--help",
         "--priority", "--priority=5", "-3", "7", "--counter", "--counter=2", "1.5",
         "--sleep-time", "nan", "--detach", "--key", "--address=/s", "--cpus", "0",
         "--timeout", "2m", "--env", "A=1", "--after", "--cwd", "/tmp", "--kind",
         "--mem", "5G", "--notify", "--group", "has space", "--no-stdin"]  # fmt: skip


def test_whenever_the_fast_path_accepts_click_means_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _note(monkeypatch)
    rng = random.Random(11)
    accepted = 0
    for _ in range(1500):
        head = rng.choice([[], ["-v"], ["--key", "k"], ["--address=/s"]])
        body = [rng.choice(WORDS) for _ in range(rng.randint(0, 6))]
        args = [*head, rng.choice(["run", "send"]), *body]
        fast_says = fast_view(args)
        if fast_says is not None:
            accepted += 1
            assert fast_says == click_view(args, monkeypatch), args
    assert accepted > 100  # the test saw the fast path at work, not only refusals


def test_a_disabled_plugin_turns_its_fast_command_off(monkeypatch: pytest.MonkeyPatch) -> None:
    _note(monkeypatch)
    assert fast_view(["run", "x", "--", "true"]) is not None
    assert fast_view(["run", "x", "--", "true"], frozenset({"shell"})) is None
    assert fast_view(["send", "x"], frozenset({"shell"})) is None  # another key: no note


def test_disabled_plugins_come_from_the_environment_and_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orcha import config

    monkeypatch.setenv("ORCHA_DISABLE_PLUGINS", " x, ,shell")
    assert fast_commands.disabled_plugins() == {"x", "shell"}
    (tmp_path / "c.yaml").write_text("plugins: {hello: {enabled: false}, y: {}}\n")
    loaded = config.load(str(tmp_path / "c.yaml"))
    assert fast_commands.disabled_plugins(loaded) == {"x", "shell", "hello"}


def test_a_named_configuration_file_leaves_the_default_one_unread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unread() -> None:
        raise AssertionError("the fast path read the default configuration file")

    monkeypatch.setattr(fast, "_configuration", unread)
    for args in (["--config", "o.yaml", "status"], ["--config=o.yaml", "run", "x", "--", "t"]):
        assert fast.try_fast(args) is None  # click reads o.yaml


def test_without_a_current_note_everything_goes_to_click(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert fast_view(["run", "x", "--", "true"]) is None  # no note yet
    _note(monkeypatch)
    assert fast_view(["run", "x", "--", "true"]) is not None
    monkeypatch.setenv("ORCHA_PLUGIN_PATH", str(tmp_path))  # discovery would look further
    assert fast_view(["run", "x", "--", "true"]) is None


def test_the_note_names_no_plugin_in_the_core_and_finds_each_declaration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _note(monkeypatch)
    table = fast_commands.read(frozenset())
    assert table is not None
    assert table["run"] == ("shell", "orcha_plugins.shell_command", "run")
    assert table["send"] == ("hello", "orcha_plugins.hello_command", "send")
    assert fast_commands.declared("orcha_plugins.shell_command", "run") is RUN
    assert fast_commands.declared("orcha_plugins.shell_command", "send") is None
    assert fast_commands.declared("no_such_module_here", "run") is None


@pytest.mark.parametrize("spec", [RUN, SEND], ids=lambda s: s.name)
def test_each_click_command_has_exactly_the_declared_parameters(spec: Command) -> None:
    command = cli.get_command(click.Context(cli), spec.name)
    assert command is not None
    declared_options = {o.dest: o for o in spec.options()}
    declared_arguments = [p for p in spec.params if isinstance(p, Argument)]
    click_options = [p for p in command.params if isinstance(p, click.Option)]
    click_arguments = [p for p in command.params if isinstance(p, click.Argument)]
    assert [(a.name, a.nargs) for a in click_arguments] == [
        (a.dest, -1 if a.rest else 1) for a in declared_arguments
    ]
    assert {p.name for p in click_options} == set(declared_options)
    for param in click_options:
        option = declared_options[param.name]  # type: ignore[index]
        assert tuple(param.opts) == option.names
        assert param.is_flag == (option.action == FLAG)
        assert param.count == (option.action == COUNT)
        assert param.multiple == option.multiple
        if option.action not in (FLAG, COUNT):
            default = param.get_default(click.Context(command))
            unset = default is None or type(default).__name__ == "Sentinel"  # click >= 8.3
            assert (None if unset else default) == option.default, param.name


def test_the_declarations_and_the_fast_path_are_cheap_to_import() -> None:
    import subprocess
    import sys

    probe = (
        "import sys; before = set(sys.modules)\n"
        "import orcha.cli.fast, orcha.cli.grammar, orcha.cli.fast_commands\n"
        "import orcha_plugins.shell_command, orcha_plugins.hello_command\n"
        "print(sorted({'click', 'typing', 're', 'yaml', 'json'} & (set(sys.modules) - before)))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.stdout == "[]\n", proc.stderr


#: What a client may load beyond Python's own start-up to run 'orcha run x -- true' on
#: the fast path: orcha's modules and these cheap C modules. Anything else (enum through
#: socket, signal or an IntEnum; re; typing; functools and collections through _pickle;
#: selectors; hashlib or OpenSSL; json; click) costs start-up that every petition pays
#: (issue 14), and fails here by name.
FAST_PATH_MAY_LOAD = {
    "__future__", "_md5", "_sha2", "_sha256", "_socket", "_struct", "errno", "pwd", "select",
}  # fmt: skip
FAST_PATH_PROBE = """
import sys
before = set(sys.modules)
from orcha.cli import fast, fast_commands
fast_commands.write(fast_commands.key(frozenset()),
                    [("run", "shell", "orcha_plugins.shell_command", "run")])
usable, config = fast._configuration()
request = fast.prepare(["run", "x", "--", "true"], fast_commands.disabled_plugins(config))
assert usable and request is not None and request.kind == "shell", request
from orcha import settings
settings.configure(settings.resolve(address=None, key=None, verbose=0, config=config))
import orcha.client.attach, orcha.client.screen
from orcha.protocol.wire import mac
mac(b"key", b"challenge", "md5"), mac(b"key", b"challenge", "sha256")
from orcha.protocol.wire import answer, dumps_plain, request_frame
request_frame(None, "call", ("submit", {"env": {"A": "1"}, "n": 2.5, "b": b"x"}))
answer(dumps_plain(("#RETURN", {"handle": 1, "queue": "7f"})))
print(" ".join(sorted(set(sys.modules) - before)))
print(config is not None and config.data["grace"])
"""


@pytest.mark.parametrize("config_file", [False, True], ids=["no-config", "config"])
def test_the_fast_path_loads_only_orcha_and_cheap_c_modules(
    tmp_path: Path, config_file: bool
) -> None:
    """The fast path's own steps (configuration, its note, parsing, settings with the
    default directories) and the modules it runs a petition with, in a fresh interpreter:
    what they load (the second time: the first notes platformdirs' runtime directory and
    the configuration file, if there is one)."""
    import os
    import subprocess
    import sys

    if config_file:
        (tmp_path / "config" / "orcha").mkdir(parents=True)
        (tmp_path / "config" / "orcha" / "config.yaml").write_text("grace: 3\n")

    env = {**os.environ, "ORCHA_STATE_DIR": str(tmp_path / "state"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}  # fmt: skip
    env.pop("ORCHA_RUNTIME_DIR", None)  # platformdirs' runtime directory: noted the first time
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", FAST_PATH_PROBE], capture_output=True,
                              text=True, timeout=60, env=env, cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    modules, grace = proc.stdout.splitlines()
    assert grace == ("3" if config_file else "False")  # the file was read (from its note)
    loaded = set(modules.split())
    assert "orcha.client.attach" in loaded and "_socket" in loaded  # it did load the path
    others = {m for m in loaded if m.split(".")[0] not in ("orcha", "orcha_plugins")}
    assert others <= FAST_PATH_MAY_LOAD, sorted(others - FAST_PATH_MAY_LOAD)


def test_the_installed_command_imports_nothing_before_orcha() -> None:
    """bin/orcha (what pip installs as ``orcha``) imports sys and orcha's entry point
    only: no ``re``, as the wrapper pip writes for a [project.scripts] entry has."""
    import ast
    import os

    script = Path(__file__).resolve().parents[2] / "bin" / "orcha"
    tree = ast.parse(script.read_text())
    imports = [ast.unparse(node) for node in ast.walk(tree)
               if isinstance(node, (ast.Import, ast.ImportFrom))]  # fmt: skip
    assert imports == ["import sys", "from orcha.cli.main import main"]
    assert script.read_text().startswith("#!/usr/bin/env python3\n")  # pip rewrites it
    assert os.access(script, os.X_OK)


def test_the_fast_path_exits_with_its_output_flushed_and_no_teardown() -> None:
    """exit_now: what was written reaches the reader and the code is the process's;
    a flush that fails (the reader went away) returns, for sys.exit to report."""
    import subprocess
    import sys

    code = ("import sys, atexit; from orcha.cli.main import exit_now; "
            "atexit.register(lambda: print('teardown')); "
            "sys.stdout.write('out'); sys.stderr.write('err'); exit_now(7)")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert (proc.returncode, proc.stdout, proc.stderr) == (7, "out", "err")

    class Gone:
        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    from orcha.cli import main as main_module

    saved = sys.stdout
    sys.stdout = Gone()  # type: ignore[assignment]
    try:
        main_module.exit_now(0)  # returns: the process goes on
    finally:
        sys.stdout = saved


DETACHED_ARRAYS = [
    ["run", "--detach", "--array", "1-5", "a", "--", "true"],
    ["run", "--detach", "--array", "1-10%3", "--", "echo", "{}"],
    ["run", "--detach", "--array", "1,3,5-9", "--at-once", "2", "--priority", "3", "a", "--",
     "true"],
    ["run", "--array", "0-20:5", "--detach", "--cpus", "1", "--env", "A=1", "b", "--", "true"],
    ["run", "--detach", "--array", "1-3%2", "--at-once", "2", "c", "--", "true"],
]  # fmt: skip
ARRAYS_FOR_CLICK = [
    ["run", "--array", "1-5", "a", "--", "true"],  # attached: streamed as 'follow' does
    ["run", "--detach", "--json", "--array", "1-5", "a", "--", "true"],
    ["run", "--detach", "--array", "1-5", "--each", "-", "a", "--", "true"],
    ["run", "--detach", "--array", "bad", "a", "--", "true"],
    ["run", "--detach", "--array", "1-3%2", "--at-once", "3", "a", "--", "true"],
    ["run", "--detach", "--at-once", "2", "a", "--", "true"],  # --at-once needs an array
    ["run", "--detach", "--array", "1-3", "--delay", "1s", "--at", "12:00", "a", "--", "true"],
    ["run", "--detach", "--array", "1-3", "a~1", "--", "true"],  # not a member's ID
    ["run", "--detach", "--array", "1-3", "--kind", "k", "a", "--", "true"],
]


def _array_views(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(what the fast path would submit as an array, what click's run_array would)."""
    import orcha.cli.arrays as arrays
    from orcha.cli.petition_options import chosen
    from orcha.protocol.schedule import Schedule

    request = fast.prepare(args, frozenset())
    fast_says = None
    if request is not None:
        assert request.array is not None, args
        members, limit = request.array
        fast_says = {
            "kind": request.kind, "name": request.petition_id, "params": request.params,
            "priority": request.priority, "members": members, "limit": limit,
            "schedule": request.schedule.to_wire() if request.schedule else {},
            "env": request.env, "cwd": request.cwd,
        }  # fmt: skip
    seen: dict[str, Any] = {}

    def fake_run_array(
        kind: str, name: str | None, params: dict[str, Any], priority: Any, detach: bool,
        members: list[Any], limit: int | None, stdin: bool = False,
    ) -> int:  # fmt: skip
        options = chosen(click.get_current_context())
        seen.update(
            kind=kind, name=name, params=params, priority=priority, members=members,
            limit=limit, schedule=Schedule.from_wire(options.schedule).to_wire(),
            env=options.env, cwd=options.cwd,
        )  # fmt: skip
        return 0

    monkeypatch.setattr(arrays, "run_array", fake_run_array)
    try:
        rv = cli.main(args=list(args), prog_name="orcha", standalone_mode=False)
    except (click.ClickException, ValueError):
        return fast_says, None
    return fast_says, seen if rv == 0 and seen else None


@pytest.mark.parametrize("args", DETACHED_ARRAYS)
def test_a_detached_array_takes_the_fast_path_and_means_what_it_means_to_click(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """'run --detach --array SPEC' is submitted without click (1,000 petitions for one
    Python start-up), with the very members, limit and options click would send."""
    _note(monkeypatch)
    fast_says, click_says = _array_views(args, monkeypatch)
    assert fast_says is not None and click_says is not None
    assert fast_says == click_says


@pytest.mark.parametrize("args", ARRAYS_FOR_CLICK)
def test_other_arrays_and_wrong_ones_go_to_click(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _note(monkeypatch)
    assert fast.prepare(args, frozenset()) is None
