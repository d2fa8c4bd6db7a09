"""Reload: a running service reads its configuration file again and applies what changed.

``orcha serve`` reloads on SIGHUP (``systemctl reload orcha``; the signal handler only
sets a flag, the daemon loop calls :func:`reload`) and when a client asks
(``orcha config reload``, the ``reload`` operation). No petition is dropped, restarted or
stopped by a reload:

* ``max_running``: raising it admits waiting petitions at once; lowering it lets the
  running ones finish (none is stopped) and admits nothing until they are below it.
* ``gpus``: the new inventory is handed out from now on; running petitions keep the GPUs
  they hold until they end (one taken out of the inventory is not given out again).
* ``groups``: the limits the file names are set (as ``orcha group set``); a group the
  file no longer names loses its limit if it still has the one the file gave it (a limit
  set since with ``orcha group set`` stays).
* ``aging`` (every waiting petition is ranked again), ``backfill_bound``, ``grace`` (for
  stops from now on), ``log_cap`` (for petitions queued from now on: a log being written
  keeps its cap).
* ``notify``, ``notify_secret``/``notify_secret_file`` and ``hooks``: for events from now
  on (deliveries already queued go out as they were made).

``address``, ``isolation``, ``executor`` and ``plugins`` need a restart: a reload names
them if they changed and leaves them. Options given on ``orcha serve``'s command line (and the
environment variables that stand for them) still beat the file after a reload, as at
start. An invalid file is refused as a whole (ConfigError, one log line): the service
keeps the configuration it had.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from orcha.defaults import RESTART_SETTINGS
from orcha.settings import Settings, resolve

if TYPE_CHECKING:
    from orcha.config import Config
    from orcha.service.service import Service

log = logging.getLogger("orcha.service.reload")

_lock = threading.Lock()  # one reload at a time (a signal and a client may ask together)


class ConfigSource:
    """Where a service's settings come from, to read them again: the configuration file
    (``explicit``: the ``--config`` path, else ``ORCHA_CONFIG`` or the default file) and
    the options given on ``orcha serve``'s command line (``overrides``: keyword arguments
    of :func:`orcha.settings.resolve`), which beat the file. ``config``: the file as
    loaded at start (what a reload compares with)."""

    def __init__(
        self, explicit: str | None, overrides: dict[str, Any], config: Config | None = None
    ) -> None:
        self.explicit = explicit
        self.overrides = {k: v for k, v in overrides.items() if v is not None}
        self.config = config

    def load(self) -> Config:
        """The file, read and validated now (ConfigError if it is invalid)."""
        from orcha import config

        return config.load(self.explicit)

    def settings(self, config: Config, current: Settings) -> Settings:
        """``current`` with the reloadable settings resolved again from ``config``, the
        environment and the command line's options."""
        new = resolve(config=config, **self.overrides)
        return Settings(
            address=current.address, runtime_dir=current.runtime_dir,
            state_dir=current.state_dir, key_override=current.key_override,
            verbose=current.verbose, grace=new.grace, max_running=new.max_running,
            log_cap=new.log_cap, gpus=new.gpus, aging=new.aging,
            backfill_bound=new.backfill_bound,
        )  # fmt: skip


def reload(service: Service) -> dict[str, Any]:
    """Read the configuration file again and apply what changed. Returns ``{"path",
    "changed": [lines], "restart": [settings that need one], "warnings": [lines]}``.
    ConfigError if the file is invalid (then nothing changed)."""
    source = service.config_source
    if source is None:
        from orcha.errors import ConfigError

        raise ConfigError(
            "this service was not started by 'orcha serve' (the original API's "
            "start_service); it has no configuration file to reload"
        )
    with _lock:
        try:
            config = source.load()
            plan = _plan(service, source, config)
        except Exception as e:
            log.warning("reload refused, the configuration is unchanged: %s", e)
            raise
        # source.config stays the file the service started with: what needs a restart
        # is compared with what is in effect, so a reload says so again until then.
        _apply(service, plan)
    for line in plan["changed"]:
        log.warning("reload: %s", line)
    for name in plan["restart"]:
        log.warning("reload: %s changed in the file; it takes effect at the next start", name)
    for line in plan["warnings"]:
        log.warning("reload: %s", line)
    if not plan["changed"] and not plan["restart"]:
        log.warning("reload: %s: nothing to change", config.path)
    return {key: plan[key] for key in ("path", "changed", "restart", "warnings")}


