"""The configuration file: one YAML file of global settings and per-plugin settings.

Where: ``--config PATH``, else ``ORCHA_CONFIG``, else ``config.yaml`` in the user's
config directory (platformdirs). A missing default file is an empty configuration; a
missing file that was named explicitly is an error.

What (every key optional; :data:`SCHEMA` is the reference, ``orcha config show`` prints
it filled in)::

    address: /run/orcha/orcha.sock      # or HOST:PORT
    max_running: 8                      # CPU slots
    grace: 5                            # seconds between SIGTERM and SIGKILL
    log_cap: 64M                        # output kept per petition
    gpus: "0,1"                         # or [0, 1], "none", "auto"
    aging: 10m                          # one priority step per 10 minutes of waiting
    backfill_bound: 5m
    groups:
      render: {max_running: 2}          # as 'orcha group set render --max-running 2'
    notify: [https://example.org/hook]  # webhooks for every petition
    notify_secret_file: secret          # signs their bodies (or notify_secret: TEXT)
    hooks: {on_finish: "notify-send {id} {state}"}
    isolation: auto                     # cgroup | none: see docs/reliability.rst
    ordered_output: false               # true: every petition as with --ordered
    executor: {kind: dask, scheduler: "tcp://HOST:8786"}   # docs/dask.rst
    plugins:
      shell:
        enabled: true
        config: {...}                   # checked against the plugin's config_schema

Precedence: command-line options, then environment variables, then this file, then
orcha's defaults. The file is validated once, when it is loaded: errors name the key path
(``plugins.greet.config.limit: expected an integer, got "x"``), and ``orcha serve``
refuses to start on an invalid file. A running service reads it again on SIGHUP
(``orcha config reload``; :mod:`orcha.service.reload` says what a reload changes).
"""

from __future__ import annotations

import os

from orcha import defaults
from orcha.errors import ConfigError

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import Any

ENV_CONFIG = "ORCHA_CONFIG"
CONFIG_FILE_NAME = "config.yaml"

_DURATION = {"type": ["string", "number"], "description": "seconds, or e.g. 90s, 15m, 2h"}

#: The schema of the file (plugins' own settings are checked against theirs).
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "address": {"type": "string", "description": "socket path or HOST:PORT"},
        "max_running": {"type": "integer", "minimum": 1,
                        "description": "CPU slots (default: the number of cores)"},
        "grace": {"type": "number", "minimum": 0, "default": defaults.DEFAULT_GRACE,
                  "description": "seconds between SIGTERM and SIGKILL"},
        "log_cap": {"type": ["string", "integer"], "default": "64M",
                    "description": "output kept per petition, e.g. 512K, 64M"},
        "gpus": {"type": ["string", "array"], "default": "auto",
                 "items": {"type": ["string", "integer"]},
                 "description": "GPU indices, 'none' or 'auto' (nvidia-smi)"},
        "aging": {**_DURATION, "default": defaults.DEFAULT_AGING},
        "backfill_bound": {**_DURATION, "default": defaults.DEFAULT_BACKFILL_BOUND},
        "ordered_output": {"type": "boolean", "default": False,
                           "description": "capture every petition as --ordered does"},
        "isolation": {"type": "string", "enum": list(defaults.ISOLATIONS),
                      "default": defaults.DEFAULT_ISOLATION,
                      "description": "how each petition's processes are kept together: "
                      "a cgroup v2 each ('cgroup'), tracking ('none'), or 'auto'"},
        "executor": {
            "type": "object", "default": {"kind": "local"}, "additionalProperties": False,
            "description": "where petitions run: this host ('local'), or the workers of a "
            "Dask cluster ('dask', docs/dask.rst)",
            "properties": {
                "kind": {"type": "string", "enum": ["local", "dask"], "default": "local"},
                "scheduler": {"type": "string", "minLength": 1,
                              "description": "the Dask scheduler's address, tcp://HOST:PORT"},
                "scheduler_file": {"type": "string", "minLength": 1,
                                   "description": "a Dask scheduler file (instead)"},
                "local": {"type": "boolean", "default": False,
                          "description": "with Dask: this host runs petitions too"},
            },
        },
        "notify": {
            "type": "array", "default": [],
            "description": "webhooks for every petition: a URL, or {url, events}",
            "items": {
                "type": ["string", "object"],
                "properties": {"url": {"type": "string"},
                               "events": {"type": "array", "items": {"type": "string"},
                                          "minItems": 1},
                               "secret": {"type": "string", "minLength": 1,
                                          "description": "signs this webhook's bodies"},
                               "secret_file": {"type": "string", "minLength": 1,
                                               "description": "a file holding the secret"}},
                "required": ["url"], "additionalProperties": False,
            },
        },
        "notify_secret": {"type": "string", "minLength": 1,
                          "description": "signs every webhook body (HMAC-SHA256, header "
                          "X-Orcha-Signature-256); never logged or shown"},
        "notify_secret_file": {"type": "string", "minLength": 1,
                               "description": "a file (mode 0600) holding notify_secret"},
        "groups": {
            "type": "object", "default": {},
            "description": "group limits, e.g. render: {max_running: 2}",
            "additionalProperties": {
                "type": "object", "required": ["max_running"], "additionalProperties": False,
                "properties": {"max_running": {"type": "integer", "minimum": 1}},
            },
        },
        "hooks": {
            "type": "object", "default": {}, "additionalProperties": False,
            "properties": {"on_finish": {
                "type": "string",
                "description": "a command run after each petition ends, e.g. "
                "notify-send {id} {state}",
            }},
        },
        "plugins": {
            "type": "object",
            "default": {},
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "enabled": {"type": "boolean", "default": True},
                    "config": {"type": "object", "default": {}},
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}  # fmt: skip


