"""Which Dask cluster ``orcha serve`` uses, if any: ``--dask ADDRESS``,
``--dask-scheduler-file F``, ``ORCHA_DASK`` (an address, or a scheduler file's path), or
``executor: {kind: dask, scheduler: ...}`` in the configuration file, in that order."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orcha.address import check_dask_address as check_address
from orcha.config import executor_settings
from orcha.defaults import ENV_DASK
from orcha.errors import ConfigError

if TYPE_CHECKING:
    from orcha.config import Config


@dataclass(frozen=True)
class DaskTarget:
    """A Dask scheduler to use: its ``address`` or its ``scheduler_file`` (one of them);
    ``local``: the service's own host runs petitions too; ``source``: where it was set."""

    address: str | None
    scheduler_file: str | None
    local: bool
    source: str

    @property
    def where(self) -> str:
        return self.address or f"the scheduler file {self.scheduler_file}"


def _looks_like_address(text: str) -> bool:
    return "://" in text or (":" in text and not os.path.exists(text))


def resolve(
    address: str | None,
    scheduler_file: str | None,
    local: bool | None,
    config: Config | None,
    env: dict[str, str] | os._Environ[str] = os.environ,
) -> DaskTarget | None:
    """The cluster to use, or None (petitions run on this host only). ConfigError for an
    invalid address, a missing scheduler file, or both an address and a file given."""
    if address and scheduler_file:
        raise ConfigError("give --dask or --dask-scheduler-file, not both")
    data = dict(config.data.get("executor") or {}) if config is not None else {}
    if local is None:
        local = bool(data.get("local", False))
    if address:
        return DaskTarget(check_address(address, "--dask"), None, local, "--dask")
    if scheduler_file:
        return DaskTarget(None, _file(scheduler_file, "--dask-scheduler-file"), local,
                          "--dask-scheduler-file")  # fmt: skip
    value = env.get(ENV_DASK, "").strip()
    if value:
        if _looks_like_address(value):
            return DaskTarget(check_address(value, ENV_DASK), None, local, ENV_DASK)
        return DaskTarget(None, _file(value, ENV_DASK), local, ENV_DASK)
    path = config.path if config is not None else "config"
    data = executor_settings(data, path)  # as 'orcha config validate' checks it
    if data.get("kind", "local") != "dask":
        return None
    if data.get("scheduler"):
        return DaskTarget(data["scheduler"], None, local, path)
    file = os.path.join(os.path.dirname(path), os.path.expanduser(data["scheduler_file"]))
    return DaskTarget(None, _file(file, f"{path}: executor.scheduler_file"), local, path)


def _file(path: str, where: str) -> str:
    """``path``, absolute; ConfigError if its folder does not exist (the file itself may
    appear later: a scheduler starting at the same time writes it; the service waits)."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path) and not os.path.isdir(os.path.dirname(path)):
        raise ConfigError(
            f"{where}: no scheduler file at {path} (start 'dask scheduler --scheduler-file "
            f"{path}' first)"
        )
    return path
