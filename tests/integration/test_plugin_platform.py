"""The plugin platform as a user sees it, with the test plugins of
``tests/fixtures/platform_plugins`` found through ORCHA_PLUGIN_PATH and a real service:

discovery (``orcha ls``, ``ls --json``, ORCHA_DISABLE_PLUGINS, a broken plugin, a
conflicting one), ``orcha describe``, kinds' parameter schemas, the configuration file
(``orcha config path|show|validate``, ``serve`` refusing an invalid file, disabling a
plugin, ``max_running``), ``orcha health``, and the plugin lifecycle hooks.

The ``orchatest_full`` plugin appends a line per hook to the file named by
ORCHATEST_HOOK_FILE; ``orchatest_broken`` appends one when it is imported, then raises.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from orcha.errors import PetitionError
from orcha.protocol.messages import SubmitRequest
from orcha.protocol.transport import set_recv_timeout
from tests.conftest import Env, Service, wait_for
from tests.integration.clients import WAIT, orcha

pytestmark = pytest.mark.timeout(90)

PLUGINS = Path(__file__).resolve().parents[1] / "fixtures" / "platform_plugins"
FULL = "orchatest_full"
BROKEN_ERROR = "RuntimeError: orchatest_broken is broken on purpose"
CONFLICT_ERROR = (
    "conflict: plugin orchatest_conflict claims command 'run' (already provided by shell), "
    "kind 'shell' (already provided by shell)"
)
GREET_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "description": "Who to greet."},
        "times": {"type": "integer", "minimum": 1, "maximum": 5, "default": 1,
                  "description": "How many times."},
    },
    "required": ["name"],
    "additionalProperties": False,
}  # fmt: skip
GREET_HELP = "Greet NAME, TIMES times, with the configured greeting."
DEFAULT_SETTINGS = '{"greeting": "hi", "healthy": true}'
USAGE, UNHEALTHY, UNREACHABLE, UNKNOWN, REFUSED = 2, 1, 2, 203, 204


# -- helpers ---------------------------------------------------------------------------------
@pytest.fixture
def penv(env: Env) -> Env:
    """The environment with the test plugins on ORCHA_PLUGIN_PATH (for the service and
    every client) and a hook file."""
    env.vars["ORCHA_PLUGIN_PATH"] = str(PLUGINS)
    env.vars["ORCHATEST_HOOK_FILE"] = str(env.root / "hooks.log")
    return env


def hook_lines(env: Env) -> list[str]:
    """What orchatest_full's hooks (and petitions) wrote, without orchatest_broken's
    import notes."""
    path = env.root / "hooks.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line for line in lines if not line.startswith("orchatest_broken imported")]


def broken_imports(env: Env) -> int:
    path = env.root / "hooks.log"
    text = path.read_text() if path.exists() else ""
    return sum(line.startswith("orchatest_broken imported") for line in text.splitlines())


def config_file(env: Env) -> Path:
    return env.root / "config" / "orcha" / "config.yaml"


def write_config(env: Env, text: str) -> Path:
    path = config_file(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def one_error(stderr: str, expected: str) -> None:
    """``stderr`` is exactly the one line ``orcha: EXPECTED``."""
    assert stderr == f"orcha: {expected}\n", stderr


def ls_json(env: Env, extra: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """``orcha ls --json``'s plugins by name."""
    doc = json.loads(orcha(env, "ls", "--json", extra=extra)[0])
    return {p["name"]: p for p in doc["plugins"]}


def serve(env: Env, *args: str) -> Service:
    return env.serve("--max-running", "2", "--grace", "2", *args)


def stop(service: Service) -> None:
    """SIGTERM the service; it must exit 0 and have said it stopped."""
    assert service.stop(timeout=WAIT) == 0, service.stderr
    assert wait_for(lambda: "stopped (exit code 0)" in service.stderr, WAIT), service.stderr


def new_id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def submit(env: Env, request: SubmitRequest) -> dict[str, Any]:
    """Submit through the session API (what any client may send, bypassing the CLI)."""
    from orcha import settings
    from orcha.client.session import Session

    key = (env.state / "key").read_text().strip()
    session = Session.open(settings.resolve(address=str(env.socket), key=key))
    try:
        set_recv_timeout(session.fileno(), WAIT)
        reply: dict[str, Any] = session.call("submit", request.to_wire())
        return reply
    finally:
        session.close()


