"""orcha.config: where the configuration file is, loading and validating it, the Config
accessors, plugins' settings (check_plugins), and how settings.resolve() uses the file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orcha import config, defaults, settings
from orcha.address import Address
from orcha.config import Config, check_plugins, config_path, load
from orcha.errors import ConfigError
from orcha.units import DURATION_FORMS

#: The settings these tests are about (the file has more, e.g. notify and hooks, whose own
#: tests cover them), with their defaults ("address" and "max_running" have none).
KEYS = ("address", "max_running", "grace", "log_cap", "gpus", "aging", "backfill_bound", "plugins")
DEFAULTS = {
    "grace": defaults.DEFAULT_GRACE,
    "log_cap": "64M",
    "gpus": "auto",
    "aging": defaults.DEFAULT_AGING,
    "backfill_bound": defaults.DEFAULT_BACKFILL_BOUND,
    "plugins": {},
}


def ours(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` restricted to :data:`KEYS`."""
    return {k: v for k, v in data.items() if k in KEYS}


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No ORCHA_* variable of the caller; XDG_CONFIG_HOME is a private folder (returned)."""
    for name in list(os.environ):
        if name.startswith("ORCHA_"):
            monkeypatch.delenv(name)
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    monkeypatch.setenv(defaults.ENV_RUNTIME_DIR, str(tmp_path / "run"))
    monkeypatch.setenv(defaults.ENV_STATE_DIR, str(tmp_path / "state"))
    saved = settings._current
    yield xdg
    settings._current = saved


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def load_text(tmp_path: Path, text: str) -> Config:
    return load(write(tmp_path, text))


def error_of(tmp_path: Path, text: str) -> str:
    """The one-line ConfigError message loading ``text`` gives, path prefix removed."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    assert "\n" not in message and caught.value.exit_code == 2
    assert message.startswith(f"{path}: "), message
    return message.removeprefix(f"{path}: ")


# -- where -----------------------------------------------------------------------------------
def test_default_path_is_under_xdg_config_home(private_env: Path) -> None:
    assert config_path() == (str(private_env / "orcha" / "config.yaml"), False)


def test_default_path_without_xdg_is_under_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for xdg in ("", "relative/dir"):  # XDG: a relative path is ignored
        monkeypatch.setenv("XDG_CONFIG_HOME", xdg)
        assert config_path() == (str(tmp_path / ".config" / "orcha" / "config.yaml"), False)


def test_env_var_beats_the_default_and_an_explicit_path_beats_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(config.ENV_CONFIG, str(tmp_path / "env.yaml"))
    assert config_path() == (str(tmp_path / "env.yaml"), True)
    assert config_path(str(tmp_path / "cli.yaml")) == (str(tmp_path / "cli.yaml"), True)


def test_relative_paths_are_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert config_path("x.yaml") == (str(tmp_path / "x.yaml"), True)
    monkeypatch.setenv(config.ENV_CONFIG, "y.yaml")
    assert config_path() == (str(tmp_path / "y.yaml"), True)


