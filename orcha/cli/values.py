"""What the values of orcha's options mean: one checking function per kind of value.

Each takes what the option's declared type produced (:mod:`orcha.cli.grammar`) and
returns the value the command uses, or raises ValueError saying what is wrong. The click
commands (which turn that into a usage error, exit 2) and the fast path (which then
leaves the command line to click) call the same functions, so they cannot disagree.

Cheap to import: what a check needs is imported when it runs.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from collections.abc import Sequence


def finite(value: float) -> float:
    """A finite number (FloatRange lets nan and inf through)."""
    if value != value or value in (float("inf"), float("-inf")):  # no math: start-up
        raise ValueError(f"{value} is not a finite number of seconds")
    return value


def size(text: str) -> int:
    """``4096``, ``512K``, ``1.5G`` -> bytes."""
    from orcha.units import parse_size

    return parse_size(text)


def duration(text: str) -> float:
    """``90``, ``90s``, ``1h30m``, ``1:30:00``, ``2-00:00:00`` -> seconds (see
    :func:`orcha.units.parse_duration`)."""
    from orcha.units import parse_duration

    return parse_duration(text)


def timeout(text: str) -> float:
    """A duration of more than 0 seconds."""
    seconds = duration(text)
    if seconds <= 0:
        raise ValueError("the timeout must be more than 0 seconds")
    return seconds


def start_time(text: str) -> float:
    """``HH:MM[:SS]`` (the next such time: today, or tomorrow if it has passed) or an
    ISO 8601 date and time (local unless it has a UTC offset) -> seconds since the epoch;
    at most :data:`~orcha.defaults.MAX_DURATION_SECONDS` (10 years) from now."""
    import datetime
    import re
    import time

    from orcha.defaults import MAX_DURATION_SECONDS, MAX_DURATION_TEXT

    given = text.strip()
    clock = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", given, re.ASCII)  # 0-9 only
    try:
        if clock is not None:
            hour, minute, second = (int(g or 0) for g in clock.groups())
            now = datetime.datetime.now()
            at = now.replace(hour=hour, minute=minute, second=second, microsecond=0)
            if at <= now:
                at += datetime.timedelta(days=1)
            return at.timestamp()
        moment = datetime.datetime.fromisoformat(given).timestamp()
    except (ValueError, OverflowError, OSError):  # the last two: not representable here
        raise ValueError(
            f"{text!r} is not a time (e.g. 14:30, 14:30:15, 2026-12-10T09:00, "
            "2026-12-10 09:00+01:00)"
        ) from None
    if moment > time.time() + MAX_DURATION_SECONDS:
        raise ValueError(f"{text!r} is more than {MAX_DURATION_TEXT} ahead: too far to schedule")
    if moment < 0:
        raise ValueError(f"{text!r} is before 1970")
    return moment


def group(text: str) -> str:
    """A valid group name."""
    from orcha.protocol.schedule import check_group

    return check_group(text)


def machine(text: str) -> str:
    """A valid ``--on`` value."""
    from orcha.protocol.schedule import check_machine

    return check_machine(text)


def ids(values: Sequence[str]) -> list[str]:
    """Petition IDs, each value holding one or more separated by commas; in order,
    without repeats. An empty value names none: ``orcha edit ID --after ''`` drops the
    petition's dependencies (its new list replaces the old)."""
    from orcha.protocol.messages import check_id

    out: list[str] = []
    for value in values:
        if value == "":
            continue
        for item in value.split(","):
            petition_id = check_id(item.strip())
            if petition_id not in out:
                out.append(petition_id)
    return out


def urls(values: Sequence[str]) -> list[str]:
    """Webhook URLs (http or https)."""
    from orcha.units import check_url

    return [check_url(v) for v in values]


def environment(values: Sequence[str]) -> dict[str, str]:
    """``NAME=VALUE`` items (the value may be empty or hold ``=``) -> a dict."""
    out: dict[str, str] = {}
    for item in values:
        name, eq, value = item.partition("=")
        if not eq or not name or "\0" in item:
            raise ValueError(f"{item!r} is not NAME=VALUE")
        out[name] = value
    return out


def absolute(path: str) -> str:
    """The path made absolute (relative to the current directory)."""
    return os.path.abspath(path)


def color(text: str) -> str:
    """``auto``, ``always`` or ``never`` (any case) -> lower case."""
    word = text.lower()
    if word not in ("auto", "always", "never"):
        raise ValueError(f"{text!r} is not one of auto, always, never")
    return word
