"""Targets 4 (streaming), 5 (refill, from the petitions' own timestamps) and 6 (idle)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
from harness import Lab, Service, StepError, interleave, sampling, tool, wait_with_cpu
from stats import ERROR, FAIL, Row, compare_row, parse_stamps, refill_gaps, summarize

Emit = Callable[[Row], None]
MB = 1_000_000


# -- 4: streaming ----------------------------------------------------------------------------
def _make_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes (a new random MiB each MiB); their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(0, size, 1 << 20):
            block = os.urandom(min(1 << 20, size - f.tell()))
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def _drain(
    procs: Sequence[subprocess.Popen[bytes]], hashing: bool, delay: float = 0.0
) -> tuple[int, str]:
    """Read the last of ``procs``'s stdout, if it is a pipe, to its end (after ``delay``
    seconds: a slow reader), counting and, if ``hashing``, hashing it; wait for all.
    (bytes, sha256 or ''); StepError if one exits non-zero or runs over 10 minutes."""
    if delay:
        time.sleep(delay)
    out, total = procs[-1].stdout, 0
    digest = hashlib.sha256() if hashing else None
    if out is not None:
        while chunk := os.read(out.fileno(), 1 << 20):
            total += len(chunk)
            if digest is not None:
                digest.update(chunk)
        out.close()
    for p in procs:
        code, _ = wait_with_cpu(p, 600)
        if code != 0:
            raise StepError(f"{p.args!r} exited {code}")
    return total, digest.hexdigest() if digest else ""


def streaming(lab: Lab, scale: Any, emit: Emit) -> None:
    """4: ``orcha run -- cat FILE`` against ``cat FILE | cat``, interleaved, both writing
    to /dev/null as in a shell (a reader here would be a third process on the cores and cap
    both); then one run of each read and hashed by this process for the byte check; the
    service's RSS sampled throughout, and with a reader that starts 5 s late."""
    size = scale.stream_bytes
    path = lab.root / "stream.bin"
    expected = _make_file(path, size)
    env = lab.env("streaming")
    service = lab.serve("streaming", "--max-running", "2", env=env)
    o = lab.orcha_cmd
    pipe, null = subprocess.PIPE, subprocess.DEVNULL

    def orcha(name: str, out: int = pipe) -> list[subprocess.Popen[bytes]]:
        argv = o("run", name, "--", "cat", str(path))
        return [subprocess.Popen(argv, env=env, stdout=out, stdin=null)]

    def cat_cat(name: str, out: int = pipe) -> list[subprocess.Popen[bytes]]:
        first = subprocess.Popen(["cat", str(path)], env=env, stdout=pipe)
        second = subprocess.Popen(["cat"], env=env, stdin=first.stdout, stdout=out)
        assert first.stdout is not None
        first.stdout.close()
        return [first, second]

    rates: dict[str, list[float]] = {"orcha": [], "cat": []}
    peaks = []
    for r in range(scale.heavy):
        for which in ("orcha", "cat") if r % 2 else ("cat", "orcha"):
            with sampling(service.pid, 0.05) as s:
                start = time.perf_counter()
                _drain(orcha(f"c{r}", null) if which == "orcha" else cat_cat("", null), False)
                rates[which].append(size / (time.perf_counter() - start))
            if which == "orcha":
                peaks.append(s.peak)
    hashed: dict[str, str] = {}
    short = []
    for which, begin in (("orcha", orcha), ("cat", cat_cat)):
        total, hashed[which] = _drain(begin("hashed"), hashing=True)
        if total != size:
            short.append(f"{which} gave {total:,} of {size:,} bytes")
    mib = f"{size >> 20} MiB"
    row = compare_row(
        "4",
        f"{mib} through orcha run -- cat FILE",
        summarize(rates["orcha"]),
        "MB/s",
        "cat | cat",
        summarize(rates["cat"]),
        kind="ratio",
        limit=0.6,
        raw={"rss_peaks": peaks, "sha256": hashed, "expected": expected},
    )
    bad = [w for w, h in hashed.items() if h != expected] + short
    if bad:
        row.verdict, row.note = FAIL, f"bytes differ: {', '.join(bad)}"
    else:
        row.note = f"sha256 equal (both); service RSS peak {max(peaks) / MB:.0f} MB"
    emit(row)
    with sampling(service.pid, 0.02) as s:
        total, digest = _drain(orcha("slow"), hashing=True, delay=5.0)
    row = compare_row(
        "4",
        f"  service RSS peak, reader 5 s late ({mib})",
        summarize([s.peak]),
        "B",
        "",
        None,
        kind="max",
        limit=100 * MB,
    )
    if digest != expected:
        row.verdict, row.note = FAIL, f"bytes differ ({total} of {size})"
    else:
        row.note = "sha256 equal"
    emit(row)
    path.unlink()