def greet_request(params: dict[str, Any], petition_id: str | None = None) -> SubmitRequest:
    return SubmitRequest(
        kind="greet", id=petition_id or new_id("api"), params=params, priority=None,
        cwd="/", env={}, attach=False,
    )  # fmt: skip


# -- discovery -------------------------------------------------------------------------------
def test_ls_lists_path_plugins_with_what_they_provide(penv: Env) -> None:
    out, err = orcha(penv, "ls")
    assert err == ""
    assert (
        "├ orchatest_broken - not loaded\n"
        f"│   error: {BROKEN_ERROR}\n"
        "├ orchatest_conflict - not loaded\n"
        f"│   error: {CONFLICT_ERROR}\n"
        "└ orchatest_full - 1.0.0\n"
        "    commands: orchatest-greet\n"
        "    kinds: greet (served by 'orcha serve')\n"
        "    predicates: orchatest_always\n"
        "\n"
        "Plugins marked with an asterisk (*) are embedded plugins\n"
    ) in out, out
    assert "├ shell* - " in out  # the first-party ones too
    assert "│   kinds: shell (served by 'orcha serve')\n" in out
    assert broken_imports(penv) == 1  # discovery imported it (and it failed)


def test_ls_json_describes_path_plugins(penv: Env) -> None:
    plugins = ls_json(penv)
    assert plugins[FULL] == {
        "name": FULL,
        "version": "1.0.0",
        "display": "orchatest_full - 1.0.0",
        "embedded": False,
        "origin": f"path {PLUGINS}",
        "module": FULL,
        "commands": ["orchatest-greet"],
        "aliases": {},
        "description": "A test plugin with settings, hooks, health, a kind, a command and a "
        "predicate",
        "kinds": [{"name": "greet", "description": GREET_HELP, "schema": GREET_SCHEMA}],
        "predicates": ["orchatest_always"],
        "event_sinks": [],
        "service": "orcha serve",
        "error": None,
    }
    broken = plugins["orchatest_broken"]
    assert (broken["error"], broken["version"], broken["origin"]) == (
        BROKEN_ERROR, None, f"path {PLUGINS}",
    )  # fmt: skip
    assert (broken["commands"], broken["kinds"], broken["predicates"]) == ([], [], [])
    assert plugins["orchatest_conflict"]["error"] == CONFLICT_ERROR
    shell = plugins["shell"]
    assert (shell["error"], shell["embedded"], shell["commands"]) == (None, True, ["run"])
    assert shell["kinds"][0]["name"] == "shell"
    assert shell["kinds"][0]["schema"]["required"] == ["argv"]


def test_orcha_disable_plugins_hides_a_plugin_and_does_not_import_a_broken_one(
    penv: Env,
) -> None:
    off = {"ORCHA_DISABLE_PLUGINS": f"{FULL}, orchatest_broken"}
    plugins = ls_json(penv, off)
    for name in (FULL, "orchatest_broken"):
        assert plugins[name]["error"] == "disabled"
        assert (plugins[name]["commands"], plugins[name]["kinds"]) == ([], [])
    assert broken_imports(penv) == 0  # not even imported
    out, _ = orcha(penv, "ls", extra=off)
    assert "├ orchatest_broken - not loaded\n│   error: disabled\n" in out, out
    assert "└ orchatest_full - not loaded\n    error: disabled\n" in out, out
    assert "is broken on purpose" not in out
    _, err = orcha(penv, "orchatest-greet", "x", "y", code=USAGE, extra=off)
    assert err == (
        "orcha: no command 'orchatest-greet'; disabled plugins may provide it "
        f"({', '.join(sorted([FULL, 'orchatest_broken']))}; see 'orcha ls')\n"
    ), err
    orcha(penv, "describe", "greet", code=UNKNOWN, extra=off)

    penv.vars.update(off)
    service = serve(penv)
    assert "kinds: hello, shell)" in service.banner, service.banner
    out, _ = orcha(penv, "health")
    assert f"plugin {FULL}" not in out, out
    stop(service)
    assert hook_lines(penv) == []  # no hook of a disabled plugin ran
    assert broken_imports(penv) == 0
    assert "orchatest_broken" not in service.stderr, service.stderr


GREET_PLUGIN = """
import click
from orcha.plugins import BasePlugin


@click.command("greet")
@click.argument("name")
def greet(name):
    click.echo(f"hi {name}")


class P(BasePlugin):
    name = "greeter"

    def commands(self):
        return [greet]


plugin = P
"""


MAY_PROVIDE = "disabled plugins may provide it (greeter; see 'orcha ls')"


