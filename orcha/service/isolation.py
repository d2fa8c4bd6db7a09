"""How a service keeps each petition's processes together (``isolation:`` in the
configuration file; see docs/reliability.rst): a cgroup v2 per petition
(:mod:`orcha.service.cgroups`) where the service may create cgroups, its processes
born there (:mod:`orcha.service.native`; where that module is not built, started there
by a spawner process, :mod:`orcha.service.spawner`), else a child subreaper that
tracks descendants (:mod:`orcha.service.orphans`)."""

from __future__ import annotations

import logging

from orcha.errors import ConfigError
from orcha.service.procs import ProcessControl

log = logging.getLogger("orcha.service.isolation")


def process_control(isolation: str = "auto", namespace: str = "") -> ProcessControl:
    """The process control of a service: ``isolation`` "cgroup" (a cgroup v2 per
    petition; ConfigError, one line, if the service may not create them), "none" (the
    service becomes a child subreaper and tracks descendants) or "auto" (cgroups if it
    may, else as "none"). ``namespace``: names this service's cgroups (see
    :class:`~orcha.service.cgroups.Cgroups`). Logs which it chose."""
    from orcha.defaults import NATIVE_SPAWN
    from orcha.service.cgroup_fs import CgroupUnavailable
    from orcha.service.cgroups import Cgroups
    from orcha.service.native import usable
    from orcha.service.orphans import Tracker, become_subreaper

    native = NATIVE_SPAWN and usable()

    if isolation in ("auto", "cgroup"):
        try:
            cgroups = Cgroups.setup(namespace=namespace)
        except CgroupUnavailable as e:
            if isolation == "cgroup":
                raise ConfigError(
                    f"isolation 'cgroup': {e}; run the service where it may create "
                    "cgroups (systemd: Delegate=yes) or set 'isolation: auto'"
                ) from None
            log.info("petitions are not put in cgroups (%s); tracking their processes", e)
        else:
            what = "with" if cgroups.memory else "without"
            how = "born there by orcha's clone3 helper" if native else "started there"
            log.info("each petition runs in a cgroup under %s (%s memory.max), its "
                     "processes %s", cgroups.base, what, how)  # fmt: skip
            from orcha.defaults import SPAWNER_ENABLED

            if native:
                return ProcessControl(cgroups=cgroups, native=True)
            if not SPAWNER_ENABLED:
                return ProcessControl(cgroups=cgroups)
            from orcha.service.spawner import Spawner

            spawner = Spawner(cgroups.home, cgroups.visiting)
            spawner.start()  # ready by the first petition
            return ProcessControl(cgroups=cgroups, spawner=spawner)
    subreaper = become_subreaper()
    if not subreaper:
        log.warning("cannot become a child subreaper: orphans of petitions go to init")
    return ProcessControl(tracker=Tracker(subreaper=subreaper), native=native)
