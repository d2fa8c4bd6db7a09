"""Values kept in the records' database besides the petitions: the service's own
(``service_state``: group limits, runtime kinds...) and each plugin's (``plugin_state``,
``ctx.state``). Mixed into :class:`~orcha.service.store.Store`, whose connections it
uses: a read may be refused (PetitionError), a write may not be saved (NotSavedError)."""

from __future__ import annotations

import json
import time
from typing import Any

from orcha.service.store_access import StoreAccess


class KeptValues(StoreAccess):
    """The key/value state :class:`~orcha.service.store.Store` keeps."""

    def get_value(self, service: str, key: str, default: Any = None) -> Any:
        """A JSON value the service kept under ``key`` (``default`` if none)."""
        row = self._read(
            lambda db: db.execute(
                "SELECT value FROM service_state WHERE service = ? AND key = ?", (service, key)
            ).fetchone()
        )
        return json.loads(row[0]) if row else default

    def set_value(self, service: str, key: str, value: Any) -> None:
        """Keep a JSON value under ``key`` (one transaction); NotSavedError if it cannot."""
        text = json.dumps(value)
        self._write(
            lambda db: db.execute(
                "INSERT INTO service_state (service, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (service, key) DO UPDATE SET value = excluded.value",
                (service, key, text),
            ),
            "the setting was not kept",
        )

    # -- plugins' state ------------------------------------------------------------------
    def state_items(self, plugin: str) -> dict[str, Any]:
        """Every key of ``plugin``'s state with its value, by key."""
        rows = self._read(
            lambda db: db.execute(
                "SELECT key, value FROM plugin_state WHERE plugin = ? ORDER BY key", (plugin,)
            ).fetchall()
        )
        return {key: json.loads(value) for key, value in rows}

    def state_get(self, plugin: str, key: str) -> tuple[bool, Any]:
        """(found, value) of one key of ``plugin``'s state."""
        row = self._read(
            lambda db: db.execute(
                "SELECT value FROM plugin_state WHERE plugin = ? AND key = ?", (plugin, key)
            ).fetchone()
        )
        return (True, json.loads(row[0])) if row else (False, None)

    def state_set(self, plugin: str, key: str, value: Any) -> None:
        """Keep a JSON value (one transaction). ValueError if it is not JSON data;
        NotSavedError if it cannot be saved now."""
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"the value of {key!r} is not JSON data: {e}") from None
        now = time.time()
        self._write(
            lambda db: db.execute(
                "INSERT INTO plugin_state (plugin, key, value, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value, "
                "updated = excluded.updated",
                (plugin, key, text, now),
            ),
            "the value was not kept",
        )

    def state_rm(self, plugin: str, key: str) -> bool:
        """Forget one key; False if it was not there. NotSavedError if it cannot."""
        cur = self._write(
            lambda db: db.execute(
                "DELETE FROM plugin_state WHERE plugin = ? AND key = ?", (plugin, key)
            ),
            "the key was not removed",
        )
        return cur.rowcount > 0
