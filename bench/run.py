"""orcha's benchmark: every target of issue 14, measured through the installed ``orcha``
command against its peer in the same run, with PASS/FAIL.

Run it with any Python that has psutil (the project's venv has it)::

    .venv/bin/python bench/run.py --quick          # a minute or two, scaled down
    .venv/bin/python bench/run.py --json out.json  # the full run, raw numbers to a file
    .venv/bin/python bench/run.py --only refill --orcha /path/to/venv/bin/orcha

Without ``--orcha`` it builds a fresh venv in its temporary directory with a regular (not
editable) ``pip install`` of ``--tree`` (default: the tree this file is in), as users get
orcha. Every target starts its own ``orcha serve`` in a private directory; at the end (or
on Ctrl+C) every service is stopped and anything still carrying the run's mark in its
environment is killed by PID. Peers (task-spooler ``tsp``, ``nq``, ``python -c pass``,
``cat | cat``, a shell loop) run interleaved with orcha, in the same run. Exit status: 0
if every verdict is PASS (or report-only), 1 if one is FAIL or ERROR, 130 on Ctrl+C.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))

import targets_client
import targets_process
import targets_queue
from harness import Lab, StepError, describe, install
from stats import ERROR, FAIL, HEADER, PASS, Row, top_frames


@dataclass(frozen=True)
class Scale:
    """How much each target does: the full figures of the issue, or scaled down."""

    repeats: int  # interleaved repeats of each A/B pair
    heavy: int  # repeats of the long steps: arrays of 1,000, streams, status at N records
    petitions: int  # target 2: petitions per array / tsp batch
    detached: int  # target 2: separate 'orcha run --detach' calls (report only)
    queued: int  # target 3: petitions queued
    stream_bytes: int  # target 4: file size
    refill: int  # target 5: petitions per repeat
    idle_seconds: float  # target 6: seconds per phase


FULL = Scale(
    repeats=15,
    heavy=5,
    petitions=1000,
    detached=1000,
    queued=100_000,
    stream_bytes=1 << 30,
    refill=200,
    idle_seconds=30.0,
)
QUICK = Scale(
    repeats=5,
    heavy=3,
    petitions=1000,
    detached=20,
    queued=10_000,
    stream_bytes=100 << 20,
    refill=50,
    idle_seconds=5.0,
)

#: A target: its name for --only, its number in the issue, and the function measuring it,
#: which yields rows. Issue 15's Dask benchmark adds its own entry here.
Measure = Callable[[Lab, Scale, Callable[[Row], None]], None]
TARGETS: list[tuple[str, str, Measure]] = [
    ("startup", "1", targets_client.startup),
    ("petitions", "2", targets_client.petitions),
    ("queue", "3", targets_queue.queue),
    ("streaming", "4", targets_process.streaming),
    ("refill", "5", targets_process.refill),
    ("idle", "6", targets_process.idle),
]


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="scaled down: a minute or two")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this target")
    parser.add_argument("--json", metavar="FILE", help="write every row's raw numbers here")
    parser.add_argument("--orcha", metavar="PATH", help="an installed orcha script to measure")
    parser.add_argument("--tree", metavar="DIR", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--repeats", type=int, help="interleaved repeats (overrides the mode)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="sample every service with py-spy (slows it: take figures from a run without)",
    )
    args = parser.parse_args(argv)
    names = {n for name, number, _ in TARGETS for n in (name, number)}
    for name in args.only or ():
        if name not in names:
            parser.error(f"--only {name}: not a target (one of {', '.join(sorted(names))})")
    profile = Path(args.profile).resolve() if args.profile else None
    if profile is not None:
        if not (shutil.which("py-spy") or Path(sys.executable).with_name("py-spy").exists()):
            parser.error("--profile needs py-spy (pip install py-spy into this Python's venv)")
        profile.mkdir(parents=True, exist_ok=True)
    scale = QUICK if args.quick else FULL
    if args.repeats:
        scale = Scale(**{**asdict(scale), "repeats": args.repeats, "heavy": args.repeats})
    signal.signal(signal.SIGTERM, _interrupt)

    rows: list[Row] = []

    def emit(row: Row) -> None:
        rows.append(row)
        print(row.line(), flush=True)

    began = time.monotonic()
    lab: Lab | None = None
    interrupted = False
    try:
        orcha = args.orcha
        if orcha is None:
            print(f"installing {args.tree} {_commit(args.tree)} into a fresh venv (pip install .)")
            venv = Path(os.environ.get("TMPDIR", "/tmp")) / f"orcha-bench-venv-{os.getpid()}"
            try:
                orcha = install(Path(args.tree), venv)
            except (StepError, subprocess.SubprocessError) as e:
                print(f"bench: {e}", file=sys.stderr)
                return 1
        lab = Lab(orcha, keep=args.keep, profile=profile)
        _preamble(lab, args, scale)
        print(HEADER, flush=True)
        for name, number, measure in TARGETS:
            if args.only and name not in args.only and number not in args.only:
                continue
            began_target = time.monotonic()
            try:
                measure(lab, scale, emit)
            except StepError as e:
                emit(Row(number, f"{name}: could not finish", verdict=ERROR, note=str(e)))
            except Exception as e:  # a bug of the bench itself: say where, go on
                where = traceback.extract_tb(e.__traceback__)[-1]
                note = f"{type(e).__name__}: {e} ({Path(where.filename).name}:{where.lineno})"
                emit(Row(number, f"{name}: bench error", verdict=ERROR, note=note))
            print(f"     ({name}: {time.monotonic() - began_target:.0f} s)", flush=True)
            _profiles(lab.stop_services())
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping everything this run started", flush=True)
    finally:
        # A second Ctrl+C must not cut the clean-up short (each stop is bounded).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        left = lab.close() if lab is not None else []
        if args.orcha is None and "venv" in locals():
            shutil.rmtree(venv, ignore_errors=True)
    elapsed = time.monotonic() - began
    _summary(rows, elapsed, left)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "mode": "quick" if args.quick else "full",
                    "scale": asdict(scale),
                    "orcha": lab.orcha if lab else None,
                    "seconds": elapsed,
                    "rows": [asdict(r) for r in rows],
                },
                f,
                indent=1,
            )
    if interrupted:
        return 130
    return 0 if all(r.verdict not in (FAIL, ERROR) for r in rows) else 1


def _profiles(paths: list[Path]) -> None:
    """Say what dominated each profiled service's CPU (its top-of-stack functions)."""
    for path in paths:
        try:
            top = top_frames(path.read_text())
        except OSError:
            print(f"     profile {path}: not written", flush=True)
            continue
        shares = "; ".join(f"{share:.0%} {name}" for name, share in top)
        print(f"     profile {path.name}: {shares or 'no samples'}", flush=True)


