"""The layers of orcha's code, top to bottom, and which may import which.

Imports point down only: the import-graph test (``tests/unit/test_import_graph.py``)
fails on a cycle or on an import against this table, and the docs' module map
(``docs/internals.rst``) groups the modules by it. Imports nothing.
"""

from __future__ import annotations

#: (layer, what lives there), top to bottom.
LAYERS: tuple[tuple[str, str], ...] = (
    ("cli", "click commands and the fast path: parse, call the client, print"),
    ("client", "orcha.Client and the lean protocol client; attach and stream; progress"),
    (
        "service",
        "the daemon and everything it owns: handlers, scheduler, machines, runner, "
        "events, records, recovery",
    ),
    ("plugins", "the extension contract (documented stubs) and plugin discovery"),
    ("protocol", "what both sides share: the operations table, wire types, framing"),
    ("base", "the model, states, errors, defaults, units, schema, settings, configuration"),
)

#: Beside the stack: the original Orcha API's modules re-export the core's classes and may
#: import any layer; orcha's own plugins sit on the contract and the CLI; the entry points
#: (the package itself, ``python -m orcha``, the demo) use everything.
ORIGINAL_API = "original API"
FIRST_PARTY = "first-party plugins"
ENTRY = "entry points"

#: Layer -> the layers it must not import.
FORBIDDEN: dict[str, frozenset[str]] = {
    "base": frozenset(
        {"protocol", "client", "service", "cli", "plugins", ORIGINAL_API, FIRST_PARTY}
    ),
    # The core never imports the original API's modules: they are not a parallel world
    # the core calls into, only its own classes under their original names.
    "protocol": frozenset({"client", "service", "cli", "plugins", ORIGINAL_API, FIRST_PARTY}),
    "plugins": frozenset({"service", "cli", "client", ORIGINAL_API, FIRST_PARTY}),
    "client": frozenset({"service", "cli", ORIGINAL_API, FIRST_PARTY}),
    "service": frozenset({"cli", "client", ORIGINAL_API, FIRST_PARTY}),
    FIRST_PARTY: frozenset({"service"}),
}


def layer_of(module: str) -> str:
    """The layer of a module of ``orcha`` or ``orcha_plugins``, by its dotted name."""
    parts = module.split(".")
    if parts[0] == "orcha_plugins":
        return FIRST_PARTY
    if len(parts) == 1:
        return ENTRY  # the package: ``orcha.Client`` (loaded on first use) and the version
    top = parts[1]
    if top in ("cli", "client", "service", "protocol", "plugins"):
        return top
    if top == "kinds":
        return "plugins"  # the Kind contract under its first name
    if top in ("lib", "interfaces", "utils"):
        return ORIGINAL_API
    if top in ("demo", "__main__"):
        return ENTRY
    return "base"
