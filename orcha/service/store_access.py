"""StoreAccess: the two ways into the records' database that the parts of
:class:`~orcha.service.store.Store` (its mixins, :mod:`orcha.service.store_bulk` and
:mod:`orcha.service.store_values`) go through; the Store itself provides them."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


class StoreAccess:
    """What a part of the Store calls to read and write (the Store implements both)."""

    def _write(
        self,
        work: Callable[[sqlite3.Connection], _T],
        what: str,
        wait: float = 0,
        give_up: Callable[[], bool] | None = None,
    ) -> _T:
        """Run ``work`` in a write transaction (NotSavedError, naming ``what``, if it
        cannot be saved)."""
        raise NotImplementedError

    def _read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` on a reading connection (PetitionError if it cannot be read)."""
        raise NotImplementedError
