"""build_service: the one composition root of the service.

Everything the service is made of is built here, from the settings, the configuration
file and the plugins: the manager and its kinds, the scheduler over the machine, the
runner over the process control, the event fan-out (webhooks, sinks, hooks), the plugin
host, the runtime kinds and the handlers. ``orcha serve`` and the original API's
``start_service`` call it; tests call it with a fake machine, process control and clock.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from orcha.service.events import Events
from orcha.service.handlers import HANDLERS
from orcha.service.host import Host
from orcha.service.plugin_host import PluginHost
from orcha.service.procs import ProcessControl
from orcha.service.runner import Runner
from orcha.service.runtime_kinds import RuntimeKinds
from orcha.service.scheduler import Scheduler
from orcha.service.service import Service

if TYPE_CHECKING:
    from orcha.config import Config
    from orcha.lib import Manager
    from orcha.settings import Settings


def build_service(
    settings: Settings,
    *,
    config: Config | None = None,
    plugins: Sequence[Any] = (),
    manager: Manager | None = None,
    host: Host | None = None,
    procs: ProcessControl | None = None,
    clock: Callable[[], float] = time.time,
) -> Service:
    """The service core, composed and ready to open its records and start.

    ``plugins``: the discovered plugin entries (name, plugin, kinds, predicates, sinks,
    error), as ``orcha serve`` finds them; those the configuration leaves unconfigured are
    not loaded, and each plugin not loaded is reported on stderr. ``manager``: an original
    API manager to serve instead of the plugins' kinds. ``host`` (CPUs, memory, GPUs),
    ``procs`` (spawn, signal, stop trees) and ``clock``: the machine, its process control
    and the time, which tests replace with fakes.
    """
    host = host or Host()
    if manager is None:
        manager, plugin_host, sinks = _from_plugins(config, plugins, procs)
    else:
        plugin_host, sinks = PluginHost({}, {}), []
    procs = procs or getattr(manager, "procs", None) or ProcessControl()
    service = Service(
        manager, settings, procs=procs, plugins=plugin_host, clock=clock,
        runtime_kinds=RuntimeKinds(manager.kinds, service=str(settings.address)),
    )  # fmt: skip
    runner = Runner(manager, procs, settings.grace, service)
    scheduler = Scheduler(
        runner.start,
        capacity=lambda: manager.max_running,
        host=host,
        gpus=settings.gpus if settings.gpus is not None else host.discover_gpus(),
        clock=clock,
        aging=settings.aging,
        backfill_bound=settings.backfill_bound,
        ended=service.end_of,
        failed=service.failed_waiting,
    )
    runner.scheduler = scheduler
    service.scheduler, service.runner, service.handlers = scheduler, runner, HANDLERS
    service.events = Events(
        scheduler,
        webhooks=config.webhooks() if config is not None else None,
        on_finish=config.on_finish() if config is not None else None,
        sinks=sinks,
        clock=clock,
    )
    manager.attach(service)
    return service


def _from_plugins(
    config: Config | None, entries: Sequence[Any], procs: ProcessControl | None
) -> tuple[Manager, PluginHost, list[tuple[str, Any]]]:
    """The manager of every loaded plugin's kinds and predicates, the host of the
    plugins' hooks, and their event sinks."""
    from orcha.service.kind_manager import KindManager

    plugin_settings: dict[str, dict[str, Any]] = {}
    unconfigured: dict[str, str] = {}
    if config is not None:
        from orcha.config import check_plugins

        plugin_settings, unconfigured = check_plugins(config, {e.name: e.plugin for e in entries})
    loaded = {e.name: e.plugin for e in entries if e.plugin is not None}
    kinds: dict[str, Any] = {}
    predicates: list[Any] = []
    sinks: list[tuple[str, Any]] = []
    for entry in entries:
        if entry.name in unconfigured:
            entry.error = unconfigured[entry.name]
            loaded.pop(entry.name, None)
        if entry.error and entry.error != "disabled":
            print(
                f"orcha serve: plugin {entry.name} not loaded: {entry.error}",
                file=sys.stderr,
                flush=True,
            )
            continue
        kinds.update(entry.kinds)
        predicates.extend(entry.predicates)
        sinks.extend((entry.name, sink) for sink in entry.sinks)
    manager = KindManager(kinds, procs=procs, predicates=predicates)
    return manager, PluginHost(loaded, plugin_settings), sinks