# -- 5: refill -------------------------------------------------------------------------------
STAMP_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
static void stamp(int fd, char what) {
    struct timespec t;
    char line[64];
    clock_gettime(CLOCK_REALTIME, &t);
    int n = snprintf(line, sizeof line, "%c %lld.%09ld\n", what, (long long)t.tv_sec, t.tv_nsec);
    if (write(fd, line, n) != n) _exit(1);
}
int main(int argc, char **argv) {
    int fd = argc > 1 ? open(argv[1], O_WRONLY | O_APPEND | O_CREAT, 0644) : -1;
    if (fd < 0) return 2;
    stamp(fd, 's');
    stamp(fd, 'e');
    return 0;
}
"""
STAMP = (
    "#!{bash}\n"
    'printf "s %s\\n" "$EPOCHREALTIME" >> "$1"\n'
    'printf "e %s\\n" "$EPOCHREALTIME" >> "$1"\n'
)


def _stamper(work: Path, bash: str) -> tuple[Path, str]:
    """The program each petition runs: a static C one if a compiler is here (its exec is
    the least a process start can cost, so the gaps are the launcher's), else a bash
    script; (its path, what it is)."""
    source, stamp = work / "stamp.c", work / "stamp"
    source.write_text(STAMP_C)
    for flags in (["-static"], []):
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            break
        argv = [cc, "-O2", *flags, "-o", str(stamp), str(source)]
        if subprocess.run(argv, capture_output=True, timeout=120).returncode == 0:
            return stamp, "C, static" if flags else "C"
    stamp.write_text(STAMP.format(bash=bash))
    stamp.chmod(stamp.stat().st_mode | stat.S_IXUSR)
    return stamp, "bash"


def refill(lab: Lab, scale: Any, emit: Emit) -> None:
    """5: one slot, N petitions each appending its first and last act's time to a file
    (bash's $EPOCHREALTIME: no process forked for it); the gap from one's end to the
    next's start, for orcha (an array behind a blocker), a shell loop and nq."""
    bash, n, o = tool("bash"), scale.refill, lab.orcha_cmd
    work = lab.dir("refill")
    stamp, how = _stamper(work, bash)
    env = lab.env("refill")
    lab.serve("refill", "--max-running", "1", env=env)

    def blocker(go: Path) -> list[str]:
        return [bash, "-c", f"while [ ! -e {go} ]; do sleep 0.01; done"]

    def with_orcha(r: int) -> Path:
        out, go = work / f"orcha-{r}", work / f"go-o{r}"
        lab.run(o("run", "--detach", f"b{r}", "--", *blocker(go)), env)
        lab.run(o("run", "--detach", "--array", f"1-{n}", f"r{r}", "--", str(stamp), str(out)), env)
        go.touch()
        lab.run(o("wait", f"r{r}"), env)
        return out

    def with_shell(r: int) -> Path:
        out = work / f"shell-{r}"
        lab.run([bash, "-c", f"for i in $(seq {n}); do {stamp} {out}; done"], env)
        return out

    def with_nq(r: int) -> Path:
        nq, out, go = tool("nq"), work / f"nq-{r}", work / f"go-n{r}"
        nq_env = dict(env, NQDIR=str(lab.dir(f"nq-{r}")))
        lab.run([nq, "-q", *blocker(go)], nq_env)
        for _ in range(n):
            lab.run([nq, "-q", str(stamp), str(out)], nq_env)
        go.touch()
        lab.run([nq, "-w"], nq_env)
        return out

    ways: dict[str, Callable[[int], Path]] = {"orcha": with_orcha, "shell": with_shell}
    try:
        tool("nq")
        ways["nq"] = with_nq
    except StepError as e:
        emit(Row("5", "refill: nq", verdict=ERROR, note=str(e)))

    def median_gap(name: str) -> Callable[[int], float]:
        def measure(r: int) -> float:
            pairs = parse_stamps(ways[name](r).read_text())
            if len(pairs) != n:
                raise StepError(f"{name}: {len(pairs)} of {n} petitions wrote their times")
            return summarize(refill_gaps(pairs)).median

        return measure

    medians = interleave(scale.repeats, {name: median_gap(name) for name in ways})
    value = summarize(medians["orcha"])
    raw = {"per_repeat_medians": medians}
    row = compare_row(
        "5",
        "freed slot -> next process, median",
        value,
        "ms",
        "shell loop",
        summarize(medians["shell"]),
        kind="max",
        limit=0.0015,
        raw=raw,
    )
    row.note = f"each petition: {how}"
    emit(row)
    for peer in [k for k in ways if k != "orcha"]:
        emit(
            compare_row(
                "5",
                f"  orcha vs {peer}",
                value,
                "ms",
                peer,
                summarize(medians[peer]),
                kind="ratio_max",
                limit=None,
            )
        )


# -- 6: idle ---------------------------------------------------------------------------------
def _sched(pid: int) -> tuple[float, int]:
    """(CPU seconds, times scheduled onto a CPU) of the process's threads, summed from
    /proc/PID/task/*/schedstat (nanoseconds: finer than cpu_times' 10 ms ticks, which
    over a few idle seconds cannot tell 0 % from 0.2 %); psutil's figures without it."""
    cpu, wakeups = 0, 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        proc = psutil.Process(pid)
        times, switches = proc.cpu_times(), proc.num_ctx_switches()
        return times.user + times.system, switches.voluntary + switches.involuntary
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                fields = f.read().split()
            cpu, wakeups = cpu + int(fields[0]), wakeups + int(fields[2])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return cpu / 1e9, wakeups


def _phase(service: Service, seconds: float) -> tuple[float, float]:
    """(CPU %, wakeups per second) of the serving process over ``seconds``."""
    (cpu, wake), start = _sched(service.pid), time.perf_counter()
    time.sleep(seconds)
    took = time.perf_counter() - start
    cpu2, wake2 = _sched(service.pid)
    return (cpu2 - cpu) / took * 100, (wake2 - wake) / took


def idle(lab: Lab, scale: Any, emit: Emit) -> None:
    """6: the service's CPU and wakeups over idle seconds with nothing queued, then with
    one petition queued waiting for more memory than is free (the memory predicate is
    volatile: rechecked on a timer)."""
    env, o, seconds = lab.env("idle"), lab.orcha_cmd, scale.idle_seconds
    service = lab.serve("idle", "--max-running", "1", env=env)
    lab.run(o("run", "warm", "--", "true"), env)
    time.sleep(2)  # past the start's own bookkeeping
    cpu, wake = _phase(service, seconds)
    emit(
        compare_row(
            "6",
            f"idle CPU over {seconds:.0f} s",
            summarize([cpu]),
            "%",
            "",
            None,
            kind="max",
            limit=0.01,
            raw={"wakeups_per_s": wake},
        )
    )
    emit(Row("6", "  idle wakeups", measured=f"{wake:.2f}/s"))
    total = psutil.virtual_memory().total
    need = f"{total >> 20}M"  # all of it: never free while this service runs
    lab.run(o("run", "--detach", "--mem", need, "memwait", "--", "true"), env)
    time.sleep(1)
    shown = json.loads(lab.output(o("status", "memwait", "--json"), env))["petitions"]
    mem_cpu, mem_wake = _phase(service, seconds)
    still = lab.run(o("cancel", "memwait"), env, check=False).code == 0
    what = f"waiting on --mem {need}: wakeups over idle"
    row = compare_row(
        "6",
        what,
        summarize([mem_wake]),
        "/s",
        "idle",
        summarize([wake]),
        kind="max",
        limit=None,
        raw={"cpu_percent": mem_cpu},
    )
    extra = mem_wake - wake
    row.compare = f"+{extra:.2f}/s"
    row.limit = "<= +1.5/s"
    row.verdict = "PASS" if extra <= 1.5 else FAIL
    row.note = f"CPU {mem_cpu:.3f} %"
    if not still or not shown or shown[0].get("state") != "QUEUED":
        row.verdict, row.note = ERROR, "the petition did not stay queued"
    else:
        row.note += f"; status: {shown[0].get('waiting')}"
    emit(row)
