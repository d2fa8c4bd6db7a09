"""Values users write, in settings, configuration files and options: sizes, durations,
GPU lists, webhook URLs and hook templates. Each parser returns the value or raises
ValueError saying what is wrong, with an example of what is right. And waits of any
duration, cut into waits the system takes (:func:`capped_wait`, :func:`wait_event`).

Part of the base layer: it imports nothing of orcha's but the defaults and the text
helpers (:mod:`orcha.text`), so the settings, the configuration, the protocol and the CLI
can all use it.
"""

from __future__ import annotations

from orcha.defaults import HOOK_FIELDS, MAX_DURATION_SECONDS, MAX_DURATION_TEXT, MAX_WAIT_SECONDS

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from threading import Event
    from typing import NoReturn


def parse_size(text: str) -> int:
    """``4096``, ``512K``, ``64M``, ``1G`` (powers of 1024) -> bytes; ValueError otherwise."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.I | re.A)
    if not m:
        raise ValueError(f"{text!r} is not a size (e.g. 4096, 512K, 64M, 1G)")
    scale = 1024 ** " KMGT".index((m.group(2) or " ").upper())
    return int(float(m.group(1)) * scale)


def size_text(n: float) -> str:
    """``n`` bytes as people read a size, in the units ``orcha status`` shows: ``100 B``,
    ``3.9 KiB``, ``1.5 MiB``, ``312 MiB``, ``4 GiB`` (one decimal, none when it is 0)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            text = f"{n:.0f}" if unit == "B" else f"{n:.1f}".removesuffix(".0")
            return f"{text} {unit}"
        n /= 1024
    raise AssertionError("not reached")  # pragma: no cover


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
        if not item or not all(c.isascii() and (c.isalnum() or c in "-_") for c in item):
            raise ValueError(f"{text!r} is not a GPU list (e.g. 0,1,2; 'auto'; 'none')")
        if item in out:
            raise ValueError(f"GPU {item} is listed twice in {text!r}")
        out.append(item)
    return tuple(out)


_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}

#: The forms :func:`parse_duration` accepts, for its error messages.
DURATION_FORMS = (
    "90 or 90s, 500ms, 15m, 1h30m, 2d12h, 1w; 30:00 (MM:SS), 1:30:00, 2-12 (D-HH), 2-00:00:00"
)

# 1w2d3h4m5s: units in this order, each at most once and each written (only seconds may
# have decimals). A bare number after a unit is no duration: "1h30" means 1h30m to most
# people, and was taken as 1h0m30s.
_COMPOUND = r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?"
_ORDER = ("w", "d", "h", "m", "s")
#: After the first unit written, each is below the next larger one (1h90m is refused).
_BELOW = {"d": (7, "days"), "h": (24, "hours"), "m": (60, "minutes"), "s": (60, "seconds")}
# Slurm's --time forms: [D-]HH[:MM[:SS]] with a day, [[H:]M:]S without one.
_CLOCK = r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+(?:\.\d+)?))?"


def parse_duration(text: str) -> float:
    """A duration -> seconds; ValueError naming the accepted forms otherwise, or the
    limit for one longer than :data:`~orcha.defaults.MAX_DURATION_SECONDS` (10 years).

    * a number of seconds, ``90`` or ``1.5`` (unlike Slurm's ``--time``, where a bare
      number is minutes);
    * one number with one unit: ``500ms``, ``1.5h``, ``12 h`` (ms, s, m, h, d, w);
    * units, largest first, each at most once and each written: ``90s``, ``15m``,
      ``1h30m``, ``2d12h``, ``1w`` (w, d, h, m, s); after the first, days are below 7,
      hours below 24, minutes and seconds below 60 (``1h30`` and ``1h90m`` are refused,
      saying what they may mean: ``1h30m``, ``2h30m``);
    * Slurm's clock forms: ``MM:SS`` (``30:00``), ``H:MM:SS`` (``1:30:00``), and with
      days ``D-HH`` (``2-12``), ``D-HH:MM``, ``D-HH:MM:SS`` (``2-00:00:00``). Minutes and
      seconds after the first field are below 60, hours after a day below 24.
    """
    seconds = _duration(text)
    check_duration(seconds, repr(text.strip()))
    return seconds


