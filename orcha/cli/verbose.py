"""What ``-v`` prints: how the client resolved where and how it connects.

``orcha -v CMD`` says on stderr, before it connects, the service address and where it
came from (``--address``, ``ORCHA_ADDRESS``, the configuration file or the default),
the key (a file and whether it exists, or ``--key``/``ORCHA_KEY``) and the configuration
file read. ``-vv`` adds the time to connect and each operation called with its time
(printed by :class:`orcha.client.session.Session`).

Cheap to import: the fast path (``orcha run``) uses it.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from orcha.settings import Settings


def lines(settings: Settings) -> list[str]:
    """The lines ``-v`` prints for ``settings`` (without the ``orcha: `` prefix)."""
    sources = settings.sources
    out = [f"address {settings.address} ({sources.get('address', 'given')})"]
    key = sources.get("key", "the key file")
    if key == "the key file":
        there = "exists" if os.path.exists(settings.key_file) else "absent"
        out.append(f"key file {settings.key_file} ({there})")
    else:
        out.append(f"key from {key}")
    if "config" in sources:
        out.append(f"configuration file {sources['config']}")
    return out


def report(settings: Settings) -> None:
    """Print :func:`lines` on stderr when ``settings.verbose`` is 1 or more."""
    if settings.verbose < 1:
        return
    try:
        sys.stderr.write("".join(f"orcha: {line}\n" for line in lines(settings)))
        sys.stderr.flush()
    except OSError:
        pass
