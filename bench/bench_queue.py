"""orcha queue benchmark: how submitting, memory and ``orcha status`` scale with a long queue.

Run it with the Python of a regular (not editable) install of orcha, e.g.::

    python3 -m venv /tmp/qb && /tmp/qb/bin/pip install -q . psutil \\
        && /tmp/qb/bin/python bench/bench_queue.py [--queued-max 20000]

It starts ``orcha serve --max-running 1`` in a private temporary directory, submits one
petition that blocks the only slot (``sleep 3600``), then queues detached ``true``
petitions (pipelined over one session, as fast as the service takes them) up to 10,000
and ``--queued-max`` (default 100,000). With 0, 10,000 and ``--queued-max`` petitions
queued it measures the submit rate (median of batches of ``--batch`` detached submits,
one request at a time over one session, as a client does); with the most queued, the
service's RSS and the wall time of ``orcha status --json``. At the end the service is
stopped with SIGTERM (killed after 60 s), the blocker's process is checked to be gone
and the temporary directory is removed.

Targets (issue 3): the submit rate with 100,000 queued at least 0.8 of the rate with an
empty queue; service RSS with 100,000 queued at most 300 MB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

from common import kill_leftovers, orcha_command, private_env, start_service, stop_service

#: Requests in flight while filling the queue. Replies are small, so this many fit in the
#: socket buffers both ways and neither side can block the other.
_WINDOW = 64


def _mb(n: float) -> str:
    return f"{n / 1e6:.0f} MB"


class QueueBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root, self.env = private_env("orcha-bench-queue-")
        self.orcha = orcha_command()
        self.petition_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        self.service: subprocess.Popen[bytes] | None = None
        self.session: Any = None
        self.blockers: list[Any] = []  # psutil.Process of the blocker's tree
        self.queued = 0  # petitions queued behind the blocker
        self.next_id = 0
        self.rates: dict[int, float] = {}
        self.ok = True

    def row(self, what: str, value: str, note: str = "") -> None:
        print(f"  {what:<48} {value:>14}  {note}", flush=True)

    # -- the service ---------------------------------------------------------------------
    def start_service(self) -> None:
        self.service, self.session = start_service(self.orcha, self.env, self.root, 1)

    def _request(self, petition_id: str, argv: list[str]) -> Any:
        from orcha.protocol.messages import SubmitRequest

        return SubmitRequest(
            "shell", petition_id, {"argv": argv}, None, "/", self.petition_env, attach=False
        )

    def block_slot(self) -> None:
        """Submit ``sleep 3600`` and wait until it runs, so everything after it queues."""
        import psutil

        assert self.service is not None
        self.session.call("submit", self._request("blocker", ["sleep", "3600"]).to_wire())
        service = psutil.Process(self.service.service_pid)  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.session.call("info")["running"] == 1:
                self.blockers = [p for p in service.children(recursive=True) if _is_blocker(p)]
                if self.blockers:
                    return
            time.sleep(0.05)
        raise SystemExit("bench: the blocker petition did not start")

    def stop(self) -> None:
        if self.session is not None:
            self.session.close()
        if self.service is not None and self.service.poll() is None:
            seconds, code = stop_service(self.service)
            if seconds is None:
                self.row("graceful stop", "> 60 s", "killed with SIGKILL")
                self.ok = False
            else:
                self.row(
                    f"graceful stop with {self.queued:,} queued",
                    f"{seconds:.2f} s",
                    f"(exit code {code})",
                )
        left = kill_leftovers(self.blockers, _is_blocker)
        if left:
            self.row("blocker process after stop", "LEFT BEHIND", f"pids {left}")
            self.ok = False
        elif self.blockers:
            self.row("blocker process after stop", "gone")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- measurements --------------------------------------------------------------------
    def fill(self, target: int) -> None:
        """Queue ``true`` petitions, pipelined, until ``target`` are queued."""
        n = target - self.queued
        if n <= 0:
            return
        from orcha.errors import PetitionError

        session = self.session
        start = time.perf_counter()
        sent = answered = 0
        while answered < n:
            while sent < n and sent - answered < _WINDOW:
                wire = self._request(f"q-{self.next_id}", ["true"]).to_wire()
                session.send(None, "call", "submit", wire)
                self.next_id += 1
                sent += 1
            try:
                session.recv()
            except PetitionError as e:
                raise SystemExit(f"bench: a submit was refused: {e.message}") from None
            answered += 1
        took = time.perf_counter() - start
        self.queued += n
        self.row(
            f"fill: queue {n:,} more (to {self.queued:,})",
            f"{took:.1f} s",
            f"{n / took:.0f}/s pipelined",
        )

    def submit_rate(self, label: int) -> float:
        """Median rate of batches of detached submits, one request at a time."""
        rates = []
        for _ in range(self.args.repeat):
            ids = [f"m-{self.next_id + i}" for i in range(self.args.batch)]
            self.next_id += self.args.batch
            start = time.perf_counter()
            for petition_id in ids:
                self.session.call("submit", self._request(petition_id, ["true"]).to_wire())
            rates.append(self.args.batch / (time.perf_counter() - start))
            self.queued += self.args.batch
        rate = statistics.median(rates)
        self.rates[label] = rate
        spread = f"(batches {min(rates):.0f}..{max(rates):.0f}/s)"
        self.row(f"submit rate with {label:,} queued", f"{rate:.0f}/s", spread)
        return rate

    def rss(self) -> int:
        import psutil

        assert self.service is not None
        service = psutil.Process(self.service.service_pid)  # type: ignore[attr-defined]
        return int(service.memory_info().rss)

    def status_cli(self) -> None:
        times = []
        with open(os.devnull, "wb") as null:
            for _ in range(3):
                start = time.perf_counter()
                subprocess.run(
                    [*self.orcha, "status", "--json"], env=self.env, stdout=null, check=True
                )
                times.append(time.perf_counter() - start)
        records = self.queued + 1
        self.row(
            f"orcha status --json, {records:,} records (median)",
            f"{statistics.median(times):.2f} s",
            f"(runs {min(times):.2f}..{max(times):.2f} s)",
        )
        # The same request over the open session: the service's share, and the reply size.
        from orcha.protocol import messages

        start = time.perf_counter()
        self.session.send(messages.encode({"op": "status", "ids": [], "states": []}))
        frame = self.session.recv()
        took = time.perf_counter() - start
        if len(messages.decode(frame)["petitions"]) != records:
            print("  warning: status did not list every record", flush=True)
        self.row(
            "  of which: the status request alone", f"{took:.2f} s", f"reply {_mb(len(frame))}"
        )

    def run(self) -> None:
        qmax = self.args.queued_max
        levels = sorted({0, min(10_000, qmax), qmax})
        before = self.rss()
        self.row("service RSS, idle", _mb(before))
        self.block_slot()
        for level in levels:
            self.fill(level)
            self.submit_rate(level)
            rss = self.rss()
            per = f"{(rss - before) / self.queued:.0f} B/petition" if self.queued else ""
            self.row(f"service RSS with {self.queued:,} queued", _mb(rss), per)
        ratio = self.rates[qmax] / self.rates[0]
        target = "MET" if ratio >= 0.8 else "MISSED"
        self.row(f"rate@{qmax:,} / rate@0", f"{ratio:.2f}", f"(target >= 0.8: {target})")
        rss = self.rss()
        if self.queued >= 100_000:
            target = "MET" if rss <= 300e6 else "MISSED"
            self.row("service RSS vs target", _mb(rss), f"(target <= 300 MB: {target})")
        else:  # a quick run: extrapolate linearly
            guess = before + (rss - before) * 100_000 / self.queued
            target = "likely MET" if guess <= 300e6 else "likely MISSED"
            self.row("service RSS at 100,000, extrapolated", _mb(guess), f"(<= 300 MB: {target})")
        self.status_cli()
        self.row("service RSS after status", _mb(self.rss()))


def _is_blocker(p: Any) -> bool:
    try:
        return bool(p.cmdline() == ["sleep", "3600"])
    except Exception:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queued-max", type=int, default=100_000, help="largest queue measured")
    parser.add_argument("--batch", type=int, default=500, help="submits per timed batch")
    parser.add_argument("--repeat", type=int, default=3, help="timed batches per queue length")
    args = parser.parse_args()
    if args.queued_max < 1 or args.batch < 1 or args.repeat < 1:
        parser.error("--queued-max, --batch and --repeat must be at least 1")
    bench = QueueBench(args)
    print(f"orcha queue benchmark ({os.cpu_count()} cores, {sys.executable})")
    if "__editable__" in "".join(str(f) for f in sys.meta_path):
        print("  warning: orcha is an editable install; its import hook slows every client")
    try:
        bench.start_service()
        bench.run()
    finally:
        bench.stop()
    return 0 if bench.ok else 1


if __name__ == "__main__":
    sys.exit(main())