def check_duration(seconds: float, what: str) -> float:
    """``seconds`` if it is at most the longest duration orcha takes; ValueError naming
    ``what`` and the limit otherwise (so no clock sum or wait it reaches can overflow)."""
    if not seconds <= MAX_DURATION_SECONDS:  # nan too
        raise ValueError(
            f"{what} is longer than the longest duration orcha takes, {MAX_DURATION_TEXT}"
        )
    return seconds


def capped_wait(seconds: float) -> float:
    """A wait of ``seconds`` as one wait of a loop may block: between 0 and
    :data:`~orcha.defaults.MAX_WAIT_SECONDS`. The loop waits again if its time has not
    come: epoll, select and thread waits refuse long ones (OverflowError), and a clock
    may be changed meanwhile."""
    return min(max(0.0, seconds), MAX_WAIT_SECONDS)


def wait_event(event: Event, seconds: float) -> bool:
    """``event.wait(seconds)`` for any number of seconds (however many, in waits
    :func:`capped_wait` allows): whether the event was set."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if event.wait(capped_wait(left)) or left <= 0:
            return event.is_set()


def _duration(text: str) -> float:
    """:func:`parse_duration` without the upper bound."""
    import re

    given = text.strip()
    # re.ASCII: digits are 0-9 (a bare \d also takes '٣', which int() reads as 3).
    single = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|[smhdw]?)", given, re.A)  # 1.5h, 12 h, 500ms
    if single is not None:
        return float(single.group(1)) * _UNITS[single.group(2) or "s"]
    compound = _compound(given)
    if compound is not None:
        seconds, first, problem = compound
        if problem is None:
            return seconds
        _refuse(text, problem, _spelled(seconds, first))
    bare = re.fullmatch(r"(.*[wdhm])(\d+(?:\.\d+)?)", given, re.A)  # 1h30
    before = _compound(bare.group(1)) if bare is not None else None
    if bare is not None and before is not None:
        seconds, first, _ = before
        unit = _ORDER[_ORDER.index(bare.group(1)[-1]) + 1]  # the next smaller one
        meant = seconds + float(bare.group(2)) * _UNITS[unit]
        _refuse(text, "its last number has no unit", _spelled(meant, first))
    clock = re.fullmatch(_CLOCK, given, re.A)
    if clock is not None and (":" in given or "-" in given):
        days, first, second, third = clock.groups()
        limits: tuple[int | None, ...]
        if days is not None:  # D-HH[:MM[:SS]]
            parts = [int(days), int(first), int(second or 0), float(third or 0)]
            limits = (None, 24, 60, 60)
        elif third is not None:  # H:MM:SS
            parts = [0, int(first), int(second), float(third)]
            limits = (None, None, 60, 60)
        else:  # MM:SS
            parts = [0, 0, int(first), float(second or 0)]
            limits = (None, None, None, 60)
        if all(limit is None or value < limit for value, limit in zip(parts, limits, strict=True)):
            d, h, m, s = parts
            return d * _UNITS["d"] + h * _UNITS["h"] + m * _UNITS["m"] + s
    raise ValueError(f"{text!r} is not a duration (accepted: {DURATION_FORMS})")


def _compound(given: str) -> tuple[float, str, str | None] | None:
    """``given`` in units largest first (``1h30m``): (its seconds, its first unit, what
    breaks the rule that each unit after the first is below the next larger one, or
    None); None if it is not written that way."""
    import re

    match = re.fullmatch(_COMPOUND, given, re.A)
    if not given or match is None:
        return None
    fields = [(unit, value) for unit, value in zip(_ORDER, match.groups(), strict=True) if value]
    problem = None
    for unit, value in fields[1:]:
        limit, name = _BELOW[unit]
        if float(value) >= limit:
            problem = problem or f"{name} after the first unit are below {limit}"
    seconds = sum(float(value) * _UNITS[unit] for unit, value in fields)
    return seconds, fields[0][0], problem


def _spelled(seconds: float, first: str) -> str:
    """``seconds`` in units from ``first`` down, each below the next larger one."""
    parts = []
    for unit in _ORDER[_ORDER.index(first) :]:
        if unit == "s":
            count = f"{round(seconds, 6):f}".rstrip("0").rstrip(".")
        else:
            whole, seconds = divmod(seconds, _UNITS[unit])
            count = str(int(whole))
        if count != "0":
            parts.append(f"{count}{unit}")
    return "".join(parts) or f"0{first}"


def _refuse(text: str, problem: str, meant: str) -> NoReturn:
    raise ValueError(
        f"{text!r} is not a duration: {problem}; did you mean {meant!r}? "
        f"(accepted: {DURATION_FORMS})"
    )


def clock_time(moment: float, now: float) -> str:
    """A time (seconds since the epoch) as people read it: ``14:30`` today, ``09:00
    tomorrow``, else ``2026-12-10 09:00`` (local time; seconds only when not zero)."""
    import datetime

    at = datetime.datetime.fromtimestamp(round(moment))
    today = datetime.datetime.fromtimestamp(now).date()
    clock = at.strftime("%H:%M:%S" if at.second else "%H:%M")
    if at.date() == today:
        return clock
    if at.date() == today + datetime.timedelta(days=1):
        return f"{clock} tomorrow"
    return f"{at.date().isoformat()} {clock}"


#: How the reason of a petition waiting for its start time begins (the service's words,
#: :class:`orcha.service.predicates.StartsAt`).
STARTS_AT = "starts at "


def starts_at(begin: float, now: float) -> str:
    """Why a petition waits for its start time ``begin``: ``starts at 14:30`` (in this
    process's time zone, see :func:`clock_time`)."""
    return STARTS_AT + clock_time(begin, now)


def local_reason(reason: str, begin: object, now: float) -> str:
    """``reason``, why a petition waits as the service words it, with its start time
    said again in this process's time zone: the service words ``starts at 13:00`` in
    its own zone (a systemd unit's is often UTC), which need not be the user's.
    ``begin``: the petition's start time (its ``schedule.begin``), None if it has none."""
    if reason.startswith(STARTS_AT) and isinstance(begin, (int, float)):
        return starts_at(begin, now)
    return reason


def check_url(url: object) -> str:
    """A webhook URL (http or https) that urllib can send to; ValueError otherwise: a
    URL it would always refuse (a space or control character anywhere, a byte that is
    not UTF-8, a character that is not ASCII after the host) is refused here, before
    any petition counts on it, rather than failing at each of its events."""
    from urllib.parse import urlsplit

    from orcha.text import is_utf8, quoted

    if not isinstance(url, str) or not url:
        raise ValueError("a webhook URL must be a non-empty string")
    if not is_utf8(url):  # a byte of the command line that is not UTF-8
        raise ValueError(f"{quoted(url)} is not valid UTF-8; percent-encode its bytes (%FF)")
    bad = next((ch for ch in url if ch <= " " or "\x7f" <= ch <= "\x9f"), None)
    if bad is not None:
        what = "a space" if bad == " " else "a control character"
        raise ValueError(
            f"{quoted(url)} has {what}, which no URL holds; percent-encode it "
            f"({''.join(f'%{b:02X}' for b in bad.encode())})"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    if not url[len(parts.scheme) + 3 + len(parts.netloc) :].isascii():
        raise ValueError(
            f"{url!r} has a character that is not ASCII after its host; percent-encode it "
            "(é is %C3%A9)"
        )
    host = parts.hostname or ""
    try:
        if not host.isascii():
            host.encode("idna")  # how urllib sends a host name that is not ASCII
    except UnicodeError:
        raise ValueError(f"{url!r} has a host name urllib cannot send (not IDNA)") from None
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
