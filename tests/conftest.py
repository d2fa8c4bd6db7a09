"""Shared fixtures: an isolated environment, a real ``orcha serve``, and the CLI.

Every service a test starts runs as ``sys.executable -m orcha serve`` in a private
temporary runtime/state directory, is waited for with a timeout, and is stopped by its
PID (with everything it started) in the fixture's finaliser.
"""

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

READY_TIMEOUT = 20.0


def _sigint_at_default_in_every_child() -> None:
    """Tests send SIGINT to the processes they start (as Ctrl+C would) and expect its
    default disposition there. A suite started from a shell that ignores SIGINT (``nohup``,
    ``&`` in a non-interactive shell) would pass SIG_IGN down to every one of them, since
    an ignored signal stays ignored across fork and exec. A handled signal does not: exec
    resets it to its default. So if this process ignores SIGINT, it handles it instead,
    as Python does by default; every process the suite starts (with any helper or
    directly, services, clients and the docs' shells alike) then begins with SIGINT at
    SIG_DFL. (A preexec_fn in each spawn would do the same at the price of a fork instead
    of a vfork for every process, and only in the helpers that remember to pass it.)"""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


_sigint_at_default_in_every_child()


def _kill_tree(pid: int) -> None:
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = [proc, *proc.children(recursive=True)]
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=5)