def test_a_mistyped_command_is_blamed_on_a_disabled_plugin_only_if_it_may_be_its(
    env: Env,
) -> None:
    """A disabled plugin is not imported; the commands it had when last loaded are
    remembered, so an unknown command names it only when it may be one of them."""
    env.add_plugin("greeter", GREET_PLUGIN)
    env.state.mkdir(mode=0o700)  # as a service once made it: the note is kept there
    off = {"ORCHA_DISABLE_PLUGINS": "greeter"}
    # Never loaded yet: what it provides is unknown, so it may provide any command.
    _, err = orcha(env, "nosuchcmd", code=USAGE, extra=off)
    assert err == f"orcha: no command 'nosuchcmd'; {MAY_PROVIDE}\n"
    assert orcha(env, "greet", "World") == ("hi World\n", "")  # loaded: 'greet' is its
    _, err = orcha(env, "greet", "World", code=USAGE, extra=off)
    assert err == f"orcha: no command 'greet'; {MAY_PROVIDE}\n"
    _, err = orcha(env, "gret", "World", code=USAGE, extra=off)
    assert err == (
        "orcha: no command 'gret'; did you mean 'greet'? ('greet': disabled with plugin "
        "greeter; see 'orcha ls')\n"
    )
    _, err = orcha(env, "nosuchcmd", code=USAGE, extra=off)
    assert err == (
        "orcha: no command 'nosuchcmd' (see 'orcha --help' for commands, 'orcha ls' for plugins)\n"
    )
    # A disabled name that no plugin has is no plugin to blame.
    _, err = orcha(env, "nosuchcmd", code=USAGE, extra={"ORCHA_DISABLE_PLUGINS": "nothere"})
    assert "disabled" not in err, err


def test_a_broken_plugin_is_reported_and_everything_else_works(penv: Env) -> None:
    service = serve(penv)
    assert "kinds: greet, hello, shell)" in service.banner, service.banner
    assert wait_for(lambda: "orchatest_conflict not loaded" in service.stderr, WAIT)
    assert f"orcha serve: plugin orchatest_broken not loaded: {BROKEN_ERROR}\n" in service.stderr
    assert f"orcha serve: plugin orchatest_conflict not loaded: {CONFLICT_ERROR}\n" in (
        service.stderr
    )
    assert orcha(penv, "run", new_id("r"), "--", "echo", "still works") == ("still works\n", "")
    out, err = orcha(penv, "orchatest-greet", new_id("g"), "world", "--times", "2")
    assert (out, err) == ("hi, world!\nhi, world!\n", "")
    assert orcha(penv, "send", new_id("s"), "--counter", "1")[0] == "Hello world! 0\n"
    assert orcha(penv, "describe", "shell", "--json")[0].count('"plugin": "shell"') == 1
    stop(service)


# -- describe --------------------------------------------------------------------------------
def test_describe_prints_a_kinds_parameters(penv: Env) -> None:
    out, err = orcha(penv, "describe", "greet")
    assert err == ""
    assert out == (
        f"greet (plugin {FULL}): {GREET_HELP}\n"
        "PARAMETER  TYPE     DEFAULT     CONSTRAINTS  DESCRIPTION\n"
        "name       string   (required)  length >= 1  Who to greet.\n"
        "times      integer  1           >= 1, <= 5   How many times.\n"
        "no other parameters are accepted\n"
    )


def test_describe_json(penv: Env) -> None:
    out, _ = orcha(penv, "describe", "greet", "--json")
    assert json.loads(out) == {
        "kind": "greet", "plugin": FULL, "description": GREET_HELP, "schema": GREET_SCHEMA,
        "template": None,
    }  # fmt: skip


def test_describe_an_unknown_kind(penv: Env) -> None:
    for args in (("describe", "nope"), ("describe", "nope", "--json")):
        out, err = orcha(penv, *args, code=UNKNOWN)
        assert out == ""
        one_error(
            err,
            "no installed plugin provides petition kind 'nope' (installed: greet, hello, "
            "shell); see 'orcha ls'",
        )


