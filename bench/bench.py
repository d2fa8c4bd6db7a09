"""orcha benchmarks: figures and ratios against peers measured in the same run.

Run it with the Python of a regular (not editable) install of orcha, e.g.::

    python3 -m venv /tmp/ob && /tmp/ob/bin/pip install -q . && /tmp/ob/bin/python bench/bench.py

It measures, as medians over repeated runs: end-to-end wall time of ``orcha run x -- true``
against ``python -c pass`` (and ``tsp -f true`` when task-spooler is installed); the time
to push 1,000 ``true`` petitions through ``--max-running 2`` (and through ``tsp -S 2``);
the service's idle CPU; and streaming throughput of ``orcha run x -- cat FILE`` into
/dev/null against plain ``cat``. Everything runs in a private temporary directory; the
service and tsp server it starts are stopped at the end.

Targets (issue 2): run latency within 25 ms of Python's start-up; 1,000 petitions at least
as fast as task-spooler; idle CPU under 0.1 %; streaming at least 200 MB/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

from common import banner_pid, orcha_command, private_env


def _median_wall(argv: list[str], runs: int, env: dict[str, str], **kw: object) -> float:
    times = []
    for i in range(runs):
        cmd = [a.replace("{i}", str(i)) for a in argv]
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, **kw)  # type: ignore[call-overload]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root, self.env = private_env("orcha-bench-")
        self.orcha = orcha_command()
        self.service: subprocess.Popen[bytes] | None = None
        self.tsp = shutil.which("tsp")
        self.tsp_env = {
            **os.environ,
            "TS_SOCKET": str(self.root / "tsp.sock"),
            "TMPDIR": str(self.root),
            "TS_MAXFINISHED": "100000",
        }
        self.rows: list[tuple[str, str, str]] = []

    def row(self, what: str, value: str, note: str = "") -> None:
        self.rows.append((what, value, note))
        print(f"  {what:<48} {value:>14}  {note}", flush=True)

    def start_service(self) -> None:
        self.service = subprocess.Popen(
            [*self.orcha, "serve", "--max-running", "2"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.service.stdout is not None
        banner = self.service.stdout.readline().decode()
        if "listening on" not in banner:
            raise SystemExit("bench: the service did not start")
        self.service_pid = banner_pid(banner)  # not the Popen's: that is its guard

    def stop(self) -> None:
        if self.service is not None and self.service.poll() is None:
            self.service.send_signal(signal.SIGTERM)
            try:
                self.service.wait(30)
            except subprocess.TimeoutExpired:
                self.service.kill()
        if self.tsp:
            subprocess.run([self.tsp, "-K"], env=self.tsp_env, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- measurements --------------------------------------------------------------------
    def latency(self) -> None:
        runs = self.args.runs
        py = _median_wall([sys.executable, "-c", "pass"], runs, self.env)
        orcha = _median_wall([*self.orcha, "run", "lat-{i}", "--", "true"], runs, self.env)
        self.row("python -c pass (median)", f"{py * 1000:.1f} ms")
        target = "MET" if orcha - py <= 0.025 else "MISSED"
        self.row(
            "orcha run x -- true (median)",
            f"{orcha * 1000:.1f} ms",
            f"+{(orcha - py) * 1000:.1f} ms over python (target <= 25 ms: {target})",
        )
        if self.tsp:
            subprocess.run([self.tsp, "-S", "2"], env=self.tsp_env, capture_output=True, check=True)
            tsp = _median_wall([self.tsp, "-f", "true"], runs, self.tsp_env, capture_output=True)
            self.row(
                "tsp -f true (median)", f"{tsp * 1000:.1f} ms", f"orcha/tsp = {orcha / tsp:.1f}x"
            )

    def _push(self, n: int, tag: str, pipelined: bool) -> float:
        """Seconds from the first submit of ``n`` x ``true`` to the last end, over one
        connection (attached, as ``orcha run`` submits); pipelined: up to 64 requests in
        flight (answers come back in order), else one request and its answer at a time.
        Each end is read from the petition's served queue (``get_batch``)."""
        from collections import deque

        from orcha import settings
        from orcha.client.session import Session
        from orcha.protocol.messages import SubmitRequest

        env = {"PATH": os.environ.get("PATH", "")}
        session = Session.open(settings.resolve())
        start = time.perf_counter()
        ended = 0
        asked: deque[str | None] = deque()  # per request in flight: None (submit) or its queue

        def ended_in(items: list[object]) -> bool:
            last = items[-1] if items else None
            return isinstance(last, dict) and last.get("event") == "end"

        def answer_one() -> None:
            nonlocal ended
            queue, value = asked.popleft(), session.recv()
            if queue is None:
                queue = value["queue"]
            elif ended_in(value):
                ended += 1
                return
            session.send(queue, "get_batch")
            asked.append(queue)

        for i in range(n):
            wire = SubmitRequest("shell", f"{tag}-{i}", {"argv": ["true"]}, None, "/", env)
            if pipelined:
                # At most 64 requests in flight: unread answers would otherwise fill the
                # socket buffers until both sides block.
                while len(asked) >= 64:
                    answer_one()
                session.send(None, "call", "submit", wire.to_wire())
                asked.append(None)
            else:
                asked.append(session.call("submit", wire.to_wire())["queue"])
        if not pipelined:
            for queue in list(asked):
                while not ended_in(session.get_batch(queue)):
                    pass
                ended += 1
            asked.clear()
        while ended < n:
            answer_one()
        elapsed = time.perf_counter() - start
        session.close()
        return elapsed

    def throughput(self) -> None:
        n = self.args.petitions
        os.environ.update(
            ORCHA_RUNTIME_DIR=self.env["ORCHA_RUNTIME_DIR"],
            ORCHA_STATE_DIR=self.env["ORCHA_STATE_DIR"],
        )
        one = statistics.median(self._push(n, f"s{a}", False) for a in range(self.args.repeat))
        self.row(f"{n} x true, one submit at a time", f"{one:.2f} s", f"{n / one:.0f}/s")
        orcha = statistics.median(self._push(n, f"p{a}", True) for a in range(self.args.repeat))
        self.row(f"{n} x true, submits pipelined", f"{orcha:.2f} s", f"{n / orcha:.0f}/s")
        if self.tsp:
            times = []
            for _ in range(self.args.repeat):
                start = time.perf_counter()
                last = ""
                for _ in range(n):
                    last = subprocess.run(
                        [self.tsp, "true"],
                        env=self.tsp_env,
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout.strip()
                subprocess.run([self.tsp, "-w", last], env=self.tsp_env, capture_output=True)
                times.append(time.perf_counter() - start)
                subprocess.run([self.tsp, "-C"], env=self.tsp_env, capture_output=True)
            tsp = statistics.median(times)
            target = "MET" if orcha <= tsp else "MISSED"
            self.row(
                f"{n} x tsp true through tsp -S 2",
                f"{tsp:.2f} s",
                f"tsp/orcha = {tsp / orcha:.2f}x pipelined (target >= 1: {target}), "
                f"{tsp / one:.2f}x one at a time",
            )

    def idle_cpu(self) -> None:
        import psutil

        assert self.service is not None
        proc = psutil.Process(self.service_pid)
        time.sleep(1)
        before = sum(proc.cpu_times()[:2])
        time.sleep(self.args.idle_seconds)
        used = sum(proc.cpu_times()[:2]) - before
        pct = used / self.args.idle_seconds * 100
        target = "MET" if pct < 0.1 else "MISSED"
        self.row(
            f"service idle CPU over {self.args.idle_seconds:.0f} s",
            f"{pct:.3f} %",
            f"(target < 0.1 %: {target})",
        )

    def streaming(self) -> None:
        size = self.args.stream_mb << 20
        path = self.root / "stream.bin"
        block = os.urandom(1 << 20)
        with open(path, "wb") as f:
            for _ in range(self.args.stream_mb):
                f.write(block)
        with open(os.devnull, "wb") as null:
            cat = _median_wall(["cat", str(path)], 3, self.env, stdout=null)
            orcha = _median_wall(
                [*self.orcha, "run", "cat-{i}", "--", "cat", str(path)], 3, self.env, stdout=null
            )
        mbps = size / orcha / 1e6
        target = "MET" if mbps >= 200 else "MISSED"
        self.row(f"cat {self.args.stream_mb} MiB > /dev/null", f"{size / cat / 1e6:.0f} MB/s")
        self.row(
            f"orcha run x -- cat {self.args.stream_mb} MiB > /dev/null",
            f"{mbps:.0f} MB/s",
            f"cat/orcha = {orcha / cat:.1f}x (target >= 200 MB/s: {target})",
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="runs per latency median")
    parser.add_argument("--petitions", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="throughput repetitions")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--stream-mb", type=int, default=200)
    args = parser.parse_args()
    bench = Bench(args)
    print(f"orcha benchmarks ({os.cpu_count()} cores, {sys.executable})")
    if "__editable__" in "".join(str(f) for f in sys.meta_path):
        print("  warning: orcha is an editable install; its import hook slows every client")
    try:
        bench.start_service()
        bench.latency()
        bench.throughput()
        bench.idle_cpu()
        bench.streaming()
    finally:
        bench.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
