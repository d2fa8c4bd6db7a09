"""orcha on a real Dask cluster (docs/dask.rst): a scheduler and two workers on loopback,
started as the design's CI section says and stopped by PID. One test drives every
scenario in turn on that one cluster: pytest-xdist would spread separate tests over its
processes, each starting a cluster of its own (its 'loadgroup' mode does not group them
under pytest 9: it marks the groups on an attribute pytest no longer reads).

w1 declares 2 CPUs, 2 (fake) GPUs and 1 GB; w2 declares 1 CPU (its memory is measured).

The cluster speaks TLS, mutual (docs/dask.rst, "Security"), where the ``openssl`` command
is there to make a CA and a certificate in the test's folder: the scheduler and the
workers get ``--tls-ca-file/--tls-cert/--tls-key``, the service Dask's configuration
(``DASK_DISTRIBUTED__COMM__TLS__*`` in its environment). Without ``openssl`` it is plain
TCP (said in the test's output).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Env, private_env, wait_for

pytest.importorskip("distributed")

WORKER = ("--host", "127.0.0.1", "--no-nanny", "--nthreads", "8",
          "--dashboard-address", "127.0.0.1:0", "--death-timeout", "60")  # fmt: skip


def make_certificates(folder: Path) -> tuple[Path, Path, Path] | None:
    """A CA, and a key and certificate it signed for 127.0.0.1 (EC keys: quick), made
    with the ``openssl`` command; None without it."""
    if shutil.which("openssl") is None:
        return None
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "node.key",
                                                       "node.csr", "node.pem"))  # fmt: skip
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for argv in (
        ("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj",
         "/CN=orcha-test-ca"),
        ("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"),
        ("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", ext),
    ):  # fmt: skip
        subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True)
    return ca, cert, key


class Cluster:
    def __init__(self, env: Env) -> None:
        self.env = env
        self.file = env.root / "scheduler.json"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.tls: tuple[str, ...] = ()  # the scheduler's and workers' TLS options
        self.security: Any = None  # for this process's own Dask clients

    def use_tls(self) -> bool:
        """Make certificates and give them to everything started from now on."""
        made = make_certificates(self.env.root)
        if made is None:
            return False
        ca, cert, key = map(str, made)
        self.tls = ("--protocol", "tls", "--tls-ca-file", ca, "--tls-cert", cert,
                    "--tls-key", key)  # fmt: skip
        # What docs/dask.rst tells the service's host to set (its Dask configuration).
        self.env.vars.update({
            "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
            "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": ca,
            "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": cert,
            "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": key,
        })  # fmt: skip
        from distributed.security import Security

        self.security = Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key,
                                 require_encryption=True)  # fmt: skip
        return True

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        log = open(self.env.root / f"{name}.log", "wb")  # noqa: SIM115 (closed with the proc)
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                env=self.env.vars)  # fmt: skip
        log.close()
        self.procs[name] = proc
        return proc

    def worker(self, name: str, resources: str, prefix: tuple[str, ...] = ()) -> None:
        local = self.env.root / name
        local.mkdir()
        self.start(name, *(prefix or (sys.executable, "-m", "dask")), "worker",
                   "--scheduler-file", str(self.file), *WORKER, *self.tls, "--name", name,
                   "--resources", resources, "--local-directory", str(local))  # fmt: skip

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def workers(self) -> dict[str, dict[str, Any]]:
        """``orcha workers --json``'s workers by name (asked in process)."""
        with client(self.env) as c:
            return {w["name"]: w for w in c.workers()["workers"]}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with private_env("orcha-dask-") as env:
        c = Cluster(env)
        try:
            if not c.use_tls():
                print("test_dask: no openssl command: the cluster speaks plain TCP")
            c.start("scheduler", sys.executable, "-m", "dask", "scheduler", "--host",
                    "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0",
                    "--scheduler-file", str(c.file), *c.tls)  # fmt: skip
            assert wait_for(c.file.exists, timeout=60), "the scheduler did not start"
            c.worker("w1", "CPU=2,GPU=2,MEM=1e9")
            c.worker("w2", "CPU=1")
            env.serve("--dask-scheduler-file", str(c.file), "--grace", "1")
            # The workers' reports (orcha's plugin, then a heartbeat): never a fixed sleep.
            assert wait_for(
                lambda: {n for n, w in c.workers().items() if w["state"] == "ok"}
                >= {"w1", "w2"},
                timeout=60, interval=0.2,
            ), (env.root / "w1.log").read_text()  # fmt: skip
            yield c
        finally:
            for service in env.services:
                service.stop()
            for name in reversed(list(c.procs)):
                c.stop(name)


