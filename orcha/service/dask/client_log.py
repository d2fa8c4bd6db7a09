"""What Dask's client logs when orcha replaces it, in orcha's words.

After the scheduler was lost, orcha makes a new client and closes the old one
(:meth:`Cluster.reconnect <orcha.service.dask.cluster.Cluster.reconnect>`), whose own
reconnect is still trying the old address: closing cancels it, and Dask logs the
``CancelledError`` at ERROR with its traceback (``distributed.utils.log_errors``), as if
something had failed. A cancellation is what closing a client does: one info line says
so instead. Every other error Dask's client logs keeps its level and traceback.
"""

from __future__ import annotations

import asyncio
import logging
import traceback

log = logging.getLogger("orcha.service.dask")

#: The logger Dask's client logs its errors to.
DASK_CLIENT_LOGGER = "distributed.client"


class CancelledInClosing(logging.Filter):
    """Drops a record of a cancelled client task (a ``CancelledError``) and says in one
    info line what was cancelled; passes every other record as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, asyncio.CancelledError):
            return True
        names = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
        if "_reconnect" in names:
            log.info("a replaced Dask client's reconnect was cancelled as it was closed")
        else:
            task = names[-1] if names else "a task"
            log.info("a Dask client's %s was cancelled as the client was closed", task)
        return False


def quiet_cancelled_tasks() -> None:
    """Put :class:`CancelledInClosing` on Dask's client logger (once)."""
    logger = logging.getLogger(DASK_CLIENT_LOGGER)
    if not any(isinstance(f, CancelledInClosing) for f in logger.filters):
        logger.addFilter(CancelledInClosing())