class Config:
    """A loaded, validated configuration file."""

    def __init__(
        self, path: str, exists: bool, data: dict[str, Any], raw: dict[str, Any] | None = None
    ) -> None:
        self.path = path
        self.exists = exists
        self.data = data  # validated, defaults filled in (plugin settings not yet)
        self._raw = raw or {}  # as written

    def plugin_enabled(self, name: str) -> bool:
        return bool(self.data["plugins"].get(name, {}).get("enabled", True))

    def plugin_settings(self, name: str) -> dict[str, Any]:
        return dict(self.data["plugins"].get(name, {}).get("config", {}))

    # Settings in the units Settings takes.
    def seconds(self, key: str) -> float:
        from orcha.units import parse_duration

        return float(self._amount(key, parse_duration, "duration"))

    def size(self, key: str) -> int:
        from orcha.units import parse_size

        return int(self._amount(key, parse_size, "size"))

    def _amount(self, key: str, parse: Any, what: str) -> float:
        """A setting written as text (``10m``, ``64M``) or a number, at least 0."""
        value = self.data[key]
        if isinstance(value, str):
            try:
                return float(parse(value))
            except ValueError as e:
                raise ConfigError(f"{self.path}: {key}: {e}") from None
        if value < 0:
            raise ConfigError(f"{self.path}: {key}: expected a {what} >= 0, got {value}")
        return float(value)

    def gpus(self) -> tuple[str, ...] | None:
        from orcha.units import parse_gpus

        value = self.data["gpus"]
        text = value if isinstance(value, str) else ",".join(str(v) for v in value)
        try:
            return parse_gpus(text)
        except ValueError as e:
            raise ConfigError(f"{self.path}: gpus: {e}") from None

    def webhooks(self) -> list[dict[str, Any]]:
        """``notify:`` as [{"url", "events"}] (the default events when none are named)."""
        from orcha.defaults import DEFAULT_EVENTS, STREAM_EVENTS
        from orcha.units import check_url

        out = []
        for i, item in enumerate(self.data["notify"]):
            for name in [] if isinstance(item, str) else item.get("events", []):
                if name not in DEFAULT_EVENTS | STREAM_EVENTS and "." not in name:
                    known = ", ".join(sorted(DEFAULT_EVENTS | STREAM_EVENTS))
                    raise ConfigError(
                        f"{self.path}: notify[{i}].events: no event is named {name!r} "
                        f"(events: {known}, or KIND.NAME for a kind's own)"
                    )
            url, events = (
                (item, None) if isinstance(item, str) else (item["url"], item.get("events"))
            )
            try:
                check_url(url)
            except ValueError as e:
                raise ConfigError(f"{self.path}: notify[{i}]: {e}") from None
            secret = self.notify_secret()
            if isinstance(item, dict):
                secret = self._secret(item, "secret", f"notify[{i}].") or secret
            out.append({"url": url, "events": frozenset(events or DEFAULT_EVENTS),
                        "secret": secret})  # fmt: skip
        return out

    def notify_secret(self) -> bytes | None:
        """The secret that signs webhook bodies (``notify_secret`` or the file
        ``notify_secret_file`` names), or None. ConfigError if both are given, or the file
        cannot be read or others may read it."""
        return self._secret(self.data, "notify_secret", "")

    def _secret(self, where: dict[str, Any], key: str, path: str) -> bytes | None:
        literal, file = where.get(key), where.get(f"{key}_file")
        if literal is not None and file is not None:
            raise ConfigError(
                f"{self.path}: {path}{key} and {path}{key}_file are both given; keep one"
            )
        if literal is not None:
            return str(literal).encode()
        if file is None:
            return None
        return read_secret_file(
            os.path.join(os.path.dirname(self.path), os.path.expanduser(file)),
            f"{self.path}: {path}{key}_file",
        )

    def check_secret_files(self) -> None:
        """Read the secret files the configuration names: ConfigError if one is unusable."""
        self.notify_secret()
        for i, item in enumerate(self.data["notify"]):
            if isinstance(item, dict):
                self._secret(item, "secret", f"notify[{i}].")

    def group_limits(self) -> dict[str, int]:
        """``groups:`` as {name: max_running}. ConfigError for an invalid group name."""
        out = {}
        for name, group in self.data["groups"].items():
            # The rule of orcha.protocol.schedule.check_group (not imported: a layer above).
            if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
                raise ConfigError(
                    f"{self.path}: groups.{name}: a group name is 1-64 letters, digits, "
                    "'-', '_' or '.'"
                )
            out[name] = int(group["max_running"])
        return out

    def on_finish(self) -> str | None:
        from orcha.units import check_hook_template

        template = self.data["hooks"].get("on_finish")
        if template is not None:
            try:
                check_hook_template(template)
            except ValueError as e:
                raise ConfigError(f"{self.path}: hooks.on_finish: {e}") from None
        return template

    def given(self, key: str) -> bool:
        """Whether the file sets ``key`` (rather than its default being filled in)."""
        return key in self._raw


def read_secret_file(path: str, what: str) -> bytes:
    """The secret in the file at ``path`` (surrounding whitespace stripped). ConfigError,
    naming ``what`` and saying how to fix it, if it cannot be read, is empty, belongs to
    another user, or others or its group may read or write it (as the key file)."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            secret = f.read().strip()
    except OSError as e:
        raise ConfigError(f"{what}: cannot read {path}: {e.strerror}") from None
    if st.st_uid != os.geteuid():
        raise ConfigError(f"{what}: {path} belongs to another user (uid {st.st_uid})")
    mode = st.st_mode & 0o777
    if mode & 0o066:
        raise ConfigError(
            f"{what}: {path} may be read or written by others (mode {mode:04o}); "
            f"run 'chmod 600 {path}'"
        )
    if not secret:
        raise ConfigError(f"{what}: {path} is empty")
    return secret


def default_path() -> str:
    """``config.yaml`` in the user's config directory (platformdirs'; on Linux that is
    ``$XDG_CONFIG_HOME/orcha`` or ``~/.config/orcha``, worked out here without importing
    platformdirs, because every client asks)."""
    import sys

    if sys.platform.startswith("linux"):
        base = os.environ.get("XDG_CONFIG_HOME", "").strip()
        if not os.path.isabs(base):
            base = os.path.join(os.path.expanduser("~"), ".config")
        return os.path.join(base, defaults.APP_NAME, CONFIG_FILE_NAME)
    import warnings

    import platformdirs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return os.path.join(platformdirs.user_config_dir(defaults.APP_NAME), CONFIG_FILE_NAME)


def config_path(explicit: str | None = None) -> tuple[str, bool]:
    """(path, whether the user named it) by the precedence in the module docstring."""
    if explicit:
        return os.path.abspath(explicit), True
    env = os.environ.get(ENV_CONFIG)
    if env:
        return os.path.abspath(env), True
    return default_path(), False


def load(explicit: str | None = None) -> Config:
    """Read and validate the configuration file. ConfigError (one line, with the path
    and the key path or YAML line) if it cannot be read or is invalid."""
    from orcha import config_note

    path, named = config_path(explicit)
    note_key = config_note.key(path)  # before reading: an edit meanwhile changes it
    noted = config_note.read(note_key)
    if noted is not None:
        config = Config(path, True, *noted)
        config.check_secret_files()  # what lies outside the file may have changed
        return config
    from orcha.schema import SchemaError, validate

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if named:
            raise ConfigError(
                f"configuration file {path} does not exist; create it or fix --config/{ENV_CONFIG}"
            ) from None
        return Config(path, False, validate(SCHEMA, {}))
    except OSError as e:
        raise ConfigError(f"cannot read configuration file {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        # YAML files are UTF-8; a Latin-1 editor's accent is the usual cause.
        raise ConfigError(
            f"{path}: not UTF-8 (byte 0x{e.object[e.start]:02x} at {e.start}); "
            "save the file as UTF-8"
        ) from None
    raw = _parse_yaml(path, text)
    try:
        data = validate(SCHEMA, raw)
    except SchemaError as e:
        raise ConfigError(f"{path}: {e}") from None
    config = Config(path, True, data, raw)
    # Values whose syntax the schema cannot express are checked now, not when used.
    config.seconds("aging"), config.seconds("backfill_bound"), config.size("log_cap")
    config.gpus(), config.webhooks(), config.on_finish(), config.group_limits()
    config.notify_secret()
    executor_settings(data["executor"], path)
    if "address" in data:
        from orcha.address import parse_address

        try:
            parse_address(data["address"])
        except (ValueError, ConfigError) as e:
            raise ConfigError(f"{path}: address: {e}") from None
    config_note.write(note_key, data, raw)
    return config


def executor_settings(executor: dict[str, Any], path: str) -> dict[str, Any]:
    """The file's ``executor:`` (at ``path``), its parts checked together: a Dask one names
    one scheduler (its address, ``tcp://`` added where it has no scheme, or its file), a
    local one none. ConfigError otherwise: loading the file, 'orcha config validate' and
    'orcha serve' refuse the same files."""
    from orcha.address import check_dask_address

    given = bool(executor.get("scheduler")), bool(executor.get("scheduler_file"))
    if executor.get("kind", "local") != "dask":
        if any(given):
            raise ConfigError(f"{path}: executor: a scheduler is given but kind is not 'dask'")
        return executor
    if given[0] == given[1]:
        raise ConfigError(
            f"{path}: executor: with kind 'dask' give one of scheduler or scheduler_file"
        )
    if given[0]:
        address = check_dask_address(executor["scheduler"], f"{path}: executor.scheduler")
        return {**executor, "scheduler": address}
    return executor


def _parse_yaml(path: str, text: str) -> dict[str, Any]:
    import yaml

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the file must be a mapping of settings, not a list or text")
    return raw


def check_plugins(
    config: Config, plugins: dict[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Each plugin's settings validated against its ``config_schema`` (defaults filled
    in), by plugin name; and the plugins that cannot load for want of settings the file
    does not give (name -> why).

    ``plugins`` maps installed plugin names to plugin objects (None for one that is not
    loaded: disabled or broken; its settings are not checked). ConfigError naming the
    key path if the file's settings for a plugin are invalid. A plugin the file names
    that is not installed (uninstalled since, say, or disabled before it went) is left
    out too, not refused: the service starts without it, as with a plugin lacking
    settings.
    """
    from orcha.schema import SchemaError, validate

    settings: dict[str, dict[str, Any]] = {}
    unconfigured: dict[str, str] = {}
    for name in config.data["plugins"]:
        if name not in plugins:
            known = ", ".join(sorted(plugins)) or "none"
            unconfigured[name] = (
                f"no installed plugin is named {name!r} (installed: {known}); its settings "
                f"in {config.path} are ignored"
            )
    for name, plugin in plugins.items():
        if plugin is None:
            continue
        schema = getattr(plugin, "config_schema", None)
        given = config.plugin_settings(name)
        path = f"plugins.{name}.config"
        if schema is None:
            if given:
                raise ConfigError(f"{config.path}: {path}: plugin {name} takes no settings")
            settings[name] = {}
            continue
        try:
            settings[name] = validate(schema, given, path)
        except SchemaError as e:
            if name in config.data["plugins"]:
                raise ConfigError(f"{config.path}: {e}") from None
            unconfigured[name] = f"needs settings in {config.path}: {e}"
    return settings, unconfigured
