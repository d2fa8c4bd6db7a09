"""Schedule: what a petition asks of the scheduler (resources, group, order, lifecycle).

Plain data travelling inside a ``submit`` request (``"schedule": {...}``, only the fields
that differ from the defaults) and kept in the petition's record, so a petition queued
again after a restart asks for the same. Validated on both sides: the client for a fast
error, the service because clients can lie.
"""

from __future__ import annotations

import math

from orcha.defaults import MAX_DURATION_SECONDS, MAX_DURATION_TEXT
from orcha.text import is_utf8, quoted
from orcha.units import check_url

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import Any

#: Default group of petitions submitted without ``--group``.
DEFAULT_GROUP = "default"

#: Upper bounds that keep a lying client from asking for absurd bookkeeping.
MAX_CPUS = 1 << 16
MAX_RETRIES = 1000
MAX_DEPENDENCIES = 1000
MAX_GROUP_LENGTH = 64
MAX_WEBHOOKS = 16


def check_machine(name: object) -> str:
    """A valid ``--on`` value (a machine's name, host or address); ValueError otherwise."""
    if not isinstance(name, str) or not name or len(name) > 255:
        raise ValueError("a machine name must be a non-empty string of at most 255 characters")
    if not is_utf8(name):  # a byte that is not UTF-8, as Python reads it
        raise ValueError(f"machine name {quoted(name)} is not valid UTF-8")
    if not all(c.isprintable() and not c.isspace() for c in name):
        raise ValueError(f"machine name {name!r} must not hold spaces or control characters")
    return name


def check_group(name: object) -> str:
    """A valid group name; ValueError saying what is wrong otherwise.

    1-64 characters from letters, digits, ``-``, ``_`` and ``.`` (safe in file names,
    command lines and logs).
    """
    if not isinstance(name, str) or not name:
        raise ValueError("a group name must be a non-empty string")
    if len(name) > MAX_GROUP_LENGTH or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(
            f"group name {quoted(name)} must be 1-{MAX_GROUP_LENGTH} letters, digits, '-', '_' "
            "or '.'"
        )
    return name