def _plan(service: Service, source: ConfigSource, config: Config) -> dict[str, Any]:
    """Everything the reload will change, worked out (and checked) before any of it is."""
    old, scheduler = service.settings, service.scheduler
    new = source.settings(config, old)
    changed: list[str] = []
    plan: dict[str, Any] = {"path": config.path, "settings": new, "changed": changed}
    slots_before = service.manager.max_running
    for key, shown in (("grace", _seconds), ("aging", _seconds),
                       ("backfill_bound", _seconds), ("log_cap", _bytes)):  # fmt: skip
        if getattr(new, key) != getattr(old, key):
            changed.append(f"{key}: {shown(getattr(old, key))} -> {shown(getattr(new, key))}")
    # GPUs: the configured list, or (auto) what the machine finds now.
    local = scheduler.machines[0]
    inventory = tuple(new.gpus) if new.gpus is not None else _discover(local)
    plan["gpus"] = inventory if inventory != local.inventory else None
    if plan["gpus"] is not None:
        changed.append(f"gpus: {_list(local.inventory)} -> {_list(inventory)}")
    ordered = bool(config.data.get("ordered_output"))
    plan["ordered_output"] = ordered
    if ordered != getattr(local, "ordered_output", ordered):
        changed.append(f"ordered_output: {_bool(not ordered)} -> {_bool(ordered)} "
                       "(for petitions from now on)")  # fmt: skip
    # Group limits: those the file names; one it stops naming keeps a limit set by hand.
    before = service.config_groups
    after = config.group_limits()
    limits = scheduler.group_limits()
    groups: dict[str, int | None] = {}
    for name, limit in after.items():
        if limits.get(name) != limit:
            groups[name] = limit
    for name, old_limit in before.items():
        if name not in after and limits.get(name) == old_limit:
            groups[name] = None
    for name, new_limit in sorted(groups.items()):
        changed.append(f"groups.{name}: {limits.get(name) or 'no limit'} -> "
                       f"{new_limit or 'no limit'}")  # fmt: skip
    plan["groups"], plan["config_groups"] = groups, after
    # Deliveries: secrets are never shown, only whether they changed.
    webhooks, on_finish, secret = config.webhooks(), config.on_finish(), config.notify_secret()
    events = service.events
    before_hooks = events.webhooks.everyone
    if [(w["url"], w["events"]) for w in webhooks] != [
        (w["url"], w["events"]) for w in before_hooks
    ]:
        changed.append(f"notify: {len(before_hooks)} -> {len(webhooks)} webhook(s)")
    # The secrets in use, not which webhook has which: a webhook added or removed changes
    # no secret (a webhook without one of its own has notify_secret's, or none).
    if _secrets(webhooks, secret) != _secrets(before_hooks, events.webhooks.secret):
        changed.append("notify_secret: changed (not shown)")
    hook = events.finish_hooks.on_finish
    if on_finish != hook:
        state = "changed" if on_finish and hook else "set" if on_finish else "none"
        changed.append(f"hooks.on_finish: {state}")
    plan["hooks"] = (webhooks, on_finish, secret)
    plan["restart"] = _restart_only(source.config, config)
    plan["slots_before"] = slots_before
    plan["warnings"] = secret_warnings(config)
    return plan


def _apply(service: Service, plan: dict[str, Any]) -> None:
    """Make the planned changes, then admit what may start now."""
    from orcha import settings as settings_module
    from orcha.service.recovery import save_groups

    new: Settings = plan["settings"]
    scheduler = service.scheduler
    with scheduler.lock:
        service.settings = new
        settings_module.configure(new)
        service.log_cap = new.log_cap
        service.runner.grace = new.grace
        scheduler.backfill_bound = new.backfill_bound
        if plan["gpus"] is not None:
            scheduler.set_inventory(scheduler.machines[0], plan["gpus"])
        if hasattr(scheduler.machines[0], "ordered_output"):
            scheduler.machines[0].ordered_output = plan["ordered_output"]
        for name, limit in plan["groups"].items():
            scheduler.set_group_limit(name, limit)
        service.config_groups = plan["config_groups"]
        scheduler.set_aging(new.aging)
        service.events.configure(*plan["hooks"])
        # Read back, not planned: the original API's manager may fix max_running itself.
        slots = service.manager.max_running
        if slots != plan["slots_before"]:
            plan["changed"].insert(0, f"max_running: {plan['slots_before']} -> {slots}")
        plan["warnings"] += list(scheduler.group_warnings().values())
        plan["warnings"] += _too_big(service)
        scheduler.admit()
    if plan["groups"]:
        save_groups(service)


def _too_big(service: Service) -> list[str]:
    """A warning for each waiting petition that can no longer fit (it waits on, until
    the capacity grows again or it is cancelled: a reload drops no petition)."""
    from orcha.errors import PetitionError
    from orcha.service.feasible import check_feasible

    out = []
    scheduler = service.scheduler
    for job in scheduler.waiting_views():
        try:
            check_feasible(scheduler.machines, job.schedule)
        except PetitionError as e:
            out.append(f"petition {job.id} waits but can no longer fit: {e.message}")
    return out


def secret_warnings(config: Config) -> list[str]:
    """A warning if the file holds a webhook secret itself and others may read it (the
    secret is then no secret; a secret file of such a mode is refused outright)."""
    import os

    holds = "notify_secret" in config.data or any(
        isinstance(w, dict) and "secret" in w for w in config.data.get("notify", [])
    )
    if not (config.exists and holds):
        return []
    try:
        mode = os.stat(config.path).st_mode & 0o777
    except OSError:
        return []
    if not mode & 0o044:
        return []
    return [
        f"{config.path} holds a webhook secret and others may read it (mode {mode:04o}): "
        f"run 'chmod 600 {config.path}', or keep the secret in notify_secret_file"
    ]


def _restart_only(before: Config | None, after: Config) -> list[str]:
    if before is None:
        return []
    return [k for k in RESTART_SETTINGS if before.data.get(k) != after.data.get(k)]


def _discover(machine: Any) -> tuple[str, ...]:
    host = getattr(machine, "host", None)
    return tuple(host.discover_gpus()) if host is not None else machine.inventory


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _bytes(value: int) -> str:
    """As the file would write it: ``64M``, ``1K``, ``1500``."""
    for unit, scale in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value and value % scale == 0:
            return f"{value // scale}{unit}"
    return str(value)


def _bool(value: bool) -> str:
    return "true" if value else "false"  # as YAML and 'orcha config show' write it


def _secrets(webhooks: list[dict[str, Any]], secret: bytes | None) -> set[bytes]:
    """The secrets that sign some webhook's bodies, or would sign a petition's own."""
    return {s for s in (secret, *(w.get("secret") for w in webhooks)) if s}


def _list(gpus: tuple[str, ...]) -> str:
    return ",".join(gpus) or "none"
