"""orcha: a local orchestrator for heavy jobs on a shared host.

This package is imported by every client invocation, so it imports nothing:
:class:`orcha.Client` (``orcha.client.api``) is loaded when first asked for.
"""

__version__ = "0.1.0"

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from orcha.client.api import Client as Client


def __getattr__(name: str) -> object:
    """``orcha.Client``, imported on first use (``orcha run`` never pays for it)."""
    if name == "Client":
        from orcha.client.api import Client

        return Client
    raise AttributeError(f"module 'orcha' has no attribute {name!r}")