def test_an_empty_env_var_means_the_default(
    private_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(config.ENV_CONFIG, "")
    assert config_path() == (str(private_env / "orcha" / "config.yaml"), False)


# -- load ------------------------------------------------------------------------------------
def test_an_absent_default_file_is_the_defaults(private_env: Path) -> None:
    loaded = load()
    assert (loaded.path, loaded.exists) == (str(private_env / "orcha" / "config.yaml"), False)
    assert ours(loaded.data) == DEFAULTS
    assert not loaded.given("grace")


def test_the_default_file_is_read_when_present(private_env: Path) -> None:
    (private_env / "orcha").mkdir(parents=True)
    (private_env / "orcha" / "config.yaml").write_text("grace: 1\n")
    loaded = load()
    assert loaded.exists and loaded.data["grace"] == 1


@pytest.mark.parametrize("how", ["explicit", "env"])
def test_an_absent_named_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    missing = str(tmp_path / "missing.yaml")
    if how == "env":
        monkeypatch.setenv(config.ENV_CONFIG, missing)
    with pytest.raises(ConfigError) as caught:
        load(missing if how == "explicit" else None)
    assert str(caught.value) == (
        f"configuration file {missing} does not exist; create it or fix --config/ORCHA_CONFIG"
    )


def test_an_unreadable_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(str(tmp_path))  # a directory
    assert str(caught.value).startswith(f"cannot read configuration file {tmp_path}: ")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_an_empty_file_is_the_defaults(tmp_path: Path, text: str) -> None:
    loaded = load_text(tmp_path, text)
    assert loaded.exists and ours(loaded.data) == DEFAULTS


def test_a_full_file_is_loaded_as_written(tmp_path: Path) -> None:
    loaded = load_text(
        tmp_path,
        """\
address: /tmp/o.sock
max_running: 3
grace: 0.5
log_cap: 1M
gpus: [0, 1]
aging: 15m
backfill_bound: 30
plugins:
  shell: {enabled: false}
  other:
    config: {x: 1}
""",
    )
    assert ours(loaded.data) == {
        "address": "/tmp/o.sock",
        "max_running": 3,
        "grace": 0.5,
        "log_cap": "1M",
        "gpus": [0, 1],
        "aging": "15m",
        "backfill_bound": 30,
        "plugins": {
            "shell": {"enabled": False, "config": {}},
            "other": {"enabled": True, "config": {"x": 1}},
        },
    }


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    assert error_of(tmp_path, "grace: 1\nplugins: [a\n") == (
        "not valid YAML (line 3, column 1): expected ',' or ']', but got '<stream end>'"
    )
    assert error_of(tmp_path, "a: b: c\n").startswith("not valid YAML (line 1, column 5): ")


def test_a_file_that_is_not_utf8_names_the_byte_and_where(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"max_running: 3\n# \xe9t\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load(str(path))
    assert caught.value.exit_code == 2
    assert str(caught.value) == f"{path}: not UTF-8 (byte 0xe9 at 17); save the file as UTF-8"


@pytest.mark.parametrize("text", ["- grace\n- 1\n", "just text\n", "5\n"])
def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str) -> None:
    assert error_of(tmp_path, text) == "the file must be a mapping of settings, not a list or text"


def test_an_unknown_top_level_key_is_refused_by_name(tmp_path: Path) -> None:
    message = error_of(tmp_path, "grace: 1\nmax_runing: 2\n")
    head, _, known = message.partition(" (known: ")
    assert head == "max_runing: unknown setting; did you mean 'max_running'?", message
    names = known.removesuffix(")").split(", ")
    assert names == sorted(names) and set(KEYS) <= set(names), message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("grace: x", 'grace: expected a number, got "x"'),
        ("grace: -1", "grace: expected a value >= 0, got -1"),
        ("max_running: 0", "max_running: expected a value >= 1, got 0"),
        ("max_running: 2.5", "max_running: expected an integer, got 2.5"),
        ("max_running: true", "max_running: expected an integer, got true"),
        ("address: 5", "address: expected a string, got 5"),
        ("aging: [1]", "aging: expected a string or a number, got [1]"),
        ("aging: .inf", "aging: expected a string or a number, got Infinity"),
        ("aging: ten", f"aging: 'ten' is not a duration (accepted: {DURATION_FORMS})"),
        ("backfill_bound: 5 minutes", "backfill_bound: '5 minutes' is not a duration "
                                      f"(accepted: {DURATION_FORMS})"),
        ("log_cap: 1.5", "log_cap: expected a string or an integer, got 1.5"),
        ("log_cap: 12Q", "log_cap: '12Q' is not a size (e.g. 4096, 512K, 64M, 1G)"),
        ("log_cap: -1", "log_cap: expected a size >= 0, got -1"),
        ("gpus: true", "gpus: expected a string or a list, got true"),
        ("gpus: [0, 1.5]", "gpus[1]: expected a string or an integer, got 1.5"),
        ("gpus: [0, 0]", "gpus: GPU 0 is listed twice in '0,0'"),
        ("gpus: '0;1'", "gpus: '0;1' is not a GPU list (e.g. 0,1,2; 'auto'; 'none')"),
        ("plugins: [shell]", "plugins: expected a mapping, got [\"shell\"]"),
        ("plugins: {shell: x}", 'plugins.shell: expected a mapping, got "x"'),
        ("plugins: {shell: {enabled: 'no'}}", 'plugins.shell.enabled: expected true or false, '
                                              'got "no"'),
        ("plugins: {shell: {settings: {}}}", "plugins.shell.settings: unknown setting "
                                             "(known: config, enabled)"),
        ("plugins: {shell: {config: [1]}}", "plugins.shell.config: expected a mapping, got [1]"),
        ("1: x", "keys must be strings, got 1"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    assert error_of(tmp_path, text + "\n") == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("executor: {kind: dask}", "executor: with kind 'dask' give one of scheduler or "
                                   "scheduler_file"),
        ("executor: {kind: dask, scheduler: 'tcp://h:1', scheduler_file: s.json}",
         "executor: with kind 'dask' give one of scheduler or scheduler_file"),
        ("executor: {kind: local, scheduler: 'tcp://h:1'}",
         "executor: a scheduler is given but kind is not 'dask'"),
        ("executor: {scheduler_file: s.json}",
         "executor: a scheduler is given but kind is not 'dask'"),
        ("executor: {kind: dask, scheduler: 'http://h:1'}",
         "executor.scheduler: 'http://h:1' is not a Dask scheduler address; give "
         "tcp://HOST:PORT (or tls://HOST:PORT)"),
    ],
)  # fmt: skip
def test_an_executor_serve_would_refuse_is_refused_when_the_file_is_loaded(
    tmp_path: Path, text: str, message: str
) -> None:
    # 'orcha config validate' passed these, then 'orcha serve' refused to start.
    assert error_of(tmp_path, text + "\n") == message
    load_text(tmp_path, "executor: {kind: dask, scheduler: 'h:8786', local: true}\n")


