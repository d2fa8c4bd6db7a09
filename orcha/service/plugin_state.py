"""PluginState: a plugin's own persistent key-value store (JSON values).

Kept in the service's SQLite database, one namespace per plugin, so it survives restarts.
Plugin code on the service side reaches it as ``service.state`` in its ``start`` hook;
users reach it with ``orcha state ls|get|set|rm PLUGIN [KEY] [VALUE]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# The key check is the protocol's: requests are checked before they reach the service.
from orcha.protocol.requests import MAX_KEY_LENGTH as MAX_KEY_LENGTH
from orcha.protocol.requests import check_state_key as check_key

if TYPE_CHECKING:
    from orcha.service.store import Store

_MISSING = object()


class PluginState:
    """One plugin's namespace of the state store. Thread-safe (the store is)."""

    def __init__(self, store: Store, plugin: str) -> None:
        self._store = store
        self.plugin = plugin

    def get(self, key: str, default: Any = None) -> Any:
        found, value = self._store.state_get(self.plugin, check_key(key))
        return value if found else default

    def set(self, key: str, value: Any) -> None:
        """Keep ``value`` under ``key``. ValueError if it is not JSON data (numbers,
        strings, booleans, None, lists and dicts of them)."""
        self._store.state_set(self.plugin, check_key(key), value)

    def delete(self, key: str) -> bool:
        """Forget ``key``; False if it was not there."""
        return self._store.state_rm(self.plugin, check_key(key))

    def items(self) -> dict[str, Any]:
        return self._store.state_items(self.plugin)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._store.state_get(self.plugin, key)[0]
