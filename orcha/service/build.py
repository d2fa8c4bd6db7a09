"""build_service: the one composition root of the service.

Everything the service is made of is built here, from the settings, the configuration
file and the plugins: the manager and its kinds, the scheduler over the machine, the
runner over the process control, the event fan-out (webhooks, sinks, hooks), the plugin
host, the runtime kinds and the handlers. ``orcha serve`` and the original API's
``start_service`` call it; tests call it with a fake machine, process control and clock.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from orcha.config import load as load_config
from orcha.service.events import Events
from orcha.service.handlers import HANDLERS
from orcha.service.host import Host
from orcha.service.isolation import process_control
from orcha.service.kinds import KindManager, templates_of
from orcha.service.machines import LocalMachine
from orcha.service.plugin_host import PluginHost, load_plugins
from orcha.service.predicates import PluginPredicate
from orcha.service.procs import ProcessControl
from orcha.service.reload import secret_warnings
from orcha.service.runner import Runner
from orcha.service.scheduler import Scheduler
from orcha.service.service import Service

if TYPE_CHECKING:
    from orcha.config import Config
    from orcha.plugins.discovery import LoadedPlugin
    from orcha.service.dask.target import DaskTarget
    from orcha.service.manager import Manager
    from orcha.service.queued import Waiting
    from orcha.settings import Settings

log = logging.getLogger("orcha.service")


def build_service(
    settings: Settings,
    *,
    config: Config | None = None,
    plugins: list[LoadedPlugin] | None = None,
    manager: Manager | None = None,
    host: Host | None = None,
    procs: ProcessControl | None = None,
    clock: Callable[[], float] = time.time,
    dask: DaskTarget | None = None,
) -> Service:
    """The service core, composed and ready to open its records and start.

    Without ``manager`` the service loads its own plugins (those ``config`` and
    ``ORCHA_DISABLE_PLUGINS`` leave enabled; ``plugins``: what a discovery in this process
    already found, to use instead of discovering again) and serves their kinds; each
    plugin not loaded is reported on stderr. ``manager``: an original-API manager to serve
    instead. ``host`` (CPUs, memory, GPUs), ``procs`` (spawn, signal, stop trees) and
    ``clock``: the local machine, its process control and the time, which tests replace.
    ``dask``: a Dask cluster whose workers run petitions too (:mod:`orcha.service.dask`;
    ExecutorError if it cannot be reached).
    """
    host = host or Host()
    if manager is None:
        plugin_host = load_plugins(config or load_config(None), entries=plugins)
        for name, why in plugin_host.not_loaded.items():
            print(f"orcha serve: plugin {name} not loaded: {why}", file=sys.stderr, flush=True)
        manager = KindManager(plugin_host.kinds, predicates=plugin_host.predicates)
    else:
        plugin_host = PluginHost({}, {})
    kind_manager = manager if isinstance(manager, KindManager) else None
    service = Service(
        manager, settings, plugins=plugin_host, clock=clock,
        runtime_kinds=templates_of(manager, str(settings.address)),
    )  # fmt: skip
    runner = Runner(manager, service, settings.grace)
    # Today one machine, this host; its slots follow the manager (the original API may
    # override max_running).
    local = LocalMachine(
        host, procs or process_control(_isolation(config), _namespace(settings)),
        # With Dask, this host runs petitions only if told to (the workers do).
        slots=(lambda: manager.max_running) if dask is None or dask.local else (lambda: 0),
        gpus=settings.gpus if settings.gpus is not None else host.discover_gpus(),
    )  # fmt: skip
    local.ordered_output = bool(config is not None and config.data.get("ordered_output"))
    scheduler = Scheduler(
        runner.start,
        machines=[local],
        clock=clock,
        aging=settings.aging,
        backfill_bound=settings.backfill_bound,
        ended=service.end_of,
        failed=service.failed_waiting,
        met=lambda job: _keep_met(service, job),
        members=service.array_members,
        predicates=[PluginPredicate(p) for p in kind_manager.predicates] if kind_manager else (),
    )
    runner.scheduler = scheduler
    runner.plugins = plugin_host
    service.scheduler, service.runner, service.handlers = scheduler, runner, HANDLERS
    service.events = Events(
        scheduler,
        webhooks=config.webhooks() if config is not None else None,
        on_finish=config.on_finish() if config is not None else None,
        secret=config.notify_secret() if config is not None else None,
        sinks=plugin_host.sinks,
        clock=clock,
    )
    if config is not None:
        service.config_groups = config.group_limits()
        for warning in secret_warnings(config):
            log.warning("%s", warning)
    manager.attach(service)
    if dask is not None:
        from orcha.service.dask.cluster import attach_cluster

        attach_cluster(service, dask)
    return service


def _isolation(config: Config | None) -> str:
    """How petitions are isolated (``isolation:`` in the configuration file)."""
    from orcha.defaults import DEFAULT_ISOLATION

    if config is None:
        return DEFAULT_ISOLATION
    return str(config.data.get("isolation") or DEFAULT_ISOLATION)


def _namespace(settings: Settings) -> str:
    """A short word naming this service among others sharing a cgroup: its state
    directory, hashed."""
    import hashlib

    return hashlib.sha1(str(settings.state_dir).encode()).hexdigest()[:8]


def _keep_met(service: Service, job: Waiting) -> None:
    """``job``'s dependencies are met: its record keeps that, so that a restart does not
    look them up again (their records may be cleaned by then)."""
    if service.store is not None and job.seq is not None:
        service.store.update_later(job.seq, deps_met=1)