def _commit(tree: str) -> str:
    """The tree's git commit (and whether it has uncommitted changes), or ''."""
    try:
        head = subprocess.run(
            ["git", "-C", tree, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", tree, "status", "--porcelain", "-uno"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"(commit {head}{', with uncommitted changes' if dirty else ''})" if head else ""


def _preamble(lab: Lab, args: argparse.Namespace, scale: Scale) -> None:
    mode = "full"
    if args.quick:
        mode = (
            f"QUICK, scaled down: {scale.queued:,} queued instead of {FULL.queued:,}, "
            f"{scale.stream_bytes >> 20} MiB instead of {FULL.stream_bytes >> 20} MiB, "
            f"{scale.detached} separate submits instead of {FULL.detached}, "
            f"{scale.repeats} repeats instead of {FULL.repeats} ({scale.heavy} of long steps "
            f"instead of {FULL.heavy}), "
            f"{scale.idle_seconds:.0f} s idle phases instead of {FULL.idle_seconds:.0f} s"
        )
    print(f"orcha benchmark ({mode})")
    print(f"  measuring {describe(lab.orcha)}")
    print(f"  {platform.node()}: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, {lab.root}")
    print(f"  figures: median [min..max] over interleaved repeats; {time.strftime('%F %T %Z')}")


def _summary(rows: list[Row], elapsed: float, left: list[str]) -> None:
    print(f"\nsummary ({elapsed:.0f} s):", flush=True)
    print(HEADER)
    for row in rows:
        print(row.line())
    counts = {v: sum(r.verdict == v for r in rows) for v in (PASS, FAIL, ERROR)}
    print(f"{counts[PASS]} PASS, {counts[FAIL]} FAIL, {counts[ERROR]} ERROR", end="")
    killed = ", ".join(left) or "none"
    print(f"; processes killed after stopping the services: {killed}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
