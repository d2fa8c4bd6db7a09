"""Small helpers of the original Orcha API."""

from __future__ import annotations

__all__ = ["version"]


def version(package: str) -> str:
    """The installed version of distribution ``package`` (``-``/``_`` alike), or ``unknown``."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        try:
            return metadata.version(package.replace("_", "-"))
        except metadata.PackageNotFoundError:
            return "unknown"
