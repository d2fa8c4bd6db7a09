"""Values users write, in settings, configuration files and options: sizes, durations,
GPU lists, webhook URLs and hook templates. Each parser returns the value or raises
ValueError saying what is wrong, with an example of what is right.

Part of the base layer: it imports nothing of orcha's but the defaults, so the settings,
the configuration, the protocol and the CLI can all use it.
"""

from __future__ import annotations

from orcha.defaults import HOOK_FIELDS


def parse_size(text: str) -> int:
    """``4096``, ``512K``, ``64M``, ``1G`` (powers of 1024) -> bytes; ValueError otherwise."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"{text!r} is not a size (e.g. 4096, 512K, 64M, 1G)")
    scale = 1024 ** " KMGT".index((m.group(2) or " ").upper())
    return int(float(m.group(1)) * scale)


def parse_gpus(text: str) -> tuple[str, ...] | None:
    """``auto`` -> None (discover), ``none`` or empty -> no GPUs, ``0,1,3`` -> those
    indices (distinct, each a non-negative integer or a GPU UUID); ValueError otherwise."""
    text = text.strip()
    if text.lower() == "auto":
        return None
    if text.lower() in ("", "none"):
        return ()
    out: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item or not all(c.isalnum() or c in "-_" for c in item):
            raise ValueError(f"{text!r} is not a GPU list (e.g. 0,1,2; 'auto'; 'none')")
        if item in out:
            raise ValueError(f"GPU {item} is listed twice in {text!r}")
        out.append(item)
    return tuple(out)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90``, ``1.5``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w`` -> seconds; ValueError
    otherwise."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not m:
        raise ValueError(f"{text!r} is not a duration (e.g. 90s, 15m, 12h, 7d)")
    return float(m.group(1)) * _UNITS.get(m.group(2) or "s", 1)


def check_url(url: object) -> str:
    """A webhook URL (http or https); ValueError otherwise."""
    from urllib.parse import urlsplit

    if not isinstance(url, str) or not url:
        raise ValueError("a webhook URL must be a non-empty string")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    return url


def check_hook_template(template: str) -> None:
    """ValueError if an ``on_finish`` template uses a field that does not exist, or cannot
    be filled in (format specs and conversions: every value is text)."""
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ValueError(f"not a template: {e}") from None
    for field in fields:
        if field not in HOOK_FIELDS:
            raise ValueError(f"unknown field {{{field}}} (fields: {', '.join(HOOK_FIELDS)})")
    try:
        template.format(**{f: "x" for f in HOOK_FIELDS})
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as e:
        raise ValueError(
            f"cannot be filled in ({type(e).__name__}: {e}); write fields plainly, like {{code}}"
        ) from None
