"""What orcha's own plugins share."""

from orcha.plugins import BasePlugin


class FirstPartyPlugin(BasePlugin):
    """Base of orcha's own plugins: they are versioned with orcha itself."""

    def version(self) -> str:  # type: ignore[override]
        from orcha import __version__

        return f"{self.name} - {__version__}"
