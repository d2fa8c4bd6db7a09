"""What the targets share: the installed ``orcha`` under test, private environments, the
services and peers they start (each stopped by PID, whatever happens), timed child
processes with their own CPU (``wait4``), and an RSS sampler."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

#: Every process the bench starts carries this variable (its value: the run's directory),
#: so that whatever outlives its parent can be found and stopped at the end.
MARK = "ORCHA_BENCH_MARK"

STEP_TIMEOUT = 600.0  # default seconds any one command may take before it is an ERROR


class StepError(RuntimeError):
    """A step of a target failed (a command's exit code, a timeout, a missing peer): the
    target is reported as ERROR with this message, the others go on."""


@dataclass
class Timed:
    """One child process's wall time, its CPU (user + system, its waited-for descendants
    included) and exit code."""

    wall: float
    cpu: float
    code: int


def interleave(repeats: int, steps: dict[str, Callable[[int], Any]]) -> dict[str, list[Any]]:
    """Run each step once per repeat (given the repeat's number), the order rotated every
    repeat (A B C, B C A, ...), so that a slow moment of a shared machine falls on each of
    them alike; each step's results in order."""
    names = list(steps)
    results: dict[str, list[Any]] = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            results[name].append(steps[name](r))
    return results


class Lab:
    """A run's private directory, the ``orcha`` under test and everything started in it."""

    def __init__(self, orcha: str, keep: bool = False, profile: Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="orcha-bench-", dir="/tmp"))
        self.orcha = orcha
        self.keep = keep
        #: With a directory: every service is sampled by py-spy, its stacks written there.
        self.profile = profile
        self.services: list[Service] = []
        self.base_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ORCHA_", "TS_", "NQ")) and k != "COVERAGE_PROCESS_START"
        }
        self.base_env[MARK] = str(self.root)
        self._dirs = 0
        self._cleanups: list[Callable[[], object]] = []

    def on_close(self, stop: Callable[[], object]) -> None:
        """Call ``stop`` at the end (a peer's own way to stop its server: ``tsp -K``)."""
        self._cleanups.append(stop)

    def env(self, name: str) -> dict[str, str]:
        """A new private orcha environment under the run's directory, as the integration
        tests make one: runtime, state and config directories of its own."""
        self._dirs += 1
        home = self.root / f"{self._dirs:02d}-{name}"
        home.mkdir()
        return {
            **self.base_env,
            "ORCHA_RUNTIME_DIR": str(home / "run"),
            "ORCHA_STATE_DIR": str(home / "state"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "PYTHONUNBUFFERED": "1",
        }

    def dir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def serve(self, name: str, *args: str, env: dict[str, str] | None = None) -> Service:
        service = Service(self, env or self.env(name), list(args), name)
        self.services.append(service)
        service.start()
        return service

    def stop_services(self) -> list[Path]:
        """Stop the services still running (a target's, once it is done, so that they
        neither load the next target nor hold memory); the profiles they leave."""
        written = []
        for service in self.services:
            with contextlib.suppress(Exception):
                service.stop()
            written += service.profiles
            service.profiles = []
        return written

    def close(self) -> list[str]:
        """Stop every service (SIGTERM, then SIGKILL), then kill whatever still carries
        this run's mark (petitions, tsp's server, nq's jobs); remove the directory. Returns
        what had to be killed after the services stopped (PID and command line each)."""
        for service in self.services:
            with contextlib.suppress(Exception):
                service.stop()
        for stop in reversed(self._cleanups):
            with contextlib.suppress(Exception):
                stop()
        left = kill_marked(str(self.root))
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
        return left

    # -- commands ------------------------------------------------------------------------
    def orcha_cmd(self, *args: str) -> list[str]:
        return [self.orcha, *args]

    def run(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        *,
        timeout: float = STEP_TIMEOUT,
        stdout: int | IO[Any] | None = subprocess.DEVNULL,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        check: bool = True,
        cwd: str | Path | None = None,
    ) -> Timed:
        """Run ``argv`` to its end: wall time, CPU, exit code (StepError on a timeout, or
        a non-zero code when ``check``; the command's stderr is in the message)."""
        with tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            try:
                proc = subprocess.Popen(
                    list(argv), env=env, stdout=stdout, stdin=stdin, stderr=err, cwd=cwd
                )
            except OSError as e:
                raise StepError(f"{argv[0]}: {e}") from None
            try:
                code, cpu = wait_with_cpu(proc, timeout)
            except subprocess.TimeoutExpired:
                raise StepError(f"{' '.join(argv[:4])}... ran over {timeout:.0f} s") from None
            wall = time.perf_counter() - start
            if check and code != 0:
                err.seek(0)
                msg = err.read().decode(errors="replace").strip()[-300:]
                raise StepError(f"{' '.join(argv[:5])} exited {code}: {msg}")
        return Timed(wall, cpu, code)

    def output(self, argv: Sequence[str], env: dict[str, str], timeout: float = 120) -> str:
        """Run ``argv`` and return its stdout (StepError if it fails)."""
        try:
            done = subprocess.run(
                list(argv), env=env, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            raise StepError(f"{' '.join(argv[:4])}... ran over {timeout:.0f} s") from None
        if done.returncode != 0:
            msg = done.stderr.decode(errors="replace").strip()[-300:]
            raise StepError(f"{' '.join(argv[:5])} exited {done.returncode}: {msg}")
        return done.stdout.decode(errors="replace")


def wait_with_cpu(proc: subprocess.Popen[Any], timeout: float) -> tuple[int, float]:
    """Wait for ``proc`` (killed after ``timeout`` seconds, then TimeoutExpired) and
    return its exit code and CPU seconds from the kernel's rusage of the child. A blocking
    ``wait4``: the wall time of a child of a few milliseconds is not rounded to a poll."""
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        with contextlib.suppress(OSError):
            proc.kill()

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if expired.is_set():
        raise subprocess.TimeoutExpired(proc.args, timeout)
    return code, usage.ru_utime + usage.ru_stime


class Service:
    """A real ``orcha serve`` started with the installed script; ``pid`` is the serving
    process (the banner's, not its guard's)."""

    def __init__(self, lab: Lab, env: dict[str, str], args: list[str], name: str) -> None:
        self.lab, self.env, self.args, self.name = lab, env, args, name
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.banner_seconds = 0.0
        self.spy: subprocess.Popen[bytes] | None = None
        self.profiles: list[Path] = []  # written, not yet reported
        self._starts = 0

    @property
    def err_path(self) -> Path:
        return Path(self.env["ORCHA_STATE_DIR"]).parent / "service.err"

    def start(self, timeout: float = 120.0) -> None:
        """Start it and wait for its banner (StepError with its stderr if none comes)."""
        Path(self.env["ORCHA_STATE_DIR"]).parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with open(self.err_path, "ab") as err:
            self.proc = subprocess.Popen(
                [self.lab.orcha, "serve", *self.args],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        banner = read_line(self.proc, timeout)
        self.banner_seconds = time.perf_counter() - start
        match = re.search(r"\(pid (\d+),", banner)
        if "listening on" not in banner or match is None:
            self.stop()
            tail = self.err_path.read_text(errors="replace")[-500:]
            raise StepError(f"orcha serve did not start: {banner!r} {tail}")
        self.pid = int(match.group(1))
        self._starts += 1
        if self.lab.profile is not None:
            self._spy()

    def _spy(self) -> None:
        """Sample the serving process with py-spy until it exits (collapsed stacks of its
        threads while on a CPU, one file per start)."""
        assert self.lab.profile is not None
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        home = Path(self.env["ORCHA_STATE_DIR"]).parent.name
        out = self.lab.profile / f"{home}-{self._starts}.txt"
        argv = [spy, "record", "--format", "raw", "--nonblocking", "-p", str(self.pid)]
        self.spy = subprocess.Popen(
            [*argv, "-o", str(out)],
            env=self.lab.base_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.profiles.append(out)

    def process(self) -> psutil.Process:
        return psutil.Process(self.pid)

    def rss(self) -> int:
        return int(self.process().memory_info().rss)

    def cpu(self) -> float:
        """The serving process's own CPU seconds (its petitions' not included)."""
        times = self.process().cpu_times()
        return float(times.user + times.system)

    def stop(self, timeout: float = 60.0) -> float | None:
        """SIGTERM and wait (SIGKILL after ``timeout``): the seconds it took, None if
        killed or not running."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return None
        start = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            with contextlib.suppress(psutil.Error):
                psutil.Process(self.pid).kill()
            return None
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
            if self.spy is not None:  # it writes its file once the process is gone
                try:
                    self.spy.wait(30)
                except subprocess.TimeoutExpired:
                    self.spy.kill()
                    self.spy.wait()
                self.spy = None
        return time.perf_counter() - start


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The first line ``proc`` prints, or '' if none within ``timeout`` seconds."""
    got: list[bytes] = []
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: got.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return got[0].decode(errors="replace") if got else ""


def kill_marked(mark: str) -> list[str]:
    """Kill every process of this user whose environment carries ``MARK=mark``; each as
    "PID (its command line)". (Processes of other users cannot be read, and the bench
    starts none.)"""
    me, found, named = os.getpid(), [], []
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        with contextlib.suppress(psutil.Error):
            if p.environ().get(MARK) == mark:
                found.append(p)
                named.append(f"{p.pid} ({' '.join(p.cmdline())[:80]})")
    for p in found:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(found, timeout=5)
    return named


class Sampler:
    """Samples a process's RSS every ``interval`` seconds in a thread while in use: the
    peak, the first and last samples."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            proc = psutil.Process(self.pid)
            while True:
                self.samples.append(int(proc.memory_info().rss))
                if self._stop.wait(self.interval):
                    break
        except psutil.Error:
            pass

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)


@contextlib.contextmanager
def sampling(pid: int, interval: float = 0.02) -> Iterator[Sampler]:
    with Sampler(pid, interval) as sampler:
        yield sampler


def install(tree: Path, into: Path) -> str:
    """A fresh venv in ``into`` with a regular (not editable) ``pip install`` of ``tree``,
    as users install orcha; returns its ``orcha`` script (StepError if pip fails)."""
    subprocess.run([sys.executable, "-m", "venv", str(into)], check=True, timeout=300)
    pip = subprocess.run(
        [str(into / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(tree)],
        capture_output=True,
        timeout=900,
    )
    if pip.returncode != 0:
        raise StepError(f"pip install {tree} failed: {pip.stderr.decode(errors='replace')[-500:]}")
    return str(into / "bin" / "orcha")


def script_python(orcha: str) -> str:
    """The Python an installed ``orcha`` script runs with (its shebang), else this one."""
    try:
        with open(orcha, "rb") as f:
            first = f.readline().decode(errors="replace")
    except OSError:
        return sys.executable
    if first.startswith("#!") and "python" in first:
        return first[2:].split()[0]
    return sys.executable


def describe(orcha: str) -> str:
    """What is measured: the script, orcha's version and where its package lives (and a
    warning if that is an editable install, whose import hook slows every client)."""
    python = script_python(orcha)
    code = "import orcha, sys; print(getattr(orcha, '__version__', '?'), orcha.__file__)"
    try:
        out = subprocess.run(
            # From /: with `-c`, the working directory comes first on sys.path, and a
            # source tree there would be taken for the installed package.
            [python, "-c", code],
            capture_output=True,
            timeout=60,
            text=True,
            cwd="/",
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        out = "?"
    editable = "" if "site-packages" in out else "  (WARNING: not in site-packages: editable?)"
    return f"{orcha}: orcha {out}{editable}"


def tsp_server(lab: Lab, env: dict[str, str], name: str, slots: int) -> tuple[str, dict[str, str]]:
    """task-spooler with its own socket under the run's directory, ``slots`` jobs at once,
    stopped with ``tsp -K`` at the end: (its path, its environment)."""
    tsp = tool("tsp")
    home = lab.dir(name)
    tsp_env = dict(env, TS_SOCKET=str(home / "socket"), TMPDIR=str(home), TS_MAXFINISHED="100000")
    lab.run([tsp, "-S", str(slots)], tsp_env)
    lab.on_close(lambda: subprocess.run([tsp, "-K"], env=tsp_env, capture_output=True, timeout=30))
    return tsp, tsp_env


def tool(name: str) -> str:
    """The path of a peer's command (StepError if it is not installed)."""
    path = shutil.which(name)
    if path is None:
        raise StepError(f"{name} is not installed: no peer to compare with")
    return path
