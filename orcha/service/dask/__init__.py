"""Scale-out on a Dask cluster: petitions run on the workers of an existing Dask
distributed cluster, orcha keeping one global queue (docs/dask.rst).

This package's top level imports nothing of ``distributed`` (``import distributed``
alone costs about a second): only :func:`connect` does, when ``orcha serve`` was told to
use a cluster. What lives where:

* :mod:`.target` — which cluster ``orcha serve`` uses (options, ``ORCHA_DASK``, config).
* :mod:`.inventory` — a worker's report read into capacity; placement words (pure).
* :mod:`.plugin` and :mod:`.spawner` — what runs on each worker: host facts, the
  per-worker spawner that guards the petitions' trees, the output buffer.
* :mod:`.remote` — :class:`~.remote.WorkerMachine`, one :class:`Machine` per worker.
* :mod:`.cluster` — the service's view of the cluster: workers joining and leaving.
"""

from __future__ import annotations

from orcha.errors import ExecutorError

INSTALL_HINT = "pip install 'orcha[dask]'"


def require_distributed() -> None:
    """ExecutorError (one line saying what to install) if ``distributed`` is missing."""
    import importlib.util

    try:
        missing = importlib.util.find_spec("distributed") is None
    except ValueError:  # in sys.modules as None: blocked
        missing = True
    if missing:
        raise ExecutorError(
            f"running petitions on a Dask cluster needs Dask's distributed: {INSTALL_HINT}"
        )
