"""Petition kinds: the extension point through which plugins give ``orcha serve`` work to do.

:class:`Kind` is defined with the rest of the extension contract in
:mod:`orcha.plugins.contract`; this module keeps its public name. Clients import it to
declare commands, so it imports nothing heavy.
"""

from __future__ import annotations

from orcha.plugins.contract import Context, Kind

__all__ = ["Context", "Kind"]
