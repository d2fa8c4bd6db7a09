"""systemd: the units pass systemd-analyze verify, and the service speaks sd_notify
(READY, STATUS, WATCHDOG from a live scheduler only, STOPPING) to a fake NOTIFY_SOCKET."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Env, Service, wait_for
from tests.integration.clients import WAIT, new_id

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_UNIT = ROOT / "systemd" / "orcha.service"
USER_UNIT = ROOT / "systemd" / "user" / "orcha.service"

pytestmark = pytest.mark.timeout(90)

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@needs_analyze
def test_the_system_unit_passes_systemd_analyze_verify() -> None:
    result = subprocess.run(["systemd-analyze", "verify", str(SYSTEM_UNIT)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@needs_analyze
def test_the_user_unit_passes_systemd_analyze_verify() -> None:
    # A short path: systemd-analyze reads the user's socket units, whose socket paths
    # under it must fit in a unix address (108 bytes; pytest's tmp_path may not).
    runtime = Path(tempfile.mkdtemp(prefix="xdg-", dir="/tmp"))
    runtime.chmod(0o700)
    try:
        result = subprocess.run(
            ["systemd-analyze", "--user", "verify", str(USER_UNIT)],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        )  # fmt: skip
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize("unit", [SYSTEM_UNIT, USER_UNIT], ids=["system", "user"])
def test_units_match_orchas_shutdown(unit: Path) -> None:
    settings = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    assert settings["Type"] == "notify" and settings["NotifyAccess"] == "all"
    assert settings["KillMode"] == "mixed" and settings["KillSignal"] == "SIGTERM"
    # orcha's grace (5 s) plus its delivery drain (10 s) fit before systemd's SIGKILL.
    assert int(settings["TimeoutStopSec"]) > 5 + 10
    assert "--log-format json" in settings["ExecStart"]
    assert int(settings["WatchdogSec"]) > 0
    # systemctl reload: SIGHUP, which orcha (through its guard) takes as a reload.
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"


class FakeSystemd:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, dict[str, str]]] = []

    def read(self, until: float) -> None:
        """Collect messages until the monotonic time ``until``."""
        while (left := until - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def wait_for(self, key: str, timeout: float = WAIT) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, fields in self.messages:
                if key in fields:
                    return fields
            self.read(min(deadline, time.monotonic() + 0.2))
        raise AssertionError(f"no {key} within {timeout} s: {self.messages}")

    def pings(self) -> list[float]:
        return [t for t, f in self.messages if f.get("WATCHDOG") == "1"]


@pytest.fixture
def fake_systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    fake = FakeSystemd(tmp_path / "notify.sock")
    yield fake
    fake.sock.close()


STUCK_PLUGIN = '''
"""A predicate that blocks (holding the scheduler's lock) while a file exists."""
import os
import time

from orcha.plugins import BasePlugin


def stuck(petition):
    gate = os.environ["ORCHA_TEST_STUCK"]
    if os.path.exists(gate):
        open(gate + ".entered", "w").close()  # the test measures from here
    while os.path.exists(gate):
        time.sleep(0.05)
    return True


class Stuck(BasePlugin):
    name = "stucktest"

    def predicates(self):
        return [stuck]


plugin = Stuck
'''


def test_the_service_speaks_sd_notify(env: Env, fake_systemd: FakeSystemd, tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "orcha_stucktest.py").write_text(STUCK_PLUGIN)
    stuck = tmp_path / "stuck"
    service = env.serve("--max-running", "1", env={
        "NOTIFY_SOCKET": str(fake_systemd.path), "WATCHDOG_USEC": "400000",
        "PYTHONPATH": str(plugins), "ORCHA_TEST_STUCK": str(stuck),
    })  # fmt: skip
    ready = fake_systemd.wait_for("READY")
    assert ready["READY"] == "1" and ready["MAINPID"] == str(service.pid)
    assert ready["STATUS"] == "0 queued, 0 running, 0/1 CPUs in use"

    # WATCHDOG=1 at half of WATCHDOG_USEC (0.2 s) while the scheduler is alive.
    fake_systemd.read(time.monotonic() + 1.5)
    assert len(fake_systemd.pings()) >= 4, fake_systemd.messages

    # STATUS follows the queue.
    petition = new_id("sd")
    result = env.run("run", petition, "--detach", "--", "sleep", "30", timeout=WAIT)
    assert result.returncode == 0, result.stderr
    assert _status_seen(fake_systemd, "0 queued, 1 running, 1/1 CPUs in use")

    # A stuck scheduler (a predicate blocking under its lock) stops the pings.
    env.run("cancel", petition, timeout=WAIT)
    stuck.touch()
    # The submission is answered only once its admission walk is done: do not wait.
    client = env.popen("run", new_id("sd-stuck"), "--detach", "--", "true")
    try:
        entered = Path(f"{stuck}.entered")
        deadline = time.monotonic() + WAIT
        while not entered.exists():  # the walk has reached the predicate: now it is stuck
            assert time.monotonic() < deadline, "the predicate was never asked"
            fake_systemd.read(time.monotonic() + 0.05)
        fake_systemd.read(time.monotonic() + 0.3)  # a ping already on its way arrives
        before = len(fake_systemd.pings())
        fake_systemd.read(time.monotonic() + 1.5)
        assert len(fake_systemd.pings()) <= before + 1, "pings went on with a stuck scheduler"
        stuck.unlink()
        fake_systemd.read(time.monotonic() + 1.0)
        assert len(fake_systemd.pings()) >= before + 3, "pings did not come back"
        assert client.wait(timeout=WAIT) == 0
    finally:
        if stuck.exists():
            stuck.unlink()
        if client.poll() is None:
            client.kill()
            client.wait()

    # SIGHUP (systemctl reload's ExecReload): RELOADING=1, then READY=1 again; no stop.
    assert service.proc is not None
    service.proc.send_signal(signal.SIGHUP)
    reloading = fake_systemd.wait_for("RELOADING")
    assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
    assert wait_for(lambda: len([f for _, f in fake_systemd.messages if "READY" in f]) == 2
                    or fake_systemd.read(time.monotonic() + 0.1), WAIT)  # fmt: skip
    assert service.proc.poll() is None and "reload:" in service.stderr

    # STOPPING=1 on SIGTERM.
    service.proc.send_signal(signal.SIGTERM)
    stopping = fake_systemd.wait_for("STOPPING")
    assert stopping["STOPPING"] == "1" and stopping["STATUS"].startswith("stopping")
    assert service.proc.wait(timeout=WAIT) == 0


def _status_seen(fake: FakeSystemd, status: str) -> bool:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if any(f.get("STATUS") == status for _, f in fake.messages):
            return True
        fake.read(min(deadline, time.monotonic() + 0.2))
    return False


def test_without_notify_socket_nothing_is_sent(env: Env) -> None:
    service: Service = env.serve()
    assert service.proc is not None and service.proc.poll() is None  # serves as usual


def test_log_format_json(env: Env) -> None:
    service = env.serve("-v", "--log-format", "json")
    result = env.run("run", new_id("lj"), "--", "true", timeout=WAIT)
    assert result.returncode == 0
    assert service.proc is not None
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(timeout=WAIT) == 0
    time.sleep(0.2)  # the stderr reader thread catches up
    lines = [json.loads(line) for line in service.stderr_lines if line.strip()]
    assert lines and all(set(e) >= {"time", "level", "logger", "message"} for e in lines)
    assert any("queued" in e["message"] for e in lines)
    assert all(e["time"].endswith("+00:00") for e in lines)
