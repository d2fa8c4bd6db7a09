"""orcha's first-party plugins, registered through the ``orcha.plugins`` entry points
exactly as third-party plugins are.

* ``hello``: ``orcha send ID --counter N`` prints "Hello world! 0" ... "Hello world! N-1";
* ``shell``: ``orcha run ID -- CMD [ARG...]`` runs a command on the service host.
"""

from orcha.plugins import BasePlugin


class FirstPartyPlugin(BasePlugin):
    """Base of orcha's own plugins: they are versioned with orcha itself."""

    def version(self) -> str:  # type: ignore[override]
        from orcha import __version__

        return f"{self.name} - {__version__}"
