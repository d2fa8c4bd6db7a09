"""The benchmark's arithmetic: summaries of repeated samples, ratios, verdicts, the refill
gaps from the petitions' own timestamps, and how figures are printed. Pure functions (no
processes, no clock), unit-tested in tests/unit/test_bench_stats.py."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

PASS, FAIL, INFO, ERROR = "PASS", "FAIL", "INFO", "ERROR"


@dataclass(frozen=True)
class Summary:
    """Repeated samples of one figure: their count, minimum, median and maximum."""

    n: int
    min: float
    median: float
    max: float

    def as_dict(self) -> dict[str, float]:
        return {"n": self.n, "min": self.min, "median": self.median, "max": self.max}


def summarize(samples: Iterable[float]) -> Summary:
    """min/median/max of ``samples``; ValueError if there are none (a figure with no
    sample must be reported as an error, never as 0)."""
    values = sorted(float(s) for s in samples)
    if not values:
        raise ValueError("no samples")
    return Summary(len(values), values[0], statistics.median(values), values[-1])


def ratio(value: float, peer: float) -> float:
    """value / peer; infinity when the peer is 0 and the value is not (0/0 is 1: the same)."""
    if peer == 0:
        return 1.0 if value == 0 else math.inf
    return value / peer


def at_most(value: float, limit: float) -> str:
    """PASS when ``value`` <= ``limit`` (a cost: time, memory, CPU), else FAIL."""
    return PASS if value <= limit else FAIL


def at_least(value: float, limit: float) -> str:
    """PASS when ``value`` >= ``limit`` (a rate or a speed ratio), else FAIL."""
    return PASS if value >= limit else FAIL


def rate(count: int, seconds: float) -> float:
    """Items per second; infinity for a zero duration."""
    return math.inf if seconds <= 0 else count / seconds


def parse_stamps(text: str) -> list[tuple[float, float]]:
    """(start, end) pairs from lines ``s T`` / ``e T`` that each petition appends (T in
    seconds, as bash's $EPOCHREALTIME), in the order written. Lines of other shapes are
    skipped; a start without its end (a petition still running or killed) is dropped."""
    pairs: list[tuple[float, float]] = []
    start: float | None = None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ("s", "e"):
            continue
        try:
            stamp = float(parts[1].replace(",", "."))
        except ValueError:
            continue
        if parts[0] == "s":
            start = stamp
        elif start is not None:
            pairs.append((start, stamp))
            start = None
    return pairs


def refill_gaps(pairs: Sequence[tuple[float, float]]) -> list[float]:
    """Seconds from each petition's last act to the next petition's first act, with one
    slot (petitions one after the other): sorted by start, next start minus this end.
    Overlapping pairs (a negative gap: two ran at once) raise ValueError, since then the
    slot was not the bottleneck and no refill was measured."""
    ordered = sorted(pairs)
    gaps = []
    for (_, end), (start, _) in itertools.pairwise(ordered):
        if start < end:
            raise ValueError(f"two petitions overlapped ({start:.6f} < {end:.6f})")
        gaps.append(start - end)
    return gaps


def top_frames(collapsed: str, count: int = 6) -> list[tuple[str, float]]:
    """The functions most often on top of the stack in py-spy's collapsed (``raw``)
    output: ``frame;frame;...;leaf N`` per line, a frame ``function (file:line)``. The
    line numbers are dropped, so a function's lines add up. [(function (file), share)]."""
    totals: dict[str, int] = {}
    for line in collapsed.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        name, _, where = leaf.partition(" (")
        key = f"{name} ({where.rsplit(':', 1)[0].rsplit('/', 1)[-1]})" if where else name
        totals[key] = totals.get(key, 0) + int(n)
    whole = sum(totals.values())
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:count]
    return [(key, n / whole) for key, n in ranked]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:.0f} MB"