class Schedule:
    """Resources, group, dependencies and lifecycle options of one petition.

    * ``cpus``: CPU slots it occupies while running (the service has ``--max-running``);
    * ``mem``: bytes of memory it reserves; it starts only when that much is available;
    * ``gpus``: how many distinct GPUs of the service's inventory it gets;
    * ``group``: the named group whose own limit and pause apply to it;
    * ``on``: the only machine it may run on (a Dask worker's name, host or address;
      ``local`` or the service's host name for the service's own host), or None;
    * ``after``: IDs that must end successfully before it starts (if one fails or is
      cancelled, this petition fails); ``after_any``: IDs that must end, however;
    * ``timeout``: seconds an attempt may run before its tree is stopped;
    * ``retries``: extra attempts after a non-zero exit, ``retry_delay`` seconds apart;
    * ``notify``: URLs its state changes are POSTed to (webhooks);
    * ``hold``: queued but never started until released (``orcha release``);
    * ``begin``: not started before this time (seconds since the epoch, on the service's
      clock); ``delay``: not started before this many seconds after submission (the
      service turns it into ``begin`` when it queues the petition, so the record keeps
      the time, which survives a restart);
    * ``ordered``: capture stdout and stderr so that the log keeps the order between them
      (``--ordered``; see :mod:`orcha.service.capture`); None: the service's default
      (``ordered_output``), pipes unless configured.
    """

    #: The request's fields (``given`` is not one: it says which were given).
    FIELDS: tuple[str, ...] = (
        "after", "after_any", "begin", "cpus", "delay", "gpus", "group", "hold", "mem",
        "notify", "on", "ordered", "retries", "retry_delay", "timeout",
    )  # fmt: skip
    __slots__ = (*FIELDS, "given")

    def __init__(
        self,
        cpus: int = 1,
        mem: int = 0,
        gpus: int = 0,
        group: str = DEFAULT_GROUP,
        after: tuple[str, ...] = (),
        after_any: tuple[str, ...] = (),
        timeout: float | None = None,
        retries: int = 0,
        retry_delay: float = 0.0,
        notify: tuple[str, ...] = (),
        hold: bool = False,
        begin: float | None = None,
        delay: float = 0.0,
        ordered: bool | None = None,
        on: str | None = None,
    ) -> None:
        self.cpus = cpus
        self.mem = mem
        self.gpus = gpus
        self.group = group
        self.after = after
        self.after_any = after_any
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self.notify = notify
        self.hold = hold
        self.begin = begin
        self.delay = delay
        self.ordered = ordered
        self.on = on
        #: The fields named where it came from (:meth:`from_wire`), default or not: a
        #: runtime kind's values give way to these (``--cpus 1`` over a template's 8).
        self.given: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        return f"Schedule({self.to_wire()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and self.to_wire() == other.to_wire()

    __hash__ = None  # type: ignore[assignment]  # mutable

    @property
    def dependencies(self) -> tuple[str, ...]:
        """Every ID it runs after (success required or not)."""
        return self.after + self.after_any

    @property
    def longest_run(self) -> float | None:
        """The longest it can hold its resources once started: every attempt timing out,
        plus the delays between them; None without a timeout (no bound)."""
        if self.timeout is None:
            return None
        return self.timeout * (1 + self.retries) + self.retry_delay * self.retries

    def replace(self, **changes: Any) -> Schedule:
        """A copy with ``changes`` (field -> value); the copy is checked like a request
        (ValueError naming the bad field). Schedules are shared: change a copy."""
        wire = self.to_wire()
        for name, value in changes.items():
            wire[name] = list(value) if isinstance(value, tuple) else value
        out = Schedule.from_wire({k: v for k, v in wire.items() if v is not None})
        out.given = self.given | frozenset(changes)
        return out

    def to_wire(self, given: bool = False) -> dict[str, Any]:
        """The fields that differ from the defaults, as plain data; with ``given``, also
        those that were given (what a client sends, so that a value given equal to the
        default still overrides a runtime kind's)."""
        out: dict[str, Any] = {}
        for name in self.FIELDS:
            value = getattr(self, name)
            if value != getattr(_DEFAULT, name) or (given and name in self.given):
                out[name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_wire(cls, obj: object) -> Schedule:
        """Check every field; ValueError naming the bad one otherwise."""
        if obj is None:
            return cls()
        if not isinstance(obj, dict):
            raise ValueError("'schedule' must be an object")
        unknown = set(obj) - set(cls.FIELDS)
        if unknown:
            raise ValueError(f"unknown schedule field(s): {', '.join(sorted(unknown))}")
        cpus = _int(obj, "cpus", 1, low=1, high=MAX_CPUS)
        mem = _int(obj, "mem", 0, low=0, high=1 << 62)
        gpus = _int(obj, "gpus", 0, low=0, high=MAX_CPUS)
        retries = _int(obj, "retries", 0, low=0, high=MAX_RETRIES)
        group = check_group(obj.get("group", DEFAULT_GROUP))
        after = _ids(obj, "after")
        after_any = _ids(obj, "after_any")
        if len(after) + len(after_any) > MAX_DEPENDENCIES:
            raise ValueError(f"at most {MAX_DEPENDENCIES} dependencies")
        timeout = obj.get("timeout")
        if timeout is not None:
            timeout = check_seconds(timeout, "timeout")
            if timeout <= 0:
                raise ValueError("'timeout' must be more than 0 seconds")
        retry_delay = check_seconds(obj.get("retry_delay", 0.0), "retry_delay")
        notify = obj.get("notify", [])
        if not isinstance(notify, list) or len(notify) > MAX_WEBHOOKS:
            raise ValueError(f"'notify' must be a list of at most {MAX_WEBHOOKS} URLs")
        urls = tuple(dict.fromkeys(check_url(u) for u in notify))
        hold = obj.get("hold", False)
        if not isinstance(hold, bool):
            raise ValueError("'hold' must be true or false")
        begin = obj.get("begin")
        if begin is not None:
            begin = _moment(begin)
        delay = check_seconds(obj.get("delay", 0.0), "delay")
        ordered = obj.get("ordered")
        if ordered is not None and not isinstance(ordered, bool):
            raise ValueError("'ordered' must be true, false or null")
        on = obj.get("on")
        if on is not None:
            on = check_machine(on)
        schedule = cls(
            cpus, mem, gpus, group, after, after_any, timeout, retries, retry_delay, urls,
            hold=hold, begin=begin, delay=delay, ordered=ordered, on=on,
        )  # fmt: skip
        schedule.given = frozenset(obj)
        return schedule


_DEFAULT = Schedule()


def _int(obj: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = obj.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"'{name}' must be an integer from {low} to {high}, got {value!r}")
    return value


def check_seconds(value: object, name: str) -> float:
    """A duration: from 0 to the longest orcha takes (every sum and wait it reaches then
    stays representable: a lying client cannot make the service overflow)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"'{name}' must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"'{name}' must be a finite number of seconds >= 0, got {value!r}")
    if value > MAX_DURATION_SECONDS:
        raise ValueError(
            f"'{name}' must be at most {MAX_DURATION_SECONDS:.0f} seconds "
            f"({MAX_DURATION_TEXT}), got {value!r}"
        )
    return float(value)


def _moment(value: object) -> float:
    """A start time (``begin``, seconds since the epoch): at most the longest duration
    orcha takes from now (the wall clock: a record's time, checked again after a
    restart, only comes nearer)."""
    import time

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"'begin' must be a number of seconds since the epoch, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"'begin' must be a finite time >= 0, got {value!r}")
    if value > time.time() + MAX_DURATION_SECONDS:
        raise ValueError(f"'begin' must be at most {MAX_DURATION_TEXT} from now, got {value!r}")
    return float(value)


def _ids(obj: dict[str, Any], name: str) -> tuple[str, ...]:
    from orcha.protocol.ids import check_id

    value = obj.get(name, [])
    if not isinstance(value, list):
        raise ValueError(f"'{name}' must be a list of petition IDs")
    out: list[str] = []
    for item in value:
        try:
            petition_id = check_id(item)
        except ValueError as e:
            raise ValueError(f"'{name}': {e}") from None
        if petition_id not in out:
            out.append(petition_id)
    return tuple(out)