def test_an_invalid_address_is_refused_when_the_file_is_loaded(tmp_path: Path) -> None:
    assert error_of(tmp_path, "address: 'host:notaport'\n").startswith("address: ")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("1.5", 1.5), ("'90s'", 90.0), ("15m", 900.0), ("2h", 7200.0), ("0", 0.0),
     # Slurm's forms: YAML reads 1:30:00 as a base-60 number (5400), the same seconds
     ("1h30m", 5400.0), ("1:30:00", 5400.0), ("'1:30:00'", 5400.0), ("'30:00'", 1800.0),
     ("2-00:00:00", 172800.0), ("2-12", 216000.0)],
)  # fmt: skip
def test_durations_as_strings_or_numbers(tmp_path: Path, text: str, seconds: float) -> None:
    loaded = load_text(tmp_path, f"aging: {text}\nbackfill_bound: {text}\n")
    assert loaded.seconds("aging") == seconds
    assert loaded.seconds("backfill_bound") == seconds


@pytest.mark.parametrize("key", ["aging", "backfill_bound"])
def test_negative_durations_are_refused(tmp_path: Path, key: str) -> None:
    assert error_of(tmp_path, f"{key}: -5\n").startswith(f"{key}: ")


def test_a_huge_number_is_a_config_error(tmp_path: Path) -> None:
    error_of(tmp_path, "grace: 1" + "0" * 400 + "\n")


@pytest.mark.parametrize(
    ("text", "size"), [("4096", 4096), ("'512K'", 512 << 10), ("64M", 64 << 20), ("1GiB", 1 << 30)]
)
def test_sizes_as_strings_or_integers(tmp_path: Path, text: str, size: int) -> None:
    assert load_text(tmp_path, f"log_cap: {text}\n").size("log_cap") == size


@pytest.mark.parametrize(
    ("text", "gpus"),
    [
        ("auto", None),
        ("none", ()),
        ("''", ()),
        ("'0,2'", ("0", "2")),
        ("[0, 2]", ("0", "2")),
        ("[GPU-1a, 3]", ("GPU-1a", "3")),
        ("[]", ()),
    ],
)
def test_gpus_as_a_string_or_a_list(tmp_path: Path, text: str, gpus: Any) -> None:
    assert load_text(tmp_path, f"gpus: {text}\n").gpus() == gpus


def test_given_tells_the_file_from_the_defaults(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, "grace: 5\n")
    assert loaded.given("grace")
    assert not loaded.given("aging")
    assert loaded.data["aging"] == defaults.DEFAULT_AGING


def test_accessors_on_the_defaults() -> None:
    loaded = load()
    assert loaded.seconds("aging") == defaults.DEFAULT_AGING
    assert loaded.seconds("backfill_bound") == defaults.DEFAULT_BACKFILL_BOUND
    assert loaded.size("log_cap") == defaults.DEFAULT_LOG_CAP
    assert loaded.gpus() is None


