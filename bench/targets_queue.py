"""Target 3: nothing grows with the queue. A service with N petitions queued (paused, so
they stay queued across a restart) next to an empty one, both filled and asked through the
installed ``orcha`` command."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from harness import Lab, Service, sampling, script_python
from stats import Row, compare_row, fmt, rate, summarize

Emit = Callable[[Row], None]

#: Petitions per array while filling (orcha's MAX_ARRAY_MEMBERS).
CHUNK = 10_000
#: Petitions per array when measuring the submit rate, and separate submits per repeat.
BATCH, SEPARATE = 1000, 5
#: The queue length of issue 14's target 3.
TARGET_QUEUED = 100_000
MB = 1_000_000


def _count_records(path: Any) -> int:
    """Records in ``orcha status --all --json`` output: a JSON list, an object holding
    one, or one object per line."""
    text = path.read_text()
    try:
        data = json.loads(text)
    except ValueError:
        return sum(1 for line in text.splitlines() if line.strip().startswith("{"))
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        return max((len(v) for v in lists), default=0)
    return len(data) if isinstance(data, list) else 0


def queue(lab: Lab, scale: Any, emit: Emit) -> None:
    """3: fill N queued through arrays; RSS live and after a restart; restart time; the
    submit rate against an empty service (interleaved); ``status`` default view and
    ``status --all --json`` with the service's RSS sampled during each."""
    n, o = scale.queued, lab.orcha_cmd
    env, empty_env = lab.env("queue"), lab.env("queue-empty")
    big = lab.serve("queue", "--max-running", "1", env=env)
    empty = lab.serve("queue-empty", "--max-running", "1", env=empty_env)
    for e in (env, empty_env):
        lab.run(o("pause", "--all"), e)  # kept across restarts: all stay queued
    idle = big.rss()
    start, filled, names = time.perf_counter(), 0, []
    with sampling(big.pid, 0.1) as fill:
        while filled < n:
            size = min(CHUNK, n - filled)
            names.append(f"f{filled}")
            argv = o("run", "--detach", "--array", f"1-{size}", names[-1], "--", "true")
            lab.run(argv, env, timeout=1800)
            filled += size
    took = time.perf_counter() - start
    emit(
        Row(
            "3",
            f"fill {n:,} queued via --array (setup)",
            measured=fmt(rate(n, took), "/s"),
            note=f"{took:.1f} s; RSS idle {idle / MB:.0f} MB, peak {fill.peak / MB:.0f} MB",
        )
    )
    live = summarize([big.rss()])
    row = compare_row(
        "3",
        f"service RSS, {n:,} queued, filled live",
        live,
        "B",
        "idle",
        summarize([idle]),
        kind="max",
        limit=150 * MB,
        raw={"fill_peak": fill.peak},
    )
    row.note = _extrapolated(idle, live.median, n)
    emit(row)
    _wait(lab, big, env, names, n, idle, emit)
    _submit_rates(lab, scale, big, empty, emit)
    _status(lab, scale, big, env, emit)
    _restart(lab, big, env, idle, n, emit)


def _wait(
    lab: Lab, big: Service, env: dict[str, str], names: list[str], n: int, idle: int, emit: Emit
) -> None:
    """``orcha wait`` on every queued array (it gives up after 1 s: nothing runs): the
    service's RSS during and after it (a waited-for member must not become a Job)."""
    argv = lab.orcha_cmd("wait", "--timeout", "1", *names)
    with sampling(big.pid, 0.05) as s:
        timed = lab.run(argv, env, check=False, timeout=600)
    time.sleep(1)  # the session has gone: what the service keeps
    after = big.rss()
    row = compare_row(
        "3",
        f"  service RSS after orcha wait on all {n:,} queued",
        summarize([after]),
        "B",
        "idle",
        summarize([idle]),
        kind="max",
        limit=150 * MB,
        raw={"peak": s.peak, "wall": timed.wall, "code": timed.code},
    )
    row.note = f"peak {s.peak / MB:.0f} MB; exit {timed.code} in {timed.wall:.1f} s"
    emit(row)


def _extrapolated(idle: float, rss: float, n: int) -> str:
    """For a scaled-down run: the RSS at the issue's 100,000 queued, growing linearly."""
    if n >= TARGET_QUEUED:
        return ""
    guess = idle + (rss - idle) * TARGET_QUEUED / n
    return f"scaled down: ~{guess / MB:.0f} MB at {TARGET_QUEUED:,} if linear"


