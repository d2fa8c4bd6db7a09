"""Point 6: a slow reader cannot grow the service's memory.

A follower and a watcher are stopped (SIGSTOP) while a petition writes 400 MB. The
service's memory stays bounded (each subscriber buffers at most
SUBSCRIBER_BUFFER_BYTES), the petition is not slowed to their pace, its attached client
gets every byte, and once continued the follower is told it fell behind and goes on
from the petition's log, the watcher how many events were dropped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil

from tests.conftest import Env, wait_for

TOTAL = 400_000_000
PEAK_RSS = 150 << 20


class Reader:
    """Reads a process's stdout in a thread: counts the bytes, keeps the first ones."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.count = 0
        self.head = b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while chunk := os.read(fd, 1 << 20):
            self.count += len(chunk)
            if len(self.head) < 4096:
                self.head += chunk[:4096]

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")


def test_a_stopped_follower_and_watcher_do_not_grow_the_service(env: Env, tmp_path: Path) -> None:
    service = env.serve("--grace", "1")
    go = tmp_path / "go"
    script = (
        f"echo ready; while [ ! -e {go} ]; do sleep 0.05; done; "
        f"yes aaaaaaaaaaaaaaa | head -c {TOTAL}"
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        attached = env.popen("run", "big", "--", "sh", "-c", script)
        procs.append(attached)
        run = Reader(attached)
        assert wait_for(lambda: run.count > 0, timeout=20), "the petition did not start"
        follower = env.popen("follow", "big")
        watcher = env.popen("watch", "big")
        procs += [follower, watcher]
        follow, watch = Reader(follower), Reader(watcher)
        # Both are subscribed once they have printed something: the first line, the state.
        assert wait_for(lambda: follow.count > 0 and b"big" in watch.head, timeout=20)
        for proc in (follower, watcher):
            os.kill(proc.pid, signal.SIGSTOP)
        served = psutil.Process(service.pid)
        before = served.memory_info().rss
        go.touch()
        peak = before
        deadline = time.monotonic() + 300
        while attached.poll() is None and time.monotonic() < deadline:
            peak = max(peak, served.memory_info().rss)
            time.sleep(0.02)
        run.thread.join(30)
        assert attached.returncode == 0, run.stderr()
        print(f"slow readers: service RSS {before >> 20} MiB before, peak {peak >> 20} MiB "
              f"while {TOTAL} bytes went by; attached client got {run.count} bytes")  # fmt: skip
        assert run.count == len("ready\n") + TOTAL  # the petition's own client got every byte
        assert peak < PEAK_RSS
        for proc in (follower, watcher):
            os.kill(proc.pid, signal.SIGCONT)
        assert follower.wait(120) == 0
        assert watcher.wait(120) == 0
        follow.thread.join(30)
        watch.thread.join(30)
        note, dropped = follow.stderr(), watch.stderr()
        print(f"follower: {follow.count} bytes, then: {note.strip()!r}; watcher: "
              f"{dropped.strip()!r}")  # fmt: skip
        assert "fell behind" in note and "continues from the petition's log" in note
        assert "fell behind" in dropped and "dropped" in dropped
        assert service.proc is not None and service.proc.poll() is None
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
            proc.wait(10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
