"""Dask scale-out benchmark (issue 15; not in CI): the same measures on a loopback Dask
cluster (2 workers x 1 slot) and on the local machine (2 slots), in one run.

* ``flood``: COUNT ``true`` petitions (one array), submitted to their end (petitions/s);
* ``process refill``: a freed slot refilled (target 20 ms), at process level (the
  records' times are not used: the service frees a slot before it records the end): on
  one slot (``--on w1``
  on the cluster, ``--cpus 2`` of the 2 local slots), REFILL petitions behind a blocker
  each append the time of their first and last act to a file (bench/targets_process.py's
  stamp program, a static C one where a compiler is here); the gap from one's last act
  to the next one's first, as bench/run.py's refill measures locally;
* ``stream``: MB/s of SIZE MiB of output read by ``orcha run`` (target 100 MB/s);
* ``line``: median latency of one line from the petition's ``print`` to the client.

Usage: ``python bench/bench_dask.py [--count 1000] [--size 200] [--refill 100]``. Self-contained
(starts and stops its own scheduler, workers and services, by PID).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ORCHA = [str(BIN / "orcha")] if (BIN / "orcha").exists() else [sys.executable, "-m", "orcha"]


class Place:
    """A private orcha environment with its own service."""

    def __init__(self, root: Path, name: str, serve: list[str]) -> None:
        self.root = root / name
        self.env = {**os.environ, "ORCHA_RUNTIME_DIR": str(self.root / "run"),
                    "ORCHA_STATE_DIR": str(self.root / "state"),
                    "ORCHA_CONFIG": str(root / "empty.yaml")}  # fmt: skip
        self.env.pop("ORCHA_ADDRESS", None)
        self.env.pop("ORCHA_KEY", None)
        self.root.mkdir(parents=True)
        self.log = open(self.root / "service.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([*ORCHA, "serve", *serve], env=self.env,
                                     stdout=subprocess.PIPE, stderr=self.log)  # fmt: skip
        assert self.proc.stdout is not None
        banner = self.proc.stdout.readline().decode()
        if "listening" not in banner:
            raise SystemExit(f"{name}: the service did not start: {banner}")

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        out = subprocess.run([*ORCHA, *args], env=self.env, capture_output=True)
        if check and out.returncode != 0:
            raise SystemExit(f"orcha {' '.join(args)}: {out.stderr.decode()}")
        return out

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()


def flood(place: Place, count: int) -> dict[str, float]:
    """The rate of ``count`` ``true`` petitions through an array and ``wait``. (How fast a
    freed slot is refilled is :func:`process_refill`'s, from the petitions' own times: the
    service's timestamps free a slot before its end is recorded.)"""
    start = time.perf_counter()
    place.run("run", "--detach", "--id", "flood", "--array", f"1-{count}", "--", "true")
    place.run("wait", "flood")
    took = time.perf_counter() - start
    return {"petitions_per_s": count / took, "seconds": took}


def process_refill(place: Place, n: int, one_slot: list[str], work: Path) -> dict[str, float]:
    """Median, 10th and 90th percentile (ms) of the gap from one petition's last act to the
    next one's first, on one slot, from the petitions' own timestamps."""
    from stats import parse_stamps, refill_gaps
    from targets_process import _stamper

    bash = shutil.which("bash") or "/bin/bash"
    stamp, how = _stamper(work, bash)
    out, go = work / f"stamps-{place.root.name}", work / f"go-{place.root.name}"
    place.run("run", "--detach", "--id", "blocker", *one_slot, "--", bash, "-c",
              f"while [ ! -e {go} ]; do sleep 0.01; done")  # fmt: skip
    place.run("run", "--detach", "--id", "refill", "--array", f"1-{n}", *one_slot, "--",
              str(stamp), str(out))  # fmt: skip
    go.touch()
    place.run("wait", "refill")
    pairs = parse_stamps(out.read_text())
    if len(pairs) != n:
        raise SystemExit(f"refill: {len(pairs)} of {n} petitions wrote their times")
    gaps = sorted(1000 * g for g in refill_gaps(pairs))
    print(f"  {place.root.name}: process refill over {len(gaps)} gaps ({how} stamp program)",
          file=sys.stderr)  # fmt: skip
    return {"process_refill_ms_median": statistics.median(gaps),
            "process_refill_ms_p10": gaps[len(gaps) // 10],
            "process_refill_ms_p90": gaps[len(gaps) * 9 // 10]}  # fmt: skip


def stream(place: Place, mib: int) -> float:
    code = f"import sys; b = b'x' * (1 << 20); [sys.stdout.buffer.write(b) for _ in range({mib})]"
    start = time.perf_counter()
    with subprocess.Popen([*ORCHA, "run", "--", sys.executable, "-c", code], env=place.env,
                          stdout=subprocess.PIPE) as proc:  # fmt: skip
        assert proc.stdout is not None
        got = 0
        while chunk := proc.stdout.read(1 << 20):
            got += len(chunk)
    took = time.perf_counter() - start
    assert got == mib << 20, got
    return mib * 1.048576 / took


def line_latency(place: Place, lines: int = 200) -> float:
    code = (f"import time, sys\nfor _ in range({lines}):\n    print(time.time(), flush=True)\n"
            "    time.sleep(0.01)\n")  # fmt: skip
    delays = []
    with subprocess.Popen([*ORCHA, "run", "--", sys.executable, "-c", code], env=place.env,
                          stdout=subprocess.PIPE) as proc:  # fmt: skip
        assert proc.stdout is not None
        for raw in proc.stdout:
            delays.append(time.time() - float(raw))
    return 1000 * statistics.median(delays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=200, help="MiB streamed")
    parser.add_argument("--refill", type=int, default=100, help="petitions in the refill")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="orcha-bench-dask-", dir="/tmp"))
    (root / "empty.yaml").write_text("{}\n")
    procs: list[subprocess.Popen[bytes]] = []
    places: list[Place] = []
    try:
        file = root / "scheduler.json"
        logs = open(root / "cluster.log", "wb")  # noqa: SIM115
        dask = [sys.executable, "-m", "dask"]
        procs.append(subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                       "--dashboard-address", "127.0.0.1:0",
                                       "--scheduler-file", str(file)],
                                      stdout=logs, stderr=logs))  # fmt: skip
        for name in ("w1", "w2"):
            procs.append(subprocess.Popen(
                [*dask, "worker", "--scheduler-file", str(file), "--host", "127.0.0.1",
                 "--no-nanny", "--nthreads", "4", "--dashboard-address", "127.0.0.1:0",
                 "--local-directory", str(root / name), "--name", name, "--resources", "CPU=1"],
                stdout=logs, stderr=logs))  # fmt: skip
        subprocess.run([sys.executable, "-c", "from distributed import Client; "
                        f"Client(scheduler_file={str(file)!r}).wait_for_workers(2)"],
                       check=True, timeout=120)  # fmt: skip
        places = [Place(root, "dask", ["--dask-scheduler-file", str(file)]),
                  Place(root, "local", ["--max-running", "2"])]  # fmt: skip
        results: dict[str, dict[str, float]] = {}
        slot = {"dask": ["--on", "w1"], "local": ["--cpus", "2"]}
        for place in places:
            name = place.root.name
            results[name] = flood(place, args.count)
            results[name].update(process_refill(place, args.refill, slot[name], root))
            results[name]["stream_MB_per_s"] = stream(place, args.size)
            results[name]["line_latency_ms_median"] = line_latency(place)
        print(json.dumps(results, indent=2))
        for key in results["dask"]:
            d, loc = results["dask"][key], results["local"][key]
            print(f"{key:26} dask {d:10.2f}   local {loc:10.2f}")
    finally:
        for place in places:
            place.stop()
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