def field(env: Env, pid: str, name: str) -> Any:
    """A field of petition ``pid``'s record (asked in process: polling through the CLI
    would start a Python each time)."""
    with client(env) as c:
        return c.status(pid)[0][name]


def client(env: Env) -> Any:
    from orcha import Client, settings

    key = (env.state / "key").read_text().strip()
    return Client(settings=settings.resolve(address=str(env.socket), key=key))


def alive(marker: str) -> list[int]:
    """The ``sleep`` processes whose argument starts with ``marker``, and the shells that
    started them."""
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmdline = proc.info["cmdline"] or ()
            if any(marker in p for p in cmdline) and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc.pid)
        except psutil.Error:
            pass
    return out


def sleeps(marker: str) -> list[int]:
    """The four ``sleep`` processes of :func:`tree`."""
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline[:1] == ["sleep"] and cmdline[1:2] and cmdline[1].startswith(marker):
            out.append(proc.pid)
    return out


def tree(marker: str) -> str:
    """A command leaving a setsid'd, double-forked descendant and a plain one."""
    return (f"setsid sh -c '(sleep {marker}1 &) ; sleep {marker}2' & "
            f"(sh -c 'sleep {marker}3 &' &); sleep {marker}4")  # fmt: skip


def workers_report_their_capacity(cluster: Cluster) -> None:
    # The banner says where petitions run: the workers, not this host's --max-running.
    banner = cluster.env.services[-1].banner
    assert re.search(r"on Dask: \d worker\(s\), \d CPU slot\(s\), \d GPU\(s\), kinds", banner)
    assert "up to" not in banner and "this host" not in banner, banner
    out = cluster.env.run("workers", "--json")
    assert out.returncode == 0, out.stderr
    workers = {w["name"]: w for w in json.loads(out.stdout)["workers"]}
    assert workers["w1"]["cpus"] == 2 and workers["w1"]["gpus"] == ["0", "1"]
    assert workers["w1"]["mem_total"] == 10**9
    assert workers["w2"]["cpus"] == 1 and workers["w2"]["gpus"] == []
    assert workers["w2"]["mem_total"] > 10**9  # measured
    assert workers["w1"]["version"] == workers["w2"]["version"]
    text = cluster.env.run("workers")
    assert text.returncode == 0
    assert "2 worker(s) connected" in text.stdout
    # CPUS and GPUS are both in use/total: w1 is idle.
    header, *rows = text.stdout.splitlines()[1:]
    cells = {row.split()[0]: dict(zip(header.split(), row.split(), strict=False)) for row in rows}
    assert (cells["w1"]["CPUS"], cells["w1"]["GPUS"]) == ("0/2", "0/2"), text.stdout


def the_cluster_speaks_mutual_tls(cluster: Cluster) -> None:
    """Everything above and below went over TLS; a peer without a certificate the CA
    signed is refused."""
    if not cluster.tls:
        return
    address = json.loads(cluster.file.read_text())["address"]
    assert address.startswith("tls://127.0.0.1:")
    workers = cluster.workers()
    assert all(w["address"].startswith("tls://") for w in workers.values()), workers
    out = cluster.env.run("workers")
    assert f"Dask scheduler {address}" in out.stdout, out.stdout
    import asyncio
    import ssl

    from distributed.comm import CommClosedError, connect

    ca, cert, key = (cluster.tls[i] for i in (3, 5, 7))

    def identity(with_certificate: bool) -> str:
        context = ssl.create_default_context(cafile=ca)  # it trusts the scheduler
        if with_certificate:
            context.load_cert_chain(cert, key)

        async def ask() -> str:
            comm = await connect(address, timeout=5, ssl_context=context)
            await comm.write({"op": "identity"})
            reply = await comm.read()
            await comm.close()
            return str(reply["type"])

        return asyncio.run(ask())

    assert identity(with_certificate=True) == "Scheduler"
    with pytest.raises(CommClosedError):  # mutual: the scheduler wants the client's too
        identity(with_certificate=False)