def test_plugin_enabled_and_settings(tmp_path: Path) -> None:
    loaded = load_text(
        tmp_path,
        "plugins:\n  a: {enabled: false, config: {x: 1}}\n  b: {config: {y: [1]}}\n",
    )
    assert not loaded.plugin_enabled("a")
    assert loaded.plugin_enabled("b")
    assert loaded.plugin_enabled("not-mentioned")
    assert loaded.plugin_settings("a") == {"x": 1}
    assert loaded.plugin_settings("b") == {"y": [1]}
    assert loaded.plugin_settings("not-mentioned") == {}
    loaded.plugin_settings("b")["y"] = 2  # a copy
    assert loaded.plugin_settings("b") == {"y": [1]}


# -- check_plugins ---------------------------------------------------------------------------
class Plain:
    """A plugin without settings."""

    config_schema = None


class Configurable:
    config_schema = {
        "type": "object",
        "properties": {
            "grace": {"type": "number", "default": 5},
            "mode": {"enum": ["a", "b"], "default": "a"},
        },
        "additionalProperties": False,
    }


class NeedsToken:
    config_schema = {
        "type": "object",
        "properties": {"token": {"type": "string"}},
        "required": ["token"],
    }


PLUGINS: dict[str, Any] = {"plain": Plain(), "shell": Configurable(), "tok": NeedsToken()}


def test_settings_of_every_plugin_with_defaults(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, "plugins:\n  shell:\n    config: {mode: b}\n")
    settings_, unconfigured = check_plugins(loaded, PLUGINS)
    assert settings_ == {"plain": {}, "shell": {"grace": 5, "mode": "b"}}
    assert list(unconfigured) == ["tok"]
    assert unconfigured["tok"] == (
        f"needs settings in {loaded.path}: plugins.tok.config.token: is required"
    )


def test_no_file_gives_every_plugin_its_defaults() -> None:
    settings_, unconfigured = check_plugins(load(), {"plain": Plain(), "shell": Configurable()})
    assert settings_ == {"plain": {}, "shell": {"grace": 5, "mode": "a"}}
    assert unconfigured == {}


def test_a_plugin_without_schema_given_settings_is_refused(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, "plugins: {plain: {config: {x: 1}}}\n")
    with pytest.raises(ConfigError) as caught:
        check_plugins(loaded, PLUGINS)
    assert (
        str(caught.value) == f"{loaded.path}: plugins.plain.config: plugin plain takes no settings"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("shell: {config: {grace: x}}", 'plugins.shell.config.grace: expected a number, got "x"'),
        ("shell: {config: {mode: c}}", 'plugins.shell.config.mode: expected one of "a", "b", '
                                       'got "c"'),
        ("shell: {config: {gr: 1}}", "plugins.shell.config.gr: unknown setting (known: grace, "
                                     "mode)"),
        ("tok: {config: {}}", "plugins.tok.config.token: is required"),
        ("tok: {enabled: true}", "plugins.tok.config.token: is required"),
    ],
)  # fmt: skip
def test_invalid_plugin_settings_name_the_key_path(tmp_path: Path, text: str, message: str) -> None:
    loaded = load_text(tmp_path, f"plugins:\n  {text}\n")
    with pytest.raises(ConfigError) as caught:
        check_plugins(loaded, PLUGINS)
    assert str(caught.value) == f"{loaded.path}: {message}"
    assert caught.value.exit_code == 2


def test_a_configured_plugin_that_needed_settings_is_loaded(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, "plugins: {tok: {config: {token: s3cret}}}\n")
    settings_, unconfigured = check_plugins(loaded, PLUGINS)
    assert settings_["tok"] == {"token": "s3cret"}
    assert unconfigured == {}


@pytest.mark.parametrize("given", ["{enabled: false}", "{config: {x: 1}}", "{}"])
def test_a_plugin_not_installed_is_left_out_naming_the_installed_ones(
    tmp_path: Path, given: str
) -> None:
    # It was refused: a file valid yesterday stopped 'orcha serve' once the plugin was
    # uninstalled, even where the file only disabled it.
    loaded = load_text(tmp_path, f"plugins: {{shel: {given}}}\n")
    settings_, left_out = check_plugins(loaded, PLUGINS)
    assert left_out["shel"] == (
        "no installed plugin is named 'shel' (installed: plain, shell, tok); "
        f"its settings in {loaded.path} are ignored"
    )
    assert "shel" not in settings_
    assert "(installed: none)" in check_plugins(loaded, {})[1]["shel"]


def test_plugins_that_are_not_loaded_are_skipped(tmp_path: Path) -> None:
    """None: disabled or broken; their settings (even invalid ones) are not checked."""
    loaded = load_text(
        tmp_path,
        "plugins:\n  shell: {enabled: false, config: {grace: x}}\n  plain: {config: {x: 1}}\n",
    )
    settings_, unconfigured = check_plugins(loaded, {"shell": None, "plain": None, "tok": None})
    assert (settings_, unconfigured) == ({}, {})


