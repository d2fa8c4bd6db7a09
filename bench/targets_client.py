"""Targets 1 (client start-up) and 2 (1,000 petitions through the documented CLI)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness import Lab, Timed, interleave, script_python, tool, tsp_server
from stats import ERROR, FAIL, PASS, Row, compare_row, fmt, rate, ratio, summarize

Emit = Callable[[Row], None]


def startup(lab: Lab, scale: Any, emit: Emit) -> None:
    """1: ``orcha run x -- true`` end to end and its client CPU against ``python -c pass``
    (the Python the orcha script runs with); ``status``, ``wait``, ``cancel``; task-spooler
    and nq for reference; whether the installed script imports ``re``."""
    env = lab.env("startup")
    lab.serve("startup", "--max-running", "2", env=env)
    python = script_python(lab.orcha)
    o = lab.orcha_cmd
    # Warm the page cache and the service once, untimed.
    lab.run(o("run", "warm", "--", "true"), env)
    lab.run([python, "-c", "pass"], env)

    def cancel(r: int) -> Timed:
        lab.run(o("run", "--detach", "--hold", f"c{r}", "--", "true"), env)
        return lab.run(o("cancel", f"c{r}"), env)

    steps: dict[str, Callable[[int], Timed]] = {
        "python": lambda r: lab.run([python, "-c", "pass"], env),
        "run": lambda r: lab.run(o("run", f"s{r}", "--", "true"), env),
        "status": lambda r: lab.run(o("status"), env),
        "wait": lambda r: lab.run(o("wait", "warm"), env),
        "cancel": cancel,
    }
    peers: list[str] = []
    if shutil.which("tsp"):
        tsp, tsp_env = tsp_server(lab, env, "startup-tsp", 2)
        steps["tsp"] = lambda r: lab.run([tsp, "-f", "true"], tsp_env)
        peers.append("tsp")
    nq_env = dict(env, NQDIR=str(lab.dir("startup-nq")))
    if shutil.which("nq"):
        nq = tool("nq")

        def nq_submit_wait(r: int) -> Timed:
            first = lab.run([nq, "-q", "true"], nq_env)
            then = lab.run([nq, "-w"], nq_env)
            return Timed(first.wall + then.wall, first.cpu + then.cpu, then.code)

        steps["nq"] = nq_submit_wait
        peers.append("nq")
    got = interleave(scale.repeats, steps)
    wall = {k: summarize(t.wall for t in v) for k, v in got.items()}
    cpu = {k: summarize(t.cpu for t in v) for k, v in got.items()}
    raw = {k: [(t.wall, t.cpu) for t in v] for k, v in got.items()}
    what = "orcha run x -- true, wall"
    emit(
        compare_row(
            "1",
            what,
            wall["run"],
            "s",
            "python",
            wall["python"],
            kind="over",
            limit=0.015,
            raw={"samples": raw},
        )
    )
    emit(
        compare_row(
            "1",
            "orcha run x -- true, client CPU",
            cpu["run"],
            "s",
            "python",
            cpu["python"],
            kind="over",
            limit=0.012,
        )
    )
    for name in ("status", "wait", "cancel"):
        emit(
            compare_row(
                "1",
                f"orcha {name}, wall (the issue's click-based commands)",
                wall[name],
                "s",
                "python",
                wall["python"],
                kind="over",
                limit=0.040,
            )
        )
    for peer in ("tsp", "nq"):
        label = {"tsp": "tsp -f true", "nq": "nq + nq -w"}[peer]
        if peer in peers:
            emit(
                compare_row(
                    "1",
                    f"orcha run x -- true vs {label}",
                    wall["run"],
                    "s",
                    peer,
                    wall[peer],
                    kind="ratio_max",
                    limit=None,
                )
            )
        else:
            emit(
                Row(
                    "1",
                    f"orcha run x -- true vs {label}",
                    verdict=ERROR,
                    note=f"{peer} is not installed",
                )
            )
    emit(_imports(lab, env))


def _imported(argv: list[str], env: dict[str, str]) -> tuple[int, set[str]]:
    """The modules ``argv`` imports, from Python's own import trace (PYTHONPROFILEIMPORTTIME
    reaches the script's Python whatever its shebang): (exit code, module names)."""
    done = subprocess.run(
        argv,
        env=dict(env, PYTHONPROFILEIMPORTTIME="1"),
        capture_output=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    names = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.decode(errors="replace").splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    return done.returncode, names - {"imported package"}  # minus the trace's header


def _imports(lab: Lab, env: dict[str, str]) -> Row:
    """Whether ``orcha run`` as installed imports ``re`` (through its wrapper or anything
    else), and how many modules it imports next to ``python -c pass``."""
    what = "installed `orcha run` imports re"
    code, names = _imported(lab.orcha_cmd("run", "imports", "--", "true"), env)
    _, python = _imported([script_python(lab.orcha), "-c", "pass"], env)
    if code != 0 or not names:
        return Row("1", what, verdict=ERROR, note=f"exit {code}, no import trace")
    heavy = sorted(names & {"re", "typing", "json", "_hashlib", "click", "rich", "enum"})
    return Row(
        "1",
        what,
        measured=f"{'yes' if 're' in names else 'no'}, {len(names)} modules",
        peer=f"python {len(python)} modules",
        limit="no",
        verdict=FAIL if "re" in names else PASS,
        note=f"of note: {', '.join(heavy) or 'none'}",
        raw={"modules": sorted(names), "python_modules": sorted(python)},
    )


def petitions(lab: Lab, scale: Any, emit: Emit) -> None:
    """2: an array of N ``true`` then ``orcha wait`` on it against N ``tsp true`` then
    ``tsp -w`` through ``tsp -S 2`` (rates), and against N ``subprocess.run(["true"])``
    in a Python loop (report only: what running ``true`` one at a time costs here); the
    service's CPU per petition; N separate ``orcha run --detach`` calls interleaved with
    N ``python -c pass`` (report only)."""
    n = scale.petitions
    env = lab.env("petitions")
    service = lab.serve("petitions", "--max-running", "2", env=env)
    o = lab.orcha_cmd
    cpu_per: list[float] = []

    def orcha_array(r: int) -> float:
        before = service.cpu()
        t = lab.run(o("run", "--detach", "--array", f"1-{n}", f"a{r}", "--", "true"), env)
        t2 = lab.run(o("wait", f"a{r}"), env)
        cpu_per.append((service.cpu() - before) / n)
        lab.run(o("clean"), env)  # untimed: each repeat starts with no ended records
        return rate(n, t.wall + t2.wall)

    steps: dict[str, Callable[[int], float]] = {"orcha": orcha_array}
    tsp = shutil.which("tsp")
    if tsp:
        tsp, tsp_env = tsp_server(lab, env, "petitions-tsp", 2)

        def tsp_batch(r: int) -> float:
            start = time.perf_counter()
            last = ""
            for _ in range(n):
                last = lab.output([tsp, "true"], tsp_env).strip()
            lab.run([tsp, "-w", last], tsp_env, check=False)
            took = time.perf_counter() - start
            lab.run([tsp, "-C"], tsp_env)
            return rate(n, took)

        steps["tsp"] = tsp_batch

    def python_loop(r: int) -> float:
        # The reference of what running `true` costs here: Python alone, one at a time.
        # Not lab.output: its timeout makes Popen.wait poll with sleeps, which measured
        # 620/s where a blocking wait runs 1,500/s (tsp's client, slower itself, moved
        # little: 703-717/s against 683-741/s).
        start = time.perf_counter()
        for _ in range(n):
            subprocess.run(["true"], env=env, stdin=subprocess.DEVNULL, capture_output=True)
        return rate(n, time.perf_counter() - start)

    steps["python"] = python_loop
    xargs = shutil.which("xargs")
    if xargs:
        numbers = lab.root / "petitions-numbers"
        numbers.write_text("".join(f"{i}\n" for i in range(n)))

        def xargs_pool(r: int) -> float:
            # The machine's ceiling for N `true`, two at a time: C, no queue, no records.
            with numbers.open("rb") as lines:
                t = lab.run([xargs, "-P", "2", "-n", "1", "true"], env, stdin=lines)
            return rate(n, t.wall)

        steps["xargs"] = xargs_pool
    got = interleave(scale.heavy, steps)
    what = f"{n:,} petitions: --array + wait, rate"
    orcha_rate = summarize(got["orcha"])
    if tsp:
        emit(
            compare_row(
                "2",
                what,
                orcha_rate,
                "/s",
                "tsp -S 2",
                summarize(got["tsp"]),
                kind="ratio",
                limit=2.0,
            )
        )
    else:
        emit(
            Row(
                "2",
                what,
                measured=f"{orcha_rate.median:,.0f}/s",
                verdict=ERROR,
                note="tsp is not installed: no peer",
            )
        )
    emit(
        compare_row(
            "2",
            "  the array vs subprocess.run(true), serial",
            orcha_rate,
            "/s",
            "python",
            summarize(got["python"]),
            kind="ratio",
            limit=None,
        )
    )
    if xargs:
        ceiling = summarize(got["xargs"])
        row = compare_row(
            "2",
            "  the array vs xargs -P 2 true (C, no queue)",
            orcha_rate,
            "/s",
            "xargs",
            ceiling,
            kind="ratio",
            limit=None,
        )
        if tsp:
            # What target 2 asks, as a share of that ceiling: 2x tsp / xargs.
            tsp_share = ratio(summarize(got["tsp"]).median, ceiling.median)
            note = f"tsp at {fmt(tsp_share, 'x')} of it: 2x tsp is {fmt(2 * tsp_share, 'x')}"
            row = replace(row, note=note)
        emit(row)
    emit(
        compare_row(
            "2",
            "service CPU per petition",
            summarize(cpu_per),
            "ms",
            "",
            None,
            kind="max",
            limit=0.001,
        )
    )
    _detached(lab, scale, env, emit)
    _crowded(lab, scale, env, emit)


#: Idle processes started for the crowded-host line (a shared host has thousands).
CROWD = 1000


def _crowded(lab: Lab, scale: Any, env: dict[str, str], emit: Emit) -> None:
    """Report only: the array rate of a service without cgroups (``isolation: none``,
    where it tracks processes through /proc) with CROWD idle processes on the host, next
    to the cgroup service of target 2 on the same crowded host, interleaved."""
    n = scale.petitions
    what = f"{n:,} petitions, isolation none, {CROWD:,} idle processes"
    tracked_env = lab.env("petitions-none")
    config = Path(tracked_env["XDG_CONFIG_HOME"]) / "orcha"
    config.mkdir(parents=True)
    (config / "config.yaml").write_text("isolation: none\n")
    lab.serve("petitions-none", "--max-running", "2", env=tracked_env)
    o = lab.orcha_cmd
    if _in_cgroup(lab, tracked_env):
        emit(Row("2", what, verdict=ERROR, note="the service gave the petition a cgroup"))
        return
    crowd = [
        subprocess.Popen(["sleep", "3600"], env=lab.base_env, stdin=subprocess.DEVNULL)
        for _ in range(CROWD)
    ]
    try:

        def array(e: dict[str, str]) -> Callable[[int], float]:
            def step(r: int) -> float:
                t = lab.run(o("run", "--detach", "--array", f"1-{n}", f"x{r}", "--", "true"), e)
                t2 = lab.run(o("wait", f"x{r}"), e)
                lab.run(o("clean"), e)
                return rate(n, t.wall + t2.wall)

            return step

        got = interleave(scale.heavy, {"none": array(tracked_env), "cgroup": array(env)})
    finally:
        for proc in crowd:
            proc.kill()
        for proc in crowd:
            proc.wait()
    isolation = "cgroups" if _in_cgroup(lab, env) else "no cgroups either"
    emit(
        compare_row(
            "2",
            what,
            summarize(got["none"]),
            "/s",
            f"{isolation}, same host",
            summarize(got["cgroup"]),
            kind="ratio",
            limit=None,
        )
    )


def _in_cgroup(lab: Lab, env: dict[str, str]) -> bool:
    """Whether the service of ``env`` runs each petition in a cgroup of its own."""
    where = lab.output(lab.orcha_cmd("run", "where", "--", "cat", "/proc/self/cgroup"), env)
    lab.run(lab.orcha_cmd("clean"), env)
    return "orcha-p-" in where


def _detached(lab: Lab, scale: Any, env: dict[str, str], emit: Emit) -> None:
    n = scale.detached
    python = script_python(lab.orcha)
    orcha_times: list[float] = []
    python_times: list[float] = []
    for i in range(n):
        submit = lab.orcha_cmd("run", "--detach", f"d{i}", "--", "true")
        if i % 2:
            orcha_times.append(lab.run(submit, env).wall)
        python_times.append(lab.run([python, "-c", "pass"], env).wall)
        if not i % 2:
            orcha_times.append(lab.run(submit, env).wall)
    wait = lab.run(lab.orcha_cmd("wait", "--all"), env).wall
    orcha = summarize([rate(n, sum(orcha_times) + wait)])
    peer = summarize([rate(n, sum(python_times))])
    emit(
        compare_row(
            "2",
            f"{n:,} x orcha run --detach, then wait --all",
            orcha,
            "/s",
            "python -c pass",
            peer,
            kind="ratio",
            limit=None,
        )
    )
