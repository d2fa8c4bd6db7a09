"""``orcha.client.submit.attach``: the old name of :func:`orcha.cli.petition.attach`.

Plugins written for earlier releases import ``attach`` from here; it lives in
``orcha.cli.petition`` now, because it reads the click context of the command that calls
it, and the client layer imports no CLI. The name is looked up on first use (module
``__getattr__``), so importing this module loads nothing of the CLI.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from orcha.cli.petition import attach as attach

#: The modules that hold the names this module still answers for.
_MOVED = {"attach": "orcha.cli.petition"}


def __getattr__(name: str) -> object:
    if name in _MOVED:
        from importlib import import_module

        return getattr(import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
