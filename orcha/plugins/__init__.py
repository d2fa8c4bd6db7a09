"""Plugins: how petition kinds, predicates, event sinks and CLI commands get into orcha.

The package is in two parts, neither of which imports orcha's CLI or service:

* :mod:`orcha.plugins.contract`: the extension contract, as documented stubs
  (:class:`BasePlugin`, :class:`~orcha.plugins.contract.Kind`,
  :class:`~orcha.plugins.contract.Predicate`, the :class:`~orcha.plugins.contract.Context`
  a kind's ``run`` receives, :data:`~orcha.plugins.contract.EventSink`);
* :mod:`orcha.plugins.discovery`: finding the installed plugins (entry points, the
  original Orcha's ``orcha_*`` modules, ``ORCHA_PLUGIN_PATH``), disabling them by name.

``from orcha.plugins import BasePlugin`` is the original Orcha API and stays; the
discovery names (:func:`discover`, :class:`LoadedPlugin`, ...) are loaded on first use,
so a plugin importing its base class does not pay for discovery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orcha.plugins.contract import BasePlugin

if TYPE_CHECKING:
    from orcha.plugins.discovery import (
        ENTRY_POINT_GROUP,
        LoadedPlugin,
        discover,
    )

__all__ = ["ENTRY_POINT_GROUP", "BasePlugin", "LoadedPlugin", "discover"]

_DISCOVERY = frozenset(
    {"ENTRY_POINT_GROUP", "ENV_PLUGIN_PATH", "CORE_COMMANDS", "EMBEDDED_PACKAGES",
     "LoadedPlugin", "discover", "disabled_from_env", "_instantiate"}
)  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _DISCOVERY:
        from orcha.plugins import discovery

        return getattr(discovery, name)
    raise AttributeError(f"module 'orcha.plugins' has no attribute {name!r}")