def placement_by_cpus_memory_and_gpus(cluster: Cluster) -> None:
    env = cluster.env
    out = env.run("run", "--id", "g1", "--gpus", "2", "--", "sh", "-c", "echo $ORCHA_GPUS")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "0,1\n"
    assert field(env, "g1", "machine") == "w1"
    assert env.run("run", "--id", "c2", "--cpus", "2", "--", "true").returncode == 0
    assert field(env, "c2", "machine") == "w1"  # w2 has 1 CPU
    assert env.run("run", "--id", "m2", "--mem", "2G", "--", "true").returncode == 0
    assert field(env, "m2", "machine") == "w2"  # w1 declared 1 GB
    assert env.run("run", "--id", "p1", "--", "true").returncode == 0
    assert field(env, "p1", "machine") == "w2"  # a CPU-only petition spares the GPU host
    assert env.run("run", "--id", "on1", "--on", "w1", "--", "true").returncode == 0
    assert field(env, "on1", "machine") == "w1"  # pinned
    table = env.run("status").stdout.splitlines()
    assert table[0].split()[:4] == ["ID", "KIND", "STATE", "WHERE"]
    assert any(line.split()[:4] == ["on1", "shell", "SUCCEEDED", "w1"] for line in table)
    nowhere = env.run("run", "--on", "nowhere", "--", "true")
    assert nowhere.returncode == 204 and "no machine of this service" in nowhere.stderr
    # More than any worker has: refused at once, as on one host.
    refused = env.run("run", "--gpus", "3", "--", "true")
    assert refused.returncode == 204 and "GPU" in refused.stderr