# -- settings.resolve(config=...) ------------------------------------------------------------
def test_resolve_takes_the_file_between_env_and_defaults(tmp_path: Path) -> None:
    loaded = load_text(
        tmp_path,
        f"address: {tmp_path}/file.sock\nmax_running: 3\ngrace: 1.5\nlog_cap: 1M\n"
        "gpus: '0,1'\naging: 2m\nbackfill_bound: 10\n",
    )
    s = settings.resolve(config=loaded)
    assert s.address == Address(path=f"{tmp_path}/file.sock")
    assert (s.max_running, s.grace, s.log_cap, s.gpus) == (3, 1.5, 1 << 20, ("0", "1"))
    assert (s.aging, s.backfill_bound) == (120.0, 10.0)


def test_resolve_address_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_text(tmp_path, f"address: {tmp_path}/file.sock\n")
    assert settings.resolve(config=loaded).address == Address(path=f"{tmp_path}/file.sock")
    monkeypatch.setenv(defaults.ENV_ADDRESS, f"{tmp_path}/env.sock")
    assert settings.resolve(config=loaded).address == Address(path=f"{tmp_path}/env.sock")
    explicit = settings.resolve(address=f"{tmp_path}/cli.sock", config=loaded)
    assert explicit.address == Address(path=f"{tmp_path}/cli.sock")
    monkeypatch.delenv(defaults.ENV_ADDRESS)
    default = settings.resolve(config=load())
    assert default.address == Address(path=str(tmp_path / "run" / defaults.SOCKET_NAME))


def test_resolve_explicit_values_beat_the_file(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, "max_running: 3\ngrace: 1.5\nlog_cap: 1M\ngpus: none\naging: 2m\n")
    s = settings.resolve(
        config=loaded, max_running=7, grace=0.0, log_cap=10, gpus=("3",), aging=0.0,
        backfill_bound=1.0,
    )  # fmt: skip
    assert (s.max_running, s.grace, s.log_cap, s.gpus, s.aging) == (7, 0.0, 10, ("3",), 0.0)
    assert s.backfill_bound == 1.0


def test_resolve_without_the_setting_in_the_file_uses_orchas_defaults(tmp_path: Path) -> None:
    s = settings.resolve(config=load_text(tmp_path, "aging: 1m\n"))
    assert s.aging == 60.0
    assert (s.max_running, s.grace, s.log_cap, s.gpus) == (
        None, defaults.DEFAULT_GRACE, defaults.DEFAULT_LOG_CAP, None,
    )  # fmt: skip
    assert s.backfill_bound == defaults.DEFAULT_BACKFILL_BOUND


def test_resolve_reads_the_file_orcha_config_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(config.ENV_CONFIG, write(tmp_path, "max_running: 4\n"))
    assert settings.resolve().max_running == 4
    monkeypatch.setenv(config.ENV_CONFIG, write(tmp_path, "grace: x\n", "bad.yaml"))
    with pytest.raises(ConfigError, match=r'bad\.yaml: grace: expected a number, got "x"$'):
        settings.resolve()


def test_resolve_without_a_file_uses_defaults(private_env: Path) -> None:
    s = settings.resolve()
    assert (s.max_running, s.grace) == (None, defaults.DEFAULT_GRACE)
    assert not (private_env / "orcha").exists()


# -- groups and webhook secrets (issue 13, points 11 and 21) ---------------------------------
def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_group_limits_are_read_and_checked(tmp_path: Path) -> None:
    loaded = load(str(config_file(tmp_path, "groups:\n  render: {max_running: 2}\n  a.b-c_d: "
                                      "{max_running: 1}\n")))  # fmt: skip
    assert loaded.group_limits() == {"render": 2, "a.b-c_d": 1}
    with pytest.raises(ConfigError, match=r"groups\.no/slash: a group name is 1-64"):
        load(str(config_file(tmp_path, "groups:\n  no/slash: {max_running: 1}\n")))
    with pytest.raises(ConfigError, match=r"groups\.render"):
        load(str(config_file(tmp_path, "groups:\n  render: {max_running: 0}\n")))


