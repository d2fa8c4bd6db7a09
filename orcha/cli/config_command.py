"""``orcha config path|show|validate|reload``: the configuration file."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from orcha.cli.options import global_options, globals_of
from orcha.cli.output import json_option, print_json


@click.group("config")
def config() -> None:
    """The configuration file: where it is, what it says, whether it is valid."""


@config.command("path")
@global_options
@click.pass_context
def config_path(ctx: click.Context) -> int:
    """Print where the configuration file is (or would be)."""
    from orcha import config as configuration

    path, _ = configuration.config_path(globals_of(ctx).config)
    click.echo(path)
    return 0


def _complete(ctx: click.Context, loaded: Any = None) -> dict[str, Any]:
    """The file (``loaded``, else the one this invocation names), validated, with every
    default filled in, plugins' settings included."""
    from orcha.cli.options import load_config
    from orcha.config import check_plugins
    from orcha.plugins.discovery import plugins_by_name

    if loaded is None:
        loaded = load_config(ctx)
    group = ctx.find_root().command
    plugins = plugins_by_name(group.plugins())  # type: ignore[attr-defined]
    settings, unconfigured = check_plugins(loaded, plugins)
    data = {**_machine_defaults(), **loaded.data}
    data["plugins"] = {
        name: {
            "enabled": loaded.plugin_enabled(name),
            "config": settings.get(name, loaded.plugin_settings(name)),
            **({"error": unconfigured[name]} if name in unconfigured else {}),
        }
        for name in sorted(set(plugins) | set(loaded.data["plugins"]))
    }
    return {"path": loaded.path, "exists": loaded.exists, "config": _hide_secrets(data)}


def _hide_secrets(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with webhook secrets replaced by a mark: they are never shown."""
    hidden = "(secret: not shown)"
    if "notify_secret" in data:
        data["notify_secret"] = hidden
    data["notify"] = [
        {**w, "secret": hidden} if isinstance(w, dict) and "secret" in w else w
        for w in data.get("notify", [])
    ]
    return data


def _machine_defaults() -> dict[str, Any]:
    """The defaults of the keys that depend on the machine: ``address`` (the socket in
    the runtime directory, ``ORCHA_RUNTIME_DIR`` if set) and ``max_running`` (the CPU
    cores), first, as the file lists them."""
    import os

    from orcha import defaults

    return {
        "address": os.path.join(_runtime_dir(), defaults.SOCKET_NAME),
        "max_running": os.cpu_count() or 1,
    }


def _runtime_dir() -> str:
    """The folder of the default socket (``ORCHA_RUNTIME_DIR`` if set)."""
    import os

    from orcha import defaults
    from orcha.settings import _platform_dir

    return os.environ.get(defaults.ENV_RUNTIME_DIR) or _platform_dir("runtime")


def _in_effect(ctx: click.Context) -> dict[str, Any]:
    """:func:`_complete`, with what beats the file applied as the client and the service
    apply it: the address (``--address``, ``ORCHA_ADDRESS``) and the Dask executor
    (``ORCHA_DASK``); ``overridden`` says which keys, and where their values come from."""
    from orcha.cli.options import load_config
    from orcha.service.dask.target import resolve as dask_target
    from orcha.settings import resolve_address

    loaded = load_config(ctx)
    doc = _complete(ctx, loaded)
    data, overridden = doc["config"], {}
    address, source = resolve_address(globals_of(ctx).address, loaded, _runtime_dir())
    if source in ("--address", "ORCHA_ADDRESS"):
        data["address"], overridden["address"] = str(address), source
    target = dask_target(None, None, None, loaded)  # 'orcha serve' has the options too
    if target is not None and target.source != loaded.path:
        where = {"scheduler": target.address} if target.address else {
            "scheduler_file": target.scheduler_file}  # fmt: skip
        data["executor"] = {"kind": "dask", **where, "local": target.local}
        overridden["executor"] = target.source
    return {**doc, "overridden": overridden}


def _marked(text: str, overridden: dict[str, str]) -> str:
    """The YAML ``text``, each top-level key in ``overridden`` marked with where its
    value comes from (``address: ...  # from ORCHA_ADDRESS``)."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        key = line.split(":", 1)[0]
        if key in overridden and not line.startswith(" "):
            lines[i] = f"{line}  # from {overridden[key]}"
    return "\n".join(lines)


@config.command("show")
@json_option
@global_options
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> int:
    """Print the configuration in effect: the file, defaults filled in, and what beats
    it applied (--address, ORCHA_ADDRESS, ORCHA_DASK: marked with where it comes from)."""
    doc = _in_effect(ctx)
    if as_json:
        print_json(doc)
        return 0
    import yaml

    where = doc["path"] if doc["exists"] else f"{doc['path']} (absent: defaults)"
    click.echo(f"# {where}")
    text = yaml.safe_dump(doc["config"], sort_keys=False).rstrip()
    click.echo(_marked(text, doc["overridden"]))
    return 0


@config.command("validate")
@json_option
@global_options
@click.pass_context
def config_validate(ctx: click.Context, as_json: bool) -> int:
    """Check the configuration file (and every plugin's settings); exit 2 if invalid.
    Warn, as 'orcha serve' does, of a webhook secret in a file others may read."""
    from orcha.cli.options import load_config
    from orcha.errors import ConfigError
    from orcha.service.reload import secret_warnings

    try:
        loaded = load_config(ctx)
        doc = _complete(ctx, loaded)
    except ConfigError as e:
        if as_json:
            from orcha import config as configuration

            path, _ = configuration.config_path(globals_of(ctx).config)
            print_json({"path": path, "valid": False, "error": e.message})
        raise
    problems = {n: p["error"] for n, p in doc["config"]["plugins"].items() if "error" in p}
    warnings = secret_warnings(loaded)
    if as_json:
        print_json({"path": doc["path"], "exists": doc["exists"], "valid": True,
                    "plugins_left_out": problems, "warnings": warnings})  # fmt: skip
        return 0
    state = "valid" if doc["exists"] else "absent (the defaults apply)"
    click.echo(f"orcha: {doc['path']}: {state}", err=True)
    for name, why in problems.items():
        click.echo(f"orcha: plugin {name} will not load: {why}", err=True)
    for line in warnings:
        click.echo(f"orcha: warning: {line}", err=True)
    return 0


@config.command("reload")
@click.option("--json", "as_json", is_flag=True, help="Print the service's answer as JSON.")
@global_options
@click.pass_context
def config_reload(ctx: click.Context, as_json: bool) -> int:
    """Have the running service read its configuration file again, as SIGHUP does.

    max_running, gpus, groups, aging, backfill_bound, grace, log_cap, notify,
    notify_secret and hooks change at once; no petition is stopped or restarted (a lower
    max_running lets the running ones finish). Options given to 'orcha serve' on its
    command line still beat the file. Prints what changed. If the file is invalid, nothing is
    reloaded and the service keeps the configuration it had: this command exits 2 with the
    reason when it finds the file invalid itself, 204 when the service does (it reads
    the file it was started with, whatever --config says here).
    """
    from orcha.cli.connect import client
    from orcha.errors import ConfigError

    try:
        connection = client(ctx)  # reads the file too (the address may be in it)
    except ConfigError as e:
        raise ConfigError(f"{e.message}; nothing was reloaded: the service keeps its "
                          "configuration") from None  # fmt: skip
    with connection as service:
        answer = service.reload_config()
    if as_json:
        click.echo(json.dumps(answer, indent=2 if sys.stdout.isatty() else None))
        return 0
    for line in answer["changed"]:
        click.echo(line)
    if not answer["changed"] and not answer["restart"]:
        click.echo(f"orcha: {answer['path']}: nothing changed", err=True)
    for name in answer["restart"]:
        click.echo(f"orcha: {name} changed in the file; it takes effect at the next start "
                   "('orcha serve')", err=True)  # fmt: skip
    for line in answer["warnings"]:
        click.echo(f"orcha: warning: {line}", err=True)
    return 0