def _submit_rates(lab: Lab, scale: Any, big: Service, empty: Service, emit: Emit) -> None:
    o = lab.orcha_cmd
    arrays: dict[str, list[float]] = {"big": [], "empty": []}
    single: dict[str, list[float]] = {"big": [], "empty": []}
    services = {"big": big, "empty": empty}
    # Short steps (a client's start is much of each): as many repeats as the short
    # targets. What a repeat queued in the empty service is cancelled and removed,
    # untimed, so that it stays empty (it would hold 15,000 by the end); the other one
    # keeps what was added (100,000 and more: never easier for it).
    for r in range(max(3, scale.repeats)):
        for which in ("big", "empty") if r % 2 else ("empty", "big"):
            env = services[which].env
            argv = o("run", "--detach", "--array", f"1-{BATCH}", f"m{r}", "--", "true")
            arrays[which].append(rate(BATCH, lab.run(argv, env).wall))
            separate = [f"one{r}-{i}" for i in range(SEPARATE)]
            walls = [lab.run(o("run", "--detach", i, "--", "true"), env).wall for i in separate]
            single[which].append(rate(SEPARATE, sum(walls)))
            if which == "empty":
                lab.run(o("cancel", f"m{r}", *separate), env)
                lab.run(o("clean"), env)
    queued = f"{scale.queued:,}"
    emit(
        compare_row(
            "3",
            f"submit rate at {queued} queued: arrays of {BATCH}",
            summarize(arrays["big"]),
            "/s",
            "empty",
            summarize(arrays["empty"]),
            kind="ratio",
            limit=0.9,
        )
    )
    emit(
        compare_row(
            "3",
            f"submit rate at {queued} queued: orcha run --detach",
            summarize(single["big"]),
            "/s",
            "empty",
            summarize(single["empty"]),
            kind="ratio",
            limit=0.9,
        )
    )


def _status(lab: Lab, scale: Any, big: Service, env: dict[str, str], emit: Emit) -> None:
    o = lab.orcha_cmd
    python = script_python(lab.orcha)
    walls, pythons, peaks = [], [], []
    before = big.rss()
    for _ in range(scale.heavy):
        pythons.append(lab.run([python, "-c", "pass"], env).wall)
        with sampling(big.pid, 0.01) as s:
            walls.append(lab.run(o("status"), env, timeout=300).wall)
        peaks.append(s.peak)
    records = f"{scale.queued:,}+ records"
    emit(
        compare_row(
            "3",
            f"orcha status (default view), {records}",
            summarize(walls),
            "s",
            "python",
            summarize(pythons),
            kind="max",
            limit=0.150,
            raw={"rss_peak": peaks, "rss_before": before},
        )
    )
    emit(Row("3", "  service RSS growth during it", measured=fmt(max(peaks) - before, "B")))
    out = lab.root / "status.json"
    walls, growth, counts = [], [], []
    for _ in range(scale.heavy):
        before = big.rss()
        with out.open("wb") as f, sampling(big.pid, 0.01) as s:
            walls.append(lab.run(o("status", "--all", "--json"), env, stdout=f, timeout=600).wall)
        growth.append(s.peak - before)
        counts.append(_count_records(out))
    size = out.stat().st_size
    out.unlink()
    emit(
        compare_row(
            "3",
            f"status --all --json, {counts[-1]:,} records",
            summarize(walls),
            "s",
            "",
            None,
            kind="max",
            limit=2.0,
            raw={"records": counts, "bytes": size},
        )
    )
    emit(
        compare_row(
            "3",
            "  service RSS growth during it",
            summarize(growth),
            "B",
            "",
            None,
            kind="max",
            limit=20 * MB,
        )
    )


def _restart(lab: Lab, big: Service, env: dict[str, str], idle: int, n: int, emit: Emit) -> None:
    o = lab.orcha_cmd
    empty_start = big.banner_seconds  # its first start, with nothing queued
    stopped = big.stop()
    start = time.perf_counter()
    big.start()
    lab.run(o("run", "--detach", "--hold", "probe", "--", "true"), env)
    ready = time.perf_counter() - start
    row = compare_row(
        "3",
        f"restart at {n:,} queued: start to a submit answered",
        summarize([ready]),
        "s",
        "",
        None,
        kind="max",
        limit=2.0,
        raw={"banner": big.banner_seconds, "stop": stopped, "empty_start": empty_start},
    )
    if n < TARGET_QUEUED:
        guess = empty_start + (ready - empty_start) * TARGET_QUEUED / n
        row.note = f"scaled down: ~{guess:.1f} s at {TARGET_QUEUED:,} if linear"
    emit(row)
    stop_text = "killed" if stopped is None else f"{stopped:.2f} s"
    emit(
        Row(
            "3",
            "  of which: banner printed",
            measured=fmt(big.banner_seconds, "s"),
            note=f"empty it started in {empty_start:.2f} s; the stop before: {stop_text}",
        )
    )
    time.sleep(1)  # what it holds once ready, not a transient of loading
    rss = big.rss()
    row = compare_row(
        "3",
        "service RSS after the restart",
        summarize([rss]),
        "B",
        "",
        None,
        kind="max",
        limit=150 * MB,
    )
    row.note = _extrapolated(idle, rss, n)
    emit(row)