# -- kinds' schemas --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("--times", "9"), "params.times: expected a value <= 5, got 9"),
        (("--times", "0"), "params.times: expected a value >= 1, got 0"),
    ],
)
def test_a_plugin_command_refuses_parameters_against_the_schema(
    penv: Env, args: tuple[str, ...], problem: str
) -> None:
    service = serve(penv)
    petition_id = new_id("bad")
    out, err = orcha(penv, "orchatest-greet", petition_id, "world", *args, code=USAGE)
    assert out == ""
    assert (
        f"orcha orchatest-greet: invalid parameters for kind 'greet': {problem}; "
        "see 'orcha describe greet'\n"
    ) == err, err
    # Nothing was sent: the service never heard of it.
    status = json.loads(orcha(penv, "status", "--json", petition_id, code=209)[0])
    assert status == {"petitions": [], "missing": [petition_id], "hidden": 0}
    stop(service)


def test_an_empty_name_is_refused_without_a_service(penv: Env) -> None:
    _, err = orcha(penv, "orchatest-greet", new_id("bad"), "", code=USAGE)
    assert "params.name: expected at least 1 character(s)" in err, err


def test_the_service_checks_parameters_sent_through_the_session_api(penv: Env) -> None:
    service = serve(penv)
    for params, problem in (
        ({"name": "x", "times": "2"}, 'params.times: expected an integer, got "2"'),
        ({"times": 2}, "params.name: is required"),
        ({"name": "x", "loud": True}, "params.loud: unknown setting (known: name, times)"),
    ):
        with pytest.raises(PetitionError) as caught:
            submit(penv, greet_request(params))
        assert caught.value.exit_code == REFUSED
        assert caught.value.message == (
            f"invalid parameters for kind 'greet': {problem}; see 'orcha describe greet'"
        )
    with pytest.raises(PetitionError) as unknown:
        submit(penv, SubmitRequest("nope", new_id("api"), {}, None, "/", {}, attach=False))
    assert unknown.value.exit_code == UNKNOWN
    # A valid petition gets the schema's defaults filled in by the service (times: 1).
    petition_id = new_id("api")
    submit(penv, greet_request({"name": "api"}, petition_id))
    orcha(penv, "wait", petition_id)
    assert orcha(penv, "logs", petition_id)[0] == "hi, api!\n"
    stop(service)


# -- the configuration file ------------------------------------------------------------------
def test_config_path(penv: Env) -> None:
    assert orcha(penv, "config", "path") == (f"{penv.root}/config/orcha/config.yaml\n", "")
    other = penv.root / "elsewhere.yaml"
    assert orcha(penv, "config", "path", extra={"ORCHA_CONFIG": str(other)})[0] == f"{other}\n"
    given = penv.root / "given.yaml"
    out, _ = orcha(penv, "--config", str(given), "config", "path",
                   extra={"ORCHA_CONFIG": str(other)})  # fmt: skip
    assert out == f"{given}\n"


def test_config_show_json_fills_in_every_default(penv: Env) -> None:
    doc = json.loads(orcha(penv, "config", "show", "--json")[0])
    assert (doc["path"], doc["exists"]) == (str(config_file(penv)), False)
    config = doc["config"]
    assert {k: config[k] for k in ("grace", "log_cap", "gpus", "aging", "backfill_bound")} == {
        "grace": 5.0, "log_cap": "64M", "gpus": "auto", "aging": 600.0, "backfill_bound": 300.0,
    }  # fmt: skip
    # The machine's own defaults: the socket in the runtime directory, one slot a core.
    assert config["address"] == str(penv.socket)
    assert config["max_running"] == os.cpu_count()
    plugins = config["plugins"]
    assert plugins[FULL] == {"enabled": True, "config": {"greeting": "hi", "healthy": True}}
    assert plugins["shell"] == {"enabled": True, "config": {}}

    write_config(penv, f"grace: 1\nplugins:\n  {FULL}:\n    config: {{greeting: hello}}\n")
    doc = json.loads(orcha(penv, "config", "show", "--json")[0])
    assert doc["exists"] is True
    assert doc["config"]["grace"] == 1
    assert doc["config"]["aging"] == 600.0
    assert doc["config"]["plugins"][FULL] == {
        "enabled": True, "config": {"greeting": "hello", "healthy": True},
    }  # fmt: skip


def test_config_show_yaml(penv: Env) -> None:
    out, _ = orcha(penv, "config", "show")
    lines = out.splitlines()
    assert lines[0] == f"# {config_file(penv)} (absent: defaults)"
    assert "grace: 5.0" in lines
    assert f"  {FULL}:" in lines and "      greeting: hi" in lines