def fmt(value: float, unit: str) -> str:
    """One figure in its unit: 's' (shown in ms below 1 s), 'ms' (seconds given), 'B'
    (bytes, shown in MB), '/s', 'MB/s' (bytes per second given), '%', 'x', or ''."""
    if math.isinf(value) or math.isnan(value):
        return str(value)
    if unit == "s":
        return ms(value) if abs(value) < 1 else f"{value:.2f} s"
    if unit == "ms":
        return ms(value)
    if unit == "B":
        return mb(value)
    if unit == "MB/s":
        return f"{value / 1e6:.0f} MB/s"
    if unit == "/s":
        return f"{value:,.0f}/s" if abs(value) >= 10 else f"{value:.2f}/s"
    if unit == "%":
        return f"{value:.3f} %"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:.3g}"


def fmt_summary(s: Summary, unit: str) -> str:
    """``median [min..max]`` (just the value when there was one sample)."""
    if s.n == 1:
        return fmt(s.median, unit)
    return f"{fmt(s.median, unit)} [{fmt(s.min, unit)}..{fmt(s.max, unit)}]"


@dataclass
class Row:
    """One printed line: a target's figure, its peer's figure from the same run, how they
    compare, the limit and the verdict (PASS, FAIL, INFO: report only, ERROR: could not
    be measured, with the reason in ``note``)."""

    target: str
    what: str
    measured: str = "-"
    peer: str = "-"
    compare: str = "-"
    limit: str = "-"
    verdict: str = INFO
    note: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        head = f"{self.target:<4} {self.what:<50} {self.measured:>32}"
        text = f"{head}  {self.peer:>28}  {self.compare:>11}  {self.limit:>12}  {self.verdict}"
        return f"{text}  {self.note}" if self.note else text


HEADER = (
    f"{'':<4} {'what':<50} {'measured: median [min..max]':>32}  {'peer, same run':>28}  "
    f"{'comparison':>11}  {'limit':>12}  verdict"
)


def compare_row(
    target: str,
    what: str,
    value: Summary,
    unit: str,
    peer_name: str,
    peer: Summary | None,
    *,
    kind: str,
    limit: float | None,
    raw: dict[str, Any] | None = None,
) -> Row:
    """A row comparing medians: ``kind`` 'over' (value - peer <= limit, a cost), 'ratio'
    (value / peer >= limit, a speed), 'ratio_max' (value / peer <= limit), 'max' (value
    <= limit, no peer needed), 'min' (value >= limit); ``limit`` None reports only."""
    measured = fmt_summary(value, unit)
    peer_text = f"{peer_name} {fmt(peer.median, unit)}" if peer is not None else peer_name or "-"
    compare, verdict, limit_text = "-", INFO, "-"
    figure: float | None = None
    if kind == "over" and peer is not None:
        figure = value.median - peer.median
        compare = "+" + fmt(figure, unit) if figure >= 0 else "-" + fmt(-figure, unit)
        if limit is not None:
            verdict, limit_text = at_most(figure, limit), "<= +" + fmt(limit, unit)
    elif kind in ("ratio", "ratio_max") and peer is not None:
        figure = ratio(value.median, peer.median)
        compare = fmt(figure, "x")
        if limit is not None:
            check = at_least if kind == "ratio" else at_most
            sign = ">=" if kind == "ratio" else "<="
            verdict, limit_text = check(figure, limit), f"{sign} {fmt(limit, 'x')}"
    elif kind == "max" and limit is not None:
        verdict, limit_text = at_most(value.median, limit), "<= " + fmt(limit, unit)
    elif kind == "min" and limit is not None:
        verdict, limit_text = at_least(value.median, limit), ">= " + fmt(limit, unit)
    elif kind in ("over", "ratio", "ratio_max"):
        verdict = ERROR if limit is not None else INFO
        compare = "no peer"
    data: dict[str, Any] = {"value": value.as_dict(), "unit": unit, "kind": kind, "limit": limit}
    if peer is not None:
        data["peer"] = {"name": peer_name, **peer.as_dict()}
    if figure is not None:
        data["comparison"] = figure
    data.update(raw or {})
    return Row(target, what, measured, peer_text, compare, limit_text, verdict, raw=data)