def output_streams_byte_exact(cluster: Cluster) -> None:
    size = 50 * 1024 * 1024
    code = f"import sys; sys.stdout.buffer.write(bytes(range(256)) * {size // 256})"
    out = cluster.env.run_bytes("run", "--", sys.executable, "-c", code, timeout=120)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout) == size
    want = hashlib.sha256(bytes(range(256)) * (size // 256)).hexdigest()
    assert hashlib.sha256(out.stdout).hexdigest() == want
    both = cluster.env.run("run", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (both.returncode, both.stdout, both.stderr) == (3, "out\n", "err\n")
    # What a command leaves running is stopped when it ends (its worker says whether
    # anything is left: a round trip only then).
    out = cluster.env.run("run", "--id", "left", "--", "sh", "-c", "sleep 1739 & echo started")
    assert (out.returncode, out.stdout) == (0, "started\n"), out.stderr
    assert field(cluster.env, "left", "leftovers") == 1
    assert alive("sleep 1739") == []


def stdin_reaches_a_remote_petition(cluster: Cluster) -> None:
    env = cluster.env
    data = os.urandom(3 << 20)  # more than the client's window and the pipes hold
    out = subprocess.run([sys.executable, "-m", "orcha", "run", "--", "cat"], env=env.vars,
                         input=data, capture_output=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert hashlib.sha256(out.stdout).digest() == hashlib.sha256(data).digest()
    # A petition that stops reading early: the client stops sending, nothing hangs.
    head = subprocess.run([sys.executable, "-m", "orcha", "run", "--", "head", "-c", "5"],
                          env=env.vars, input=data, capture_output=True, timeout=60)  # fmt: skip
    assert (head.returncode, head.stdout) == (0, data[:5]), head.stderr


def mem_is_enforced_on_the_worker(cluster: Cluster) -> None:
    hog = "x = bytearray(300 * 2**20); import time; time.sleep(30)"
    done = cluster.env.run("run", "--id", "hog", "--mem", "50M", "--", sys.executable, "-c",
                           hog, timeout=40)  # fmt: skip
    assert done.returncode == 211, (done.returncode, done.stderr)  # ExitCode.MEMORY
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(r"used [\d.]+ [KMG]iB, asked for 50 MiB$", lines[0]), lines
    assert field(cluster.env, "hog", "peak_rss") > 50 * 2**20  # the worker's wait4


def priority_after_and_why_waiting_across_workers(cluster: Cluster, tmp_path: Path) -> None:
    env = cluster.env
    gates = [tmp_path / f"gate{i}" for i in range(3)]
    wait = "while [ ! -e {} ]; do sleep 0.05; done"
    # Fill every slot of both workers (w1: 2 CPUs with both GPUs, w2: 1 CPU).
    env.run("run", "--detach", "--id", "h0", "--gpus", "2", "--", "sh", "-c", wait.format(gates[0]))
    env.run("run", "--detach", "--id", "h1", "--cpus", "1", "--", "sh", "-c",
            wait.format(gates[1]))  # fmt: skip
    env.run("run", "--detach", "--id", "h2", "--cpus", "1", "--", "sh", "-c",
            wait.format(gates[2]))  # fmt: skip
    assert wait_for(lambda: all(field(env, h, "state") == "RUNNING" for h in ("h0", "h1", "h2")))
    assert {field(env, h, "machine") for h in ("h0", "h1", "h2")} == {"w1", "w2"}

    # Measured on their workers: top shows figures (the tree: sh and its sleep).
    def measured() -> bool:
        running = json.loads(env.run("top", "--json").stdout)["running"]
        return {p["id"] for p in running if p["rss"] and p["processes"]} == {"h0", "h1", "h2"}

    assert wait_for(measured, timeout=30)
    env.run("run", "--detach", "--id", "gpu", "--gpus", "1", "--", "true")
    env.run("run", "--detach", "--id", "low", "--priority", "5", "--", "true")
    env.run("run", "--detach", "--id", "high", "--priority", "-5", "--after", "h0",
            "--", "true")  # fmt: skip
    env.run("run", "--detach", "--id", "mid", "--priority", "0", "--", "true")
    text = env.run("status", "gpu").stdout
    assert "no worker has 1 free GPU(s) (best: w1 with 0)" in text, text
    # One CPU frees on some worker: 'mid' (priority 0) goes before 'low' (5); 'high'
    # waits for h0 on the other worker. 'gpu', blocked, holds back neither on w2 (it
    # could never run there: the backfill rule keeps it room on w1 only).
    busy = next(g for h, g in zip(("h1", "h2"), gates[1:], strict=True)
                if field(env, h, "machine") == "w2")  # fmt: skip
    busy.touch()
    assert wait_for(lambda: field(env, "mid", "state") == "SUCCEEDED")
    assert field(env, "high", "state") == "QUEUED"
    for gate in gates:
        gate.touch()
    assert wait_for(lambda: field(env, "high", "state") == "SUCCEEDED")
    assert field(env, "high", "started") >= field(env, "h0", "ended")
    assert wait_for(lambda: field(env, "low", "state") == "SUCCEEDED")
    assert field(env, "mid", "started") <= field(env, "low", "started")
    assert wait_for(lambda: field(env, "gpu", "state") == "SUCCEEDED")
    assert field(env, "gpu", "machine") == "w1"


def group_limits_hold_across_workers(cluster: Cluster, tmp_path: Path) -> None:
    env = cluster.env
    out = env.run("group", "set", "pool", "--max-running", "2")
    assert out.returncode == 0, out.stderr
    gates = [tmp_path / f"gate{i}" for i in range(3)]
    for i, gate in enumerate(gates):
        env.run("run", "--detach", "--id", f"pool{i}", "--group", "pool", "--", "sh", "-c",
                f"while [ ! -e {gate} ]; do sleep 0.05; done")  # fmt: skip
    assert wait_for(lambda: [field(env, f"pool{i}", "state") for i in range(2)] == ["RUNNING"] * 2)
    # One on each worker (w2 first: CPU-only), and w1 still has a free CPU: the limit,
    # not the capacity, holds the third.
    assert {field(env, "pool0", "machine"), field(env, "pool1", "machine")} == {"w1", "w2"}
    assert field(env, "pool2", "waiting") == "group pool full (2/2)"
    gates[0].touch()
    assert wait_for(lambda: field(env, "pool2", "state") == "RUNNING")
    assert field(env, "pool1", "state") == "RUNNING"  # still 2 at once
    assert field(env, "pool2", "started") >= field(env, "pool0", "ended")
    for gate in gates[1:]:
        gate.touch()
    assert wait_for(lambda: field(env, "pool2", "state") == "SUCCEEDED")
    assert env.run("group", "rm", "pool").returncode == 0


def cancel_and_timeout_stop_the_whole_tree_on_the_worker(cluster: Cluster) -> None:
    env = cluster.env
    env.run("run", "--detach", "--id", "tree", "--", "sh", "-c", tree("1731"))
    assert wait_for(lambda: len(sleeps("1731")) == 4, timeout=30), alive("sleep 1731")

    def states() -> set[str]:
        return {psutil.Process(pid).status() for pid in sleeps("1731")}

    assert env.run("pause", "--running", "tree").returncode == 0
    assert wait_for(lambda: states() == {psutil.STATUS_STOPPED})  # the whole tree, remotely
    assert env.run("resume", "tree").returncode == 0
    assert wait_for(lambda: psutil.STATUS_STOPPED not in states())
    out = env.run("cancel", "tree")
    assert out.returncode == 0, out.stderr
    assert wait_for(lambda: field(env, "tree", "state") == "CANCELLED")
    assert alive("sleep 1731") == []  # the client hears the end once the tree is gone
    out = env.run("run", "--id", "slow", "--timeout", "1", "--", "sh", "-c", tree("1732"))
    assert out.returncode == 124, out.stderr
    assert field(env, "slow", "state") == "FAILED"
    assert alive("sleep 1732") == []


def worker_death_and_version_mismatch(cluster: Cluster, tmp_path: Path) -> None:
    env = cluster.env
    other = (sys.executable, "-c",
             "import sys, orcha; orcha.__version__ = '0.0.0+other'; "
             "from distributed.cli.dask_worker import main; "
             "sys.argv[0] = 'dask-worker'; main()")  # fmt: skip
    cluster.worker("w3", "CPU=5")
    cluster.worker("w4", "CPU=8", prefix=other)
    attached: subprocess.Popen[str] | None = None
    try:
        assert wait_for(lambda: {"w3", "w4"} <= set(cluster.workers()), timeout=60, interval=0.2)
        workers = cluster.workers()
        assert workers["w3"]["state"] == "ok"
        assert workers["w4"]["state"] == "version mismatch"
        assert workers["w4"]["version"] == "0.0.0+other"
        # Only w4 would have 8 CPUs: refused, not placed there.
        assert env.run("run", "--cpus", "8", "--", "true").returncode == 204
        gate = tmp_path / "gate"
        env.run("run", "--detach", "--id", "hold", "--", "sh", "-c",
                f"while [ ! -e {gate} ]; do sleep 0.05; done")  # fmt: skip
        assert wait_for(lambda: field(env, "hold", "machine") == "w2")  # the fullest first
        env.run("run", "--detach", "--id", "doomed", "--cpus", "3", "--", "sh", "-c", tree("1733"))
        again = 'if [ "$ORCHA_ATTEMPT" = 2 ]; then echo second; else exec sleep 17359; fi'
        env.run("run", "--detach", "--id", "again", "--retries", "1", "--", "sh", "-c", again)
        attached = subprocess.Popen(
            [sys.executable, "-m", "orcha", "run", "--id", "att", "--on", "w3", "--", "sleep",
             "17361"], env=env.vars, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert wait_for(lambda: len(sleeps("1733")) == 4 and len(sleeps("17359")) == 1
                        and len(sleeps("17361")) == 1, timeout=30)  # fmt: skip
        assert field(env, "doomed", "machine") == field(env, "again", "machine") == "w3"
        # Contract: the scheduler's event for a lost worker, as orcha reads it.
        from distributed import Client

        watcher = Client(scheduler_file=str(cluster.file), set_as_default=False,
                         security=cluster.security)  # fmt: skip
        w3 = workers["w3"]["address"]
        os.kill(cluster.procs["w3"].pid, signal.SIGKILL)
        # Read back from the scheduler's record of the topic (its last 1000 events), not
        # through a subscription made just before: under load the kill could come first.
        assert wait_for(lambda: any(
            m.get("action") == "remove-worker" and m.get("worker") == w3
            for _, m in watcher.get_events("all")
        ), timeout=30)  # fmt: skip
        assert wait_for(lambda: field(env, "doomed", "state") == "INTERRUPTED")

        def stuck(dask_scheduler: Any) -> list[str]:
            return [str(k) for k, t in dask_scheduler.tasks.items() if t.state == "no-worker"]

        # Its tasks were taken back: none waits for w3 to return (to run again).
        assert wait_for(lambda: watcher.run_on_scheduler(stuck) == [])
        watcher.close()
        assert wait_for(lambda: field(env, "doomed", "state") == "INTERRUPTED")
        assert "w3" in field(env, "doomed", "message")
        # The attached client says its worker was lost, not that the service was.
        _, err = attached.communicate(timeout=30)
        assert attached.returncode == 206, err
        want = "orcha: petition att was interrupted: worker w3 was lost (--retries reruns it)\n"
        assert err == want, err
        # With a retry left, it runs again on a worker that has room (w1).
        assert wait_for(lambda: field(env, "again", "state") == "SUCCEEDED")
        assert (field(env, "again", "machine"), field(env, "again", "attempt")) == ("w1", 2)
        assert env.run("logs", "again").stdout.endswith("second\n")
        gate.touch()
        # Its spawner stopped the tree when its worker died (grace 5 s by default).
        assert wait_for(lambda: alive("sleep 1733") == [], timeout=15)
        assert wait_for(lambda: cluster.workers().get("w3", {}).get("state") == "lost")
        out = env.run("run", "--cpus", "4", "--", "true", timeout=5)  # fits nowhere now
        assert out.returncode == 204
    finally:
        if attached is not None and attached.poll() is None:
            attached.kill()
            attached.wait(10)
        cluster.stop("w3")
        cluster.stop("w4")


def a_pinned_petition_waits_for_its_lost_worker_saying_so(cluster: Cluster) -> None:
    """Its worker lost, a petition pinned with --on and a retry left waits for it to
    rejoin: RUNNING (between attempts), its record naming no machine, and status saying
    what it waits for, not that it runs on the lost worker."""
    env = cluster.env
    cluster.worker("w6", "CPU=1")
    try:
        assert wait_for(lambda: cluster.workers().get("w6", {}).get("state") == "ok",
                        timeout=60, interval=0.2)  # fmt: skip
        env.run("run", "--detach", "--id", "pinned", "--on", "w6", "--retries", "1", "--",
                "sleep", "17363")  # fmt: skip
        assert wait_for(lambda: len(sleeps("17363")) == 1, timeout=30)
        assert field(env, "pinned", "machine") == "w6"
        os.kill(cluster.procs["w6"].pid, signal.SIGKILL)
        why = "worker w6 was lost; waiting for it to rejoin (--on) for attempt 2"

        def waiting() -> Any:
            with client(env) as c:
                return c.status("pinned")[0].get("waiting")

        assert wait_for(lambda: waiting() == why, timeout=30)
        assert (field(env, "pinned", "state"), field(env, "pinned", "machine")) == (
            "RUNNING", None)  # fmt: skip
        shown = env.run("status", "pinned")
        assert "Machine" not in shown.stdout and why in shown.stdout, shown.stdout
        assert env.run("cancel", "pinned").returncode == 0
        assert wait_for(lambda: field(env, "pinned", "state") == "CANCELLED")
        assert wait_for(lambda: sleeps("17363") == [], timeout=15)  # its spawner stopped it
    finally:
        cluster.stop("w6")


def a_restarted_service_interrupts_remote_petitions_and_stops_their_trees(
    cluster: Cluster,
) -> None:
    env = cluster.env
    env.run("run", "--detach", "--id", "before", "--", "sh", "-c", tree("1734"))
    assert wait_for(lambda: len(sleeps("1734")) == 4, timeout=30)
    env.services[-1].kill_service()  # kill -9: the guard cannot reach a worker's tree
    # Its worker sees the service's stream close and not come back: it stops the tree
    # (TERM, the grace of 1 s, KILL) without waiting for the next 'orcha serve'.
    # (DASK_ORPHAN_SECONDS + grace = 3 s; the margin is for a loaded machine.)
    assert wait_for(lambda: alive("sleep 1734") == [], timeout=8), alive("sleep 1734")
    env.serve("--dask-scheduler-file", str(cluster.file), "--grace", "1")
    assert field(env, "before", "state") == "INTERRUPTED"


def a_lost_scheduler_is_reached_again(cluster: Cluster) -> None:
    """kill -9 of the scheduler: the service says so (health, why waiting), keeps trying,
    and takes the new scheduler (its file read again: a new port) and its new worker."""
    env = cluster.env
    old = json.loads(cluster.file.read_text())["address"]
    scheduler = cluster.procs.pop("scheduler")
    scheduler.kill()
    scheduler.wait(10)

    def health() -> Any:
        return env.run("health")

    assert wait_for(lambda: health().returncode == 1, timeout=15), health().stdout
    out = health()
    assert "dask: the Dask scheduler at" in out.stdout and "unreachable" in out.stdout, out
    env.run("run", "--detach", "--id", "back", "--", "echo", "hi")
    assert wait_for(lambda: "unreachable" in (field(env, "back", "waiting") or ""))
    cluster.start("scheduler2", sys.executable, "-m", "dask", "scheduler", "--host",
                  "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0",
                  "--scheduler-file", str(cluster.file), *cluster.tls)  # fmt: skip

    def address() -> str:
        try:
            return str(json.loads(cluster.file.read_text())["address"])
        except (OSError, ValueError, KeyError):
            return old

    assert wait_for(lambda: address() != old, timeout=60)
    cluster.worker("w5", "CPU=1")
    assert wait_for(lambda: field(env, "back", "state") == "SUCCEEDED", timeout=60)
    assert field(env, "back", "machine") == "w5"
    assert health().returncode == 0
    # The old client, replaced, had its reconnect cancelled: not a failure, no traceback.
    logged = env.services[-1].stderr
    assert "Traceback" not in logged and "CancelledError" not in logged, logged


@pytest.mark.timeout(600)  # seven tests' worth (about 25 s unloaded)
def test_on_a_dask_cluster(cluster: Cluster, tmp_path: Path) -> None:
    """Every scenario, in this order, on the one cluster (each leaves it as it found it,
    but the service's restart and the scheduler's, which come last)."""
    (tmp_path / "priority").mkdir()
    (tmp_path / "death").mkdir()
    (tmp_path / "groups").mkdir()
    workers_report_their_capacity(cluster)
    the_cluster_speaks_mutual_tls(cluster)
    placement_by_cpus_memory_and_gpus(cluster)
    output_streams_byte_exact(cluster)
    stdin_reaches_a_remote_petition(cluster)
    mem_is_enforced_on_the_worker(cluster)
    priority_after_and_why_waiting_across_workers(cluster, tmp_path / "priority")
    group_limits_hold_across_workers(cluster, tmp_path / "groups")
    cancel_and_timeout_stop_the_whole_tree_on_the_worker(cluster)
    worker_death_and_version_mismatch(cluster, tmp_path / "death")
    a_pinned_petition_waits_for_its_lost_worker_saying_so(cluster)
    a_restarted_service_interrupts_remote_petitions_and_stops_their_trees(cluster)
    a_lost_scheduler_is_reached_again(cluster)