def test_config_validate_accepts_a_valid_file(penv: Env) -> None:
    one_error(orcha(penv, "config", "validate")[1],
              f"{config_file(penv)}: absent (the defaults apply)")  # fmt: skip
    path = write_config(
        penv, f"max_running: 3\nplugins:\n  {FULL}: {{config: {{healthy: false}}}}\n"
    )
    out, err = orcha(penv, "config", "validate")
    assert out == ""
    one_error(err, f"{path}: valid")


INVALID = [
    ("grace: x\n", 'grace: expected a number, got "x"'),
    (
        f"plugins:\n  {FULL}:\n    config:\n      greeting: 5\n",
        f"plugins.{FULL}.config.greeting: expected a string, got 5",
    ),
    (
        f"plugins:\n  {FULL}:\n    config: {{volume: 11}}\n",
        f"plugins.{FULL}.config.volume: unknown setting (known: greeting, healthy)",
    ),
]


@pytest.mark.parametrize(("text", "message"), INVALID, ids=["grace", "greeting", "extra"])
def test_config_validate_refuses_an_invalid_file(penv: Env, text: str, message: str) -> None:
    path = write_config(penv, text)
    out, err = orcha(penv, "config", "validate", code=USAGE)
    assert out == ""
    assert err.startswith(f"orcha: {path}: {message}") and err.count("\n") == 1, err


def test_config_validate_names_a_plugin_that_is_not_installed(penv: Env) -> None:
    # Not an invalid file (the plugin may have been uninstalled since): a warning that
    # names the installed plugins, as a typo needs.
    path = write_config(penv, "plugins:\n  orchatest_ful: {enabled: false}\n")
    out, err = orcha(penv, "config", "validate")
    assert out == ""
    assert err.startswith(f"orcha: {path}: valid\norcha: plugin orchatest_ful will not load: "
                          "no installed plugin is named 'orchatest_ful'"), err  # fmt: skip
    assert f"{FULL}" in err and "shell" in err  # the installed plugins are named


@pytest.mark.parametrize(("text", "message"), INVALID[:2], ids=["grace", "greeting"])
def test_serve_refuses_to_start_on_an_invalid_file(penv: Env, text: str, message: str) -> None:
    path = write_config(penv, text)
    result = penv.run("serve", timeout=WAIT)
    assert result.returncode == USAGE, (result.stdout, result.stderr)
    assert result.stdout == ""
    one_error(result.stderr, f"{path}: {message}")
    assert not penv.socket.exists()
    assert hook_lines(penv) == []  # no plugin hook ran


def test_plugins_disabled_in_the_file_are_not_loaded(penv: Env) -> None:
    write_config(
        penv, f"plugins:\n  {FULL}: {{enabled: false}}\n  orchatest_broken: {{enabled: false}}\n"
    )
    plugins = ls_json(penv)
    assert plugins[FULL]["error"] == "disabled"
    assert plugins[FULL]["kinds"] == []
    assert plugins["orchatest_broken"]["error"] == "disabled"
    doc = json.loads(orcha(penv, "config", "show", "--json")[0])
    assert doc["config"]["plugins"][FULL]["enabled"] is False
    orcha(penv, "describe", "greet", code=UNKNOWN)
    service = serve(penv)
    assert "kinds: hello, shell)" in service.banner, service.banner
    assert f"plugin {FULL}" not in orcha(penv, "health")[0]
    stop(service)
    assert hook_lines(penv) == []
    assert broken_imports(penv) == 0  # a plugin disabled in the file is not even imported
    assert "orchatest_broken" not in service.stderr, service.stderr


def test_max_running_from_the_file_and_the_command_line_wins(penv: Env) -> None:
    write_config(penv, "max_running: 3\n")
    service = penv.serve()
    assert "up to 3 running" in service.banner, service.banner
    stop(service)
    service = penv.serve("--max-running", "5")
    assert "up to 5 running" in service.banner, service.banner
    stop(service)


# -- health ----------------------------------------------------------------------------------
def test_health_when_healthy(penv: Env) -> None:
    service = serve(penv)
    out, err = orcha(penv, "health")
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "service: healthy; 0 queued, 0 running, 0/2 CPUs in use", out
    assert f"plugin {FULL}: healthy (greeting=hi)" in lines
    assert "plugin shell: healthy" in lines and "plugin hello: healthy" in lines
    assert not any("orchatest_broken" in line or "orchatest_conflict" in line for line in lines)
    stop(service)