class Env:
    """A private orcha environment: its own runtime and state directories."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runtime = root / "run"
        self.state = root / "state"
        self.vars = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("ORCHA_") and k not in ("COVERAGE_PROCESS_START",)
        }
        self.config_dir = root / "config"  # XDG_CONFIG_HOME: never the user's own file
        self.vars.update(
            XDG_CONFIG_HOME=str(self.config_dir),
            ORCHA_RUNTIME_DIR=str(self.runtime),
            ORCHA_STATE_DIR=str(self.state),
            PYTHONUNBUFFERED="1",
        )
        self.services: list[Service] = []

    def add_plugin(self, name: str, source: str) -> Path:
        """Write ``source`` as plugin module ``name`` in this environment's plugin folder,
        which ``ORCHA_PLUGIN_PATH`` names from now on; the folder."""
        plugins = self.root / "plugins"
        plugins.mkdir(exist_ok=True)
        (plugins / f"{name}.py").write_text(source)
        self.vars["ORCHA_PLUGIN_PATH"] = str(plugins)
        return plugins

    @property
    def socket(self) -> Path:
        return self.runtime / "orcha.sock"

    def run(
        self,
        *args: str,
        timeout: float = 60,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the orcha CLI to completion; text output. Its stdin is ``input``, or
        /dev/null: never the test runner's own (``orcha run`` sends a piped stdin on)."""
        return subprocess.run(
            [sys.executable, "-m", "orcha", *args],
            env={**self.vars, **(env or {})},
            cwd=cwd,
            capture_output=True,
            timeout=timeout,
            text=True,
            input=input.decode() if input else None,
            **({} if input else {"stdin": subprocess.DEVNULL}),  # type: ignore[arg-type]
        )

    def run_bytes(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "orcha", *args],
            env=self.vars,
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def popen(
        self, *args: str, env: dict[str, str] | None = None, **kw: object
    ) -> subprocess.Popen[bytes]:
        """Start the orcha CLI in the background (pipes for stdout and stderr; stdin
        /dev/null unless given)."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(
            [sys.executable, "-m", "orcha", *args],
            env={**self.vars, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **kw,  # type: ignore[arg-type]
        )

    def info(self, timeout: float = 10.0) -> dict[str, Any]:
        """The service's own account of itself (petitions, served objects, sessions);
        fails the test if the service does not answer within ``timeout`` seconds."""
        from orcha import settings
        from orcha.client.session import Session

        key = (self.state / "key").read_text().strip()
        session = Session.open(settings.resolve(address=str(self.socket), key=key))
        answer: list[dict[str, Any]] = []
        asker = threading.Thread(target=lambda: answer.append(session.call("info")), daemon=True)
        try:
            asker.start()
            asker.join(timeout)
        finally:
            session.close()
        assert answer, f"the service did not answer 'info' within {timeout} s"
        return answer[0]

    def serve(
        self, *args: str, env: dict[str, str] | None = None, command: tuple[str, ...] = ("serve",)
    ) -> Service:
        """Start ``orcha COMMAND ARGS`` (``orcha serve`` unless a plugin's serve command is
        given) and wait until it is listening."""
        service = Service(self, list(args), env or {}, command)
        self.services.append(service)
        service.start()
        return service


class Service:
    """A real ``orcha serve`` subprocess."""

    def __init__(
        self,
        env: Env,
        args: list[str],
        extra_env: dict[str, str],
        command: tuple[str, ...] = ("serve",),
    ) -> None:
        self.env = env
        self.args = args
        self.command = command
        self.extra_env = extra_env
        self.proc: subprocess.Popen[bytes] | None = None
        self.banner = ""
        self.stderr_lines: list[str] = []
        # A wrapper command in front of python (e.g. prlimit with its flags).
        self.prefix: tuple[str, ...] = ()

    @property
    def pid(self) -> int:
        """The PID of ``orcha serve`` as started: the guard, unless ``ORCHA_NO_GUARD=1``
        (then the service itself). Signals sent to it reach the service."""
        assert self.proc is not None
        return self.proc.pid

    @property
    def service_pid(self) -> int:
        """The PID of the service process (the banner's ``pid``): the guard's child."""
        match = re.search(r"\(pid (\d+),", self.banner)
        assert match, f"no pid in the banner {self.banner!r}"
        return int(match.group(1))

    @property
    def guarded(self) -> bool:
        return self.service_pid != self.pid

    def kill_service(self, timeout: float = 30) -> int:
        """SIGKILL the service process alone, as a crash would, and wait for ``orcha
        serve`` to exit; returns its exit status (137 from a guard once it has stopped
        what the service left running, -9 without a guard)."""
        assert self.proc is not None
        os.kill(self.service_pid, signal.SIGKILL)
        return self.proc.wait(timeout)

    def start(self, expect_ready: bool = True) -> None:
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "orcha", *self.command, *self.args],
            env={**self.env.vars, **self.extra_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        threading.Thread(target=self._collect_stderr, daemon=True).start()
        if expect_ready:
            self.wait_ready()

    def _collect_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line.decode(errors="replace"))

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait for the 'listening on' line; fail the test if it does not come in time."""
        assert self.proc is not None and self.proc.stdout is not None
        result: list[str] = []
        reader = threading.Thread(
            target=lambda: result.append(self.proc.stdout.readline().decode())
        )  # type: ignore[union-attr]
        reader.daemon = True
        reader.start()
        reader.join(timeout)
        if not result or "listening on" not in result[0]:
            self.kill()
            raise AssertionError(
                f"service not ready within {timeout}s: {result!r} {''.join(self.stderr_lines)}"
            )
        self.banner = result[0]

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None:
            _kill_tree(self.proc.pid)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()


@contextlib.contextmanager
def private_env(prefix: str = "orcha-t-") -> Iterator[Env]:
    """A private environment in a new folder; afterwards every service started in it is
    stopped (killed if it does not stop) and the folder removed. For fixtures of any
    scope (a module's shared service: ``with private_env() as e: e.serve(...); yield e``)."""
    # Short paths: a unix socket path must stay under 108 bytes.
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    e = Env(root)
    try:
        yield e
    finally:
        for service in e.services:
            if service.proc is not None and service.proc.poll() is None:
                try:
                    service.stop(timeout=20)
                except subprocess.TimeoutExpired:
                    pass
            service.kill()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def env() -> Iterator[Env]:
    with private_env() as e:
        yield e


@pytest.fixture
def service(env: Env) -> Service:
    """A running service with defaults (max-running 2, grace 2 s) in a private environment."""
    return env.serve("--max-running", "2", "--grace", "2")


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until true or ``timeout``; returns its last value (tests only)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return bool(value)
        time.sleep(interval)


@pytest.fixture(autouse=True, scope="session")
def no_leftover_processes() -> Iterator[None]:
    """The suite must not leave any process behind."""
    yield
    time.sleep(0.2)
    left = [
        p for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE
    ]
    for p in left:
        p.kill()
    assert not left, f"processes left behind: {[(p.pid, p.cmdline()) for p in left]}"
