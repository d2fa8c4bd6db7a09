"""orcha soak: minutes of mixed use from many clients against one real service.

Run it with the Python of the venv orcha is installed in (it runs the ``orcha`` script
beside that Python, the command users type)::

    .venv/bin/python bench/soak.py --minutes 30 --clients 8 --json soak.json

In a private temporary directory it starts ``orcha serve`` and, from ``--clients``
threads, runs for ``--minutes`` a random mix of: detached submits, attached runs, cancels,
Ctrl+C (a real SIGINT, at its default disposition, to an attached ``orcha run`` once its
petition has started), ``status``, ``follow``, ``watch`` and ``clean``. Every petition
appends its ID to a file as its first act, so a petition that ran twice shows.

Every ``--every`` seconds it prints the service's RSS, open descriptors and threads (and
its guard's RSS if it has one), the operations and errors so far, and the queue. At the
end it prints, and with ``--json FILE`` writes: operations by kind, errors (with the first
few), petitions acknowledged, lost (acknowledged, yet no record and never seen ended),
ran twice, processes left behind after the service stopped, the RSS slope over the last
half (least squares, kB/min), descriptors and threads from start to end, and how long the
service took to stop on SIGTERM. It exits 1 if any error, loss, double run or leftover was
found. Whatever it started (service, clients, petitions) is stopped by PID at the end,
also on Ctrl+C or SIGTERM.

What counts as an error: a command that prints a traceback or an internal error, exits
with a code its operation never should (a detached submit that is not acknowledged, a
run that does not succeed, a Ctrl+C that does not exit 130...), or does not end within
``--op-timeout`` seconds.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from common import orcha_command, private_env

MARK_VAR = "ORCHA_SOAK_MARK"  # in the environment of everything the soak starts
# (operation, weight): how often each is picked.
MIX = [
    ("submit", 30),
    ("run", 12),
    ("cancel", 8),
    ("ctrl_c", 5),
    ("status", 15),
    ("follow", 8),
    ("watch", 6),
    ("clean", 3),
]
# Exit codes each operation may end with (orcha.errors.ExitCode): anything else is an error.
OK_CODES = {
    "submit": {0},
    "run": {0},
    "cancel": {0, 209},  # 209: it had already ended
    "ctrl_c": {130},
    "status": {0, 209},  # 209: cleaned meanwhile
    "follow": {0, 130, 207, 209},  # the petition's own end: succeeded, interrupted...
    "watch": {0, 209},
    "clean": {0},
}
FINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "INTERRUPTED"}
ERROR_SIGNS = ("Traceback", "internal error")
SWEEP_SECONDS = 3.0  # how often all records are read (to see ends before they are cleaned)


class Soak:
    """One soak run: the service, the clients, and what they saw."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.orcha = orcha_command()
        self.root, env = private_env("orcha-soak-")
        self.mark = os.urandom(6).hex()
        self.env = {**env, MARK_VAR: self.mark, "PYTHONUNBUFFERED": "1"}
        self.env.pop("ORCHA_CONFIG", None)
        self.env["XDG_CONFIG_HOME"] = str(self.root / "config")  # never the user's config
        self.ran_file = self.root / "ran.txt"
        self.stop = threading.Event()  # set at the end of the time, or on Ctrl+C/SIGTERM
        self.lock = threading.Lock()
        self.ops: collections.Counter[str] = collections.Counter()
        self.errors: list[str] = []
        self.acked: set[str] = set()
        self.detached: list[str] = []  # acknowledged detached petitions, newest last
        self.seen_final: set[str] = set()
        self.children: set[subprocess.Popen[bytes]] = set()  # live client processes
        self.service: subprocess.Popen[bytes] | None = None
        self.service_pid: int | None = None
        self.guard_pid: int | None = None
        self.samples: list[dict[str, Any]] = []
        self.queue_counts: dict[str, int] = {}
        self.t0 = time.monotonic()

    # -- the service ------------------------------------------------------------------------
    def start_service(self) -> None:
        err = open(self.root / "service.err", "wb")  # noqa: SIM115 - kept for the run
        env = dict(self.env)
        if self.args.tracemalloc:  # the service alone loads bench/tracemalloc_hook
            Path(self.args.tracemalloc).mkdir(parents=True, exist_ok=True)
            hook = str(Path(__file__).resolve().parent / "tracemalloc_hook")
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [hook, env.get("PYTHONPATH")]))
            env["ORCHA_SOAK_TRACEMALLOC"] = str(Path(self.args.tracemalloc).resolve())
            env["ORCHA_SOAK_TRACEMALLOC_EVERY"] = str(self.args.tracemalloc_every)
            env["ORCHA_SOAK_TRACEMALLOC_FRAMES"] = str(self.args.tracemalloc_frames)
        self.service = subprocess.Popen(
            [
                *self.orcha,
                "serve",
                "--max-running",
                str(self.args.max_running),
                "--grace",
                str(self.args.grace),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,  # a Ctrl+C at the terminal is the soak's, not its
        )
        err.close()
        assert self.service.stdout is not None
        ready, _, _ = select.select([self.service.stdout], [], [], 30)
        banner = self.service.stdout.readline().decode() if ready else ""
        if "listening on" not in banner:
            raise SystemExit(f"soak: the service did not start: {banner!r}\n{self.service_err()}")
        threading.Thread(target=self._drain, args=(self.service.stdout,), daemon=True).start()
        self.service_pid, self.guard_pid = find_service_pid(self.service.pid, banner, self.env)

    @staticmethod
    def _drain(stream: Any) -> None:
        with contextlib.suppress(OSError, ValueError):
            while stream.read(65536):
                pass

    def service_err(self) -> str:
        try:
            return (self.root / "service.err").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop_service(self) -> float | None:
        """SIGTERM the service (its guard, if any: what a user's signal reaches) and wait;
        seconds it took, or None if it had to be killed after 60 s."""
        proc = self.service
        if proc is None or proc.poll() is not None:
            return None
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            proc.wait(10)
            return None
        if self.service_pid and self.service_pid != proc.pid:
            with contextlib.suppress(psutil.Error):
                psutil.Process(self.service_pid).wait(60)
        return time.monotonic() - start

    # -- clients ----------------------------------------------------------------------------
    def orcha_cmd(
        self, op: str, *args: str, timeout: float | None = None
    ) -> tuple[int | None, str, str]:
        """Run one orcha command to its end (killed after the op timeout): (code or None if
        it hung, stdout, stderr)."""
        proc = self.spawn(*args)
        try:
            out, err = proc.communicate(timeout=timeout or self.args.op_timeout)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            out, err = proc.communicate()
            code = None
        finally:
            with self.lock:
                self.children.discard(proc)
        return code, out.decode(errors="replace"), err.decode(errors="replace")

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [*self.orcha, *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        with self.lock:
            self.children.add(proc)
        return proc

    def check(self, op: str, args: tuple[str, ...], code: int | None, err: str) -> bool:
        """Count the operation; note an error if its code or stderr says one. True if fine."""
        problem = None
        if code is None:
            problem = f"did not end within {self.args.op_timeout:g}s"
        elif code not in OK_CODES[op]:
            problem = f"exit {code}"
        elif any(sign in err for sign in ERROR_SIGNS):
            problem = "printed a traceback or internal error"
        with self.lock:
            self.ops[op] += 1
            if problem:
                last = err.strip().splitlines()[-1] if err.strip() else ""
                self.errors.append(f"{op} {' '.join(args)}: {problem}: {last}"[:400])
        return problem is None

    def petition_argv(self, petition_id: str, tail: str) -> list[str]:
        return ["sh", "-c", f"echo {petition_id} >> {self.ran_file}; {tail}"]

    def client(self, n: int) -> None:
        rng = random.Random(self.args.seed * 1000 + n)
        names = [name for name, _ in MIX]
        weights = [w for _, w in MIX]
        count = 0
        while not self.stop.is_set():
            count += 1
            petition_id = f"s{n}-{count}"
            op = rng.choices(names, weights)[0]
            getattr(self, f"op_{op}")(rng, petition_id)

    def pick(self, rng: random.Random) -> str | None:
        with self.lock:
            recent = self.detached[-50:]
        return rng.choice(recent) if recent else None

    def op_submit(self, rng: random.Random, petition_id: str) -> None:
        argv = self.petition_argv(petition_id, f"sleep {rng.choice(['0', '0.05', '0.2'])}")
        args = ("run", petition_id, "--detach", "--priority", str(rng.randint(-3, 3)), "--", *argv)
        code, out, err = self.orcha_cmd("submit", *args)
        if self.check("submit", args, code, err) and out.strip() == petition_id:
            with self.lock:
                self.acked.add(petition_id)
                self.detached.append(petition_id)
                del self.detached[:-200]

    def op_run(self, rng: random.Random, petition_id: str) -> None:
        args = (
            "run",
            petition_id,
            "--priority",
            "-5",
            "--",
            *self.petition_argv(petition_id, f"echo out-{petition_id}"),
        )
        code, out, err = self.orcha_cmd("run", *args)
        if code == 0 and out != f"out-{petition_id}\n":
            code = -1  # its output is wrong: an error
        if self.check("run", args, code, err):
            with self.lock:
                self.acked.add(petition_id)
                self.seen_final.add(petition_id)

    def op_cancel(self, rng: random.Random, petition_id: str) -> None:
        target = self.pick(rng)
        if target is not None:
            args = ("cancel", target)
            code, _, err = self.orcha_cmd("cancel", *args)
            self.check("cancel", args, code, err)

    def op_ctrl_c(self, rng: random.Random, petition_id: str) -> None:
        """An attached run, interrupted by SIGINT once its petition has started."""
        args = (
            "run",
            petition_id,
            "--priority",
            "-5",
            "--",
            *self.petition_argv(petition_id, "echo started; exec sleep 60"),
        )
        proc = self.spawn(*args)
        assert proc.stdout is not None
        deadline = time.monotonic() + self.args.op_timeout
        started = b""
        while not started.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 64)
                if not chunk:
                    break
                started += chunk
        code: int | None
        if started == b"started\n":
            with self.lock:
                self.acked.add(petition_id)
            proc.send_signal(signal.SIGINT)
            try:
                _, err_b = proc.communicate(timeout=self.args.op_timeout)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                kill_tree(proc.pid)
                _, err_b = proc.communicate()
                code = None
        else:  # its petition did not start in time, or printed something else
            kill_tree(proc.pid)
            _, err_b = proc.communicate()
            err_b += f"\nits petition did not start in time (output {started!r})".encode()
            code = -2
        with self.lock:
            self.children.discard(proc)
        if self.check("ctrl_c", args, code, err_b.decode(errors="replace")) and code == 130:
            with self.lock:
                self.seen_final.add(petition_id)

    def op_status(self, rng: random.Random, petition_id: str) -> None:
        target = self.pick(rng)
        args = ("status", "--json", *([target] if target and rng.random() < 0.7 else []))
        code, _, err = self.orcha_cmd("status", *args)
        self.check("status", args, code, err)

    def op_follow(self, rng: random.Random, petition_id: str) -> None:
        target = self.pick(rng)
        if target is not None:
            args = ("follow", target)
            code, _, err = self.orcha_cmd("follow", *args)
            self.check("follow", args, code, err)

    def op_watch(self, rng: random.Random, petition_id: str) -> None:
        target = self.pick(rng)
        if target is not None:
            args = ("watch", target)
            code, _, err = self.orcha_cmd("watch", *args)
            self.check("watch", args, code, err)

    def op_clean(self, rng: random.Random, petition_id: str) -> None:
        # Only what ended well before: every end is seen by a sweep before it is cleaned.
        args = ("clean", "--older-than", f"{int(self.args.clean_after)}s")
        code, _, err = self.orcha_cmd("clean", *args)
        self.check("clean", args, code, err)

    # -- watching the service ---------------------------------------------------------------
    def sweep_records(self) -> dict[str, str] | None:
        """Every record's state (ID -> state), noting the ended ones; None if status failed."""
        code, out, err = self.orcha_cmd("status", "status", "--json")
        if not self.check("status", ("status", "--json"), code, err):
            return None
        try:
            rows = json.loads(out)["petitions"]
        except (ValueError, KeyError):
            with self.lock:
                self.errors.append(f"status --json: unreadable output: {out[:200]!r}")
            return None
        states = {row["id"]: row["state"] for row in rows}
        with self.lock:
            self.seen_final.update(i for i, s in states.items() if s in FINAL)
            self.queue_counts = dict(collections.Counter(states.values()))
        return states

    def sample(self) -> dict[str, Any] | None:
        try:
            proc = psutil.Process(self.service_pid)
            with proc.oneshot():
                figures: dict[str, Any] = {
                    "t": round(time.monotonic() - self.t0, 1),
                    "rss_kb": proc.memory_info().rss // 1024,
                    "fds": proc.num_fds(),
                    "threads": proc.num_threads(),
                }
        except psutil.Error:
            return None
        if self.guard_pid:
            with contextlib.suppress(psutil.Error):
                figures["guard_rss_kb"] = psutil.Process(self.guard_pid).memory_info().rss // 1024
        with self.lock:
            figures["ops"] = sum(self.ops.values())
            figures["errors"] = len(self.errors)
            figures["states"] = dict(self.queue_counts)
        self.samples.append(figures)
        return figures

    def monitor(self) -> None:
        next_sample = next_sweep = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_sweep:
                self.sweep_records()
                next_sweep = now + SWEEP_SECONDS
            if now >= next_sample:
                figures = self.sample()
                if figures is not None:
                    print(describe(figures), flush=True)
                next_sample = now + self.args.every
            self.stop.wait(min(next_sample, next_sweep) - time.monotonic())

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.start_service()
        print(
            f"soak: {self.args.minutes:g} min, {self.args.clients} clients, service pid "
            f"{self.service_pid}"
            + (f" (guard {self.guard_pid})" if self.guard_pid else "")
            + f", in {self.root}",
            flush=True,
        )
        self.t0 = time.monotonic()
        monitor = threading.Thread(target=self.monitor, daemon=True)
        monitor.start()
        clients = [
            threading.Thread(target=self.client, args=(n,), daemon=True)
            for n in range(self.args.clients)
        ]
        for thread in clients:
            thread.start()
        self.stop.wait(self.args.minutes * 60)
        self.stop.set()
        for thread in clients:
            thread.join(self.args.op_timeout + 10)
        monitor.join(10)
        last = self.sample()
        records = self.sweep_records() or {}
        stop_seconds = self.stop_service()
        leftovers = self.leftovers()
        return self.figures(records, stop_seconds, leftovers, last)

    def leftovers(self) -> list[dict[str, Any]]:
        """Processes of this soak still alive once the service has stopped (after a grace
        for the stop to finish), killed and reported."""
        deadline = time.monotonic() + self.args.grace + 5
        found = marked_processes(self.mark, self.root)
        while found and time.monotonic() < deadline:
            time.sleep(0.2)
            found = marked_processes(self.mark, self.root)
        described = []
        for proc in found:
            with contextlib.suppress(psutil.Error):
                described.append({"pid": proc.pid, "cmdline": proc.cmdline()})
                proc.kill()
        return described

    def figures(
        self,
        records: dict[str, str],
        stop_seconds: float | None,
        leftovers: list[dict[str, Any]],
        last: dict[str, Any] | None,
    ) -> dict[str, Any]:
        ran = (
            collections.Counter(
                line.strip() for line in self.ran_file.read_text().splitlines() if line.strip()
            )
            if self.ran_file.exists()
            else collections.Counter()
        )
        lost = sorted(self.acked - set(records) - self.seen_final)
        twice = sorted(i for i, n in ran.items() if n > 1)
        samples = self.samples
        first = samples[0] if samples else {}
        end = last or (samples[-1] if samples else {})
        half = [s for s in samples if s["t"] >= (samples[-1]["t"] / 2 if samples else 0)]
        return {
            "minutes": self.args.minutes,
            "clients": self.args.clients,
            "service_pid": self.service_pid,
            "guard_pid": self.guard_pid,
            "operations": sum(self.ops.values()),
            "operations_by_kind": dict(self.ops),
            "errors": len(self.errors),
            "first_errors": self.errors[:10],
            "acknowledged": len(self.acked),
            "lost": len(lost),
            "lost_ids": lost[:20],
            "ran": sum(ran.values()),
            "ran_twice": len(twice),
            "ran_twice_ids": twice[:20],
            "leftovers": len(leftovers),
            "leftover_processes": leftovers[:20],
            "rss_kb": [first.get("rss_kb"), end.get("rss_kb")],
            "rss_slope_kb_per_min_last_half": slope([(s["t"] / 60, s["rss_kb"]) for s in half]),
            "guard_rss_kb": [first.get("guard_rss_kb"), end.get("guard_rss_kb")],
            "fds": [first.get("fds"), end.get("fds")],
            "threads": [first.get("threads"), end.get("threads")],
            "stop_seconds": None if stop_seconds is None else round(stop_seconds, 2),
            "samples": samples,
        }

    def cleanup(self) -> None:
        """Stop whatever is still running (clients, service, petitions), by PID."""
        self.stop.set()
        with self.lock:
            children = list(self.children)
        for proc in children:
            kill_tree(proc.pid)
        if self.service is not None and self.service.poll() is None:
            try:
                self.service.send_signal(signal.SIGTERM)
                self.service.wait(self.args.grace + 10)
            except subprocess.TimeoutExpired:
                kill_tree(self.service.pid)
        for pid in (self.service_pid, self.guard_pid):
            if pid:
                kill_tree(pid)
        for proc in marked_processes(self.mark, self.root):
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if not self.args.keep:
            shutil.rmtree(self.root, ignore_errors=True)


# -- helpers ------------------------------------------------------------------------------------
def find_service_pid(serve_pid: int, banner: str, env: dict[str, str]) -> tuple[int, int | None]:
    """(service PID, guard PID or None). The service names its PID in its banner
    ("pid N"); else the address lock file holds it; else it is the ``orcha serve``
    process itself, or, if that has exactly one orcha child, that child (the serve
    process is then a guard above it)."""
    pid: int | None = None
    found = re.search(r"\(pid (\d+)", banner)
    if found:
        pid = int(found.group(1))
    else:
        lock = Path(env["ORCHA_RUNTIME_DIR"]) / "orcha.sock.lock"
        with contextlib.suppress(OSError, ValueError):
            pid = int(lock.read_text().split()[0])
    if pid is None or not psutil.pid_exists(pid):
        pid = serve_pid
        with contextlib.suppress(psutil.Error):
            kids = [
                p
                for p in psutil.Process(serve_pid).children()
                if any("orcha" in part for part in p.cmdline()[:3])
            ]
            if len(kids) == 1:
                pid = kids[0].pid
    return pid, (serve_pid if pid != serve_pid else None)


def marked_processes(mark: str, root: Path) -> list[psutil.Process]:
    """Live processes of this user (not this one) started by this soak: its marker in
    their environment, or its directory on their command line."""
    me, uid = os.getpid(), os.getuid()
    found = []
    for proc in psutil.process_iter(["uids", "status", "cmdline"]):
        try:
            if proc.pid == me or proc.info["uids"].real != uid:
                continue
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if str(root) in " ".join(proc.info["cmdline"] or ()) or (
                proc.environ().get(MARK_VAR) == mark
            ):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def kill_tree(pid: int) -> None:
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(procs, timeout=5)


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (x, y) points; None with fewer than 3."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return round(sum((x - mx) * (y - my) for x, y in points) / sxx, 1)


def describe(s: dict[str, Any]) -> str:
    guard = f" guard_rss={s['guard_rss_kb'] / 1024:.1f}MB" if "guard_rss_kb" in s else ""
    states = " ".join(f"{k.lower()}={v}" for k, v in sorted(s.get("states", {}).items()))
    return (
        f"t={s['t']:6.0f}s ops={s['ops']:6d} errors={s['errors']:3d} "
        f"rss={s['rss_kb'] / 1024:6.1f}MB fds={s['fds']:4d} threads={s['threads']:3d}"
        f"{guard} {states}"
    )


def report(f: dict[str, Any]) -> str:
    by_kind = ", ".join(f"{k} {v}" for k, v in sorted(f["operations_by_kind"].items()))
    lines = [
        f"operations: {f['operations']} ({by_kind})",
        f"errors: {f['errors']}",
        *(f"  {e}" for e in f["first_errors"][:5]),
        f"petitions acknowledged: {f['acknowledged']}; ran (lines in ran.txt): {f['ran']}",
        f"lost: {f['lost']} {' '.join(f['lost_ids'][:5])}",
        f"ran twice: {f['ran_twice']} {' '.join(f['ran_twice_ids'][:5])}",
        f"leftover processes: {f['leftovers']}",
        *(f"  {p['pid']} {' '.join(p['cmdline'])}" for p in f["leftover_processes"][:5]),
        f"service RSS: {f['rss_kb'][0]} -> {f['rss_kb'][1]} kB; slope over the last half: "
        f"{f['rss_slope_kb_per_min_last_half']} kB/min",
        f"descriptors: {f['fds'][0]} -> {f['fds'][1]}; threads: "
        f"{f['threads'][0]} -> {f['threads'][1]}",
        f"stop on SIGTERM: {f['stop_seconds']} s",
    ]
    if f["guard_pid"]:
        lines.append(f"guard RSS: {f['guard_rss_kb'][0]} -> {f['guard_rss_kb'][1]} kB")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--json", metavar="FILE", help="write all figures here")
    parser.add_argument("--max-running", type=int, default=4)
    parser.add_argument("--grace", type=float, default=2.0)
    parser.add_argument("--op-timeout", type=float, default=60.0)
    parser.add_argument(
        "--clean-after",
        type=float,
        default=30.0,
        help="clean only petitions ended this many seconds ago",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--tracemalloc", metavar="DIR", help="the service writes memory diffs into DIR"
    )
    parser.add_argument("--tracemalloc-every", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument(
        "--tracemalloc-frames",
        type=int,
        default=16,
        metavar="N",
        help="frames per traceback; 0: only the native memory figures",
    )
    args = parser.parse_args()

    soak = Soak(args)

    def stop(signum: int, frame: object) -> None:
        soak.stop.set()  # the main thread sees it and ends the soak early

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        figures = soak.run()
    finally:
        soak.cleanup()
    print(report(figures), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    bad = figures["errors"] or figures["lost"] or figures["ran_twice"] or figures["leftovers"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