def test_health_json(penv: Env) -> None:
    service = serve(penv)
    doc = json.loads(orcha(penv, "health", "--json")[0])
    assert set(doc) >= {
        "healthy", "queued", "running", "cpus_in_use", "capacity", "paused", "plugins",
        "reachable",
    }, doc  # fmt: skip
    assert (doc["healthy"], doc["reachable"], doc["paused"]) == (True, True, False)
    assert (doc["queued"], doc["running"], doc["cpus_in_use"], doc["capacity"]) == (0, 0, 0, 2)
    assert doc["plugins"][FULL] == {"healthy": True, "details": {"greeting": "hi"}}
    assert doc["plugins"]["shell"] == {"healthy": True, "details": {}}
    assert "orchatest_broken" not in doc["plugins"]
    stop(service)


def test_health_when_the_plugins_settings_say_unhealthy(penv: Env) -> None:
    write_config(penv, f"plugins:\n  {FULL}:\n    config: {{healthy: false, greeting: hey}}\n")
    service = serve(penv)
    out, _ = orcha(penv, "health", code=UNHEALTHY)
    lines = out.splitlines()
    assert lines[0].startswith("service: UNHEALTHY; 0 queued"), out
    assert f"plugin {FULL}: UNHEALTHY (greeting=hey)" in lines
    assert "plugin shell: healthy" in lines
    doc = json.loads(orcha(penv, "health", "--json", code=UNHEALTHY)[0])
    assert doc["healthy"] is False
    assert doc["plugins"][FULL] == {"healthy": False, "details": {"greeting": "hey"}}
    stop(service)


def test_health_without_a_service(penv: Env) -> None:
    expected = (
        f"no orcha service is running at {penv.socket} (no socket there); "
        "start one with 'orcha serve'"
    )
    out, err = orcha(penv, "health", code=UNREACHABLE)
    assert out == ""
    one_error(err, expected)
    out, err = orcha(penv, "health", "--json", code=UNREACHABLE)
    assert json.loads(out) == {"reachable": False, "healthy": False, "error": expected}
    one_error(err, expected)


# -- lifecycle -------------------------------------------------------------------------------
def test_hooks_run_before_petitions_and_stop_runs_on_sigterm(penv: Env) -> None:
    write_config(penv, f"plugins:\n  {FULL}:\n    config: {{greeting: hello}}\n")
    service = serve(penv)
    settings = '{"greeting": "hello", "healthy": true}'
    script = 'echo petition >> "$ORCHATEST_HOOK_FILE"'
    assert orcha(penv, "run", new_id("p"), "--", "sh", "-c", script) == ("", "")
    # The kind sees the settings its plugin's load hook received.
    assert orcha(penv, "orchatest-greet", new_id("g"), "you")[0] == "hello, you!\n"
    assert hook_lines(penv) == [f"load {settings}", f"start {FULL} {settings}", "petition"]
    assert service.proc is not None
    stop(service)
    assert hook_lines(penv) == [
        f"load {settings}", f"start {FULL} {settings}", "petition", "stop",
    ]  # fmt: skip
    assert not penv.socket.exists()


def test_hooks_with_default_settings(penv: Env) -> None:
    service = serve(penv)
    assert orcha(penv, "orchatest-greet", new_id("g"), "you")[0] == "hi, you!\n"
    stop(service)
    assert hook_lines(penv) == [
        f"load {DEFAULT_SETTINGS}", f"start {FULL} {DEFAULT_SETTINGS}", "stop",
    ]  # fmt: skip


NEEDY_PLUGIN = """
from orcha.plugins import BasePlugin


class Needy(BasePlugin):
    name = "needy"
    config_schema = {"type": "object", "required": ["token"],
                     "properties": {"token": {"type": "string"}}}

    @staticmethod
    def version():
        return "needy - 1.0"


plugin = Needy
"""


def test_ls_says_the_service_will_not_load_a_plugin_missing_its_settings(
    env: Env, tmp_path: Path
) -> None:
    folder = tmp_path / "needy_plugins"
    folder.mkdir()
    (folder / "needy.py").write_text(NEEDY_PLUGIN)
    env.vars["ORCHA_PLUGIN_PATH"] = str(folder)
    listed = env.run("ls")
    assert listed.returncode == 0, listed.stderr
    assert "    error: the service will not load it: needs settings in " in listed.stdout
    assert "plugins.needy.config.token: is required" in listed.stdout
    assert "needs settings in" in ls_json(env)["needy"]["error"]
    write_config(env, "plugins:\n  needy:\n    config: {token: abc}\n")
    assert "error" not in env.run("ls").stdout
    assert ls_json(env)["needy"]["error"] is None