def test_webhook_secrets_literal_from_a_file_and_per_webhook(tmp_path: Path) -> None:
    secret = tmp_path / "s"
    secret.write_text("from-file\n")
    secret.chmod(0o600)
    loaded = load(str(config_file(tmp_path, "notify_secret_file: s\nnotify:\n  - http://h/a\n"
                                      "  - {url: 'http://h/b', secret: own}\n")))  # fmt: skip
    assert loaded.notify_secret() == b"from-file"  # relative to the file's folder
    assert [w["secret"] for w in loaded.webhooks()] == [b"from-file", b"own"]
    assert load(str(config_file(tmp_path, "notify_secret: lit\n"))).notify_secret() == b"lit"
    assert load(str(config_file(tmp_path, "{}\n"))).notify_secret() is None


@pytest.mark.parametrize(("text", "mode", "message"), [
    ("notify_secret: a\nnotify_secret_file: s\n", 0o600, "are both given; keep one"),
    ("notify_secret_file: s\n", 0o644, r"may be read or written by others \(mode 0644\); "
                                        r"run 'chmod 600 .*/s'"),
    ("notify_secret_file: missing\n", 0o600, "cannot read .*missing"),
    ("notify:\n  - {url: 'http://h/', secret_file: s}\n", 0o640, r"notify\[0\]\.secret_file"),
])  # fmt: skip
def test_a_secret_file_is_checked_like_the_key(
    tmp_path: Path, text: str, mode: int, message: str
) -> None:
    secret = tmp_path / "s"
    secret.write_text("x\n")
    secret.chmod(mode)
    with pytest.raises(ConfigError, match=message):
        load(str(config_file(tmp_path, text)))


def test_config_show_never_shows_a_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from orcha.cli.app import run

    text = "notify_secret: hush-1\nnotify: [{url: 'http://h/', secret: hush-2}]\n"
    path = config_file(tmp_path, text)
    assert run(["config", "show", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "hush" not in out and out.count("(secret: not shown)") == 2


def _show(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[dict[str, Any], str]:
    """``orcha [args] config show``: its --json document and its YAML text."""
    import json

    from orcha.cli.app import run

    assert run([*args, "config", "show", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert run([*args, "config", "show"]) == 0
    return doc, capsys.readouterr().out


def test_config_show_applies_the_address_and_dask_that_beat_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_file(tmp_path, f"address: {tmp_path}/file.sock\n")
    monkeypatch.setenv("ORCHA_CONFIG", str(path))
    doc, text = _show(capsys)  # the file's, nothing beats it
    assert doc["config"]["address"] == f"{tmp_path}/file.sock" and doc["overridden"] == {}
    assert f"address: {tmp_path}/file.sock\n" in text

    monkeypatch.setenv("ORCHA_ADDRESS", f"{tmp_path}/env.sock")
    monkeypatch.setenv("ORCHA_DASK", "tcp://127.0.0.1:1")
    doc, text = _show(capsys)
    assert doc["config"]["address"] == f"{tmp_path}/env.sock"
    assert doc["config"]["executor"] == {
        "kind": "dask", "scheduler": "tcp://127.0.0.1:1", "local": False,
    }  # fmt: skip
    assert doc["overridden"] == {"address": "ORCHA_ADDRESS", "executor": "ORCHA_DASK"}
    assert f"address: {tmp_path}/env.sock  # from ORCHA_ADDRESS\n" in text
    assert "executor:  # from ORCHA_DASK\n  kind: dask\n" in text

    doc, text = _show(capsys, "--address", f"{tmp_path}/opt.sock")  # the option beats both
    assert doc["config"]["address"] == f"{tmp_path}/opt.sock"
    assert doc["overridden"]["address"] == "--address"
    assert f"address: {tmp_path}/opt.sock  # from --address\n" in text


def test_config_validate_warns_of_a_secret_others_may_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from orcha.cli.app import run

    path = config_file(tmp_path, "notify_secret: hush\n")
    path.chmod(0o644)
    monkeypatch.setenv("ORCHA_CONFIG", str(path))
    assert run(["config", "validate"]) == 0  # valid: a warning, as 'orcha serve' gives
    assert capsys.readouterr().err == (
        f"orcha: {path}: valid\n"
        f"orcha: warning: {path} holds a webhook secret and others may read it (mode 0644): "
        f"run 'chmod 600 {path}', or keep the secret in notify_secret_file\n"
    )
    assert run(["config", "validate", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is True and len(doc["warnings"]) == 1
    path.chmod(0o600)
    assert run(["config", "validate", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []
