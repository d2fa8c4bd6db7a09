"""Ctrl+C and vanished clients: a petition's whole tree goes, the service keeps serving."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Env, Service, wait_for
from tests.integration.clients import (
    WAIT,
    Client,
    describe,
    gone,
    new_id,
    orcha,
    petition_processes,
    read_pid,
    record,
    states,
    without_progress,
)

GRACE = 2.0  # the ``service`` fixture's --grace
SEND_LEFT = 198.0  # what is left of a 1,000-line send 0.2 s apart once it printed 2 lines

# Trees that SIGTERM alone cannot end: a grandchild that ignores TERM and has left the
# client's process group and session (setsid), or its parent chain and the petition's
# pipes (double fork), next to an ordinary child. The grandchild writes its PID to gc.pid.
GRANDCHILD = 'trap "" TERM; echo $$ > gc.pid.tmp; mv gc.pid.tmp gc.pid; exec sleep 300\n'
TREES = {
    "setsid": "setsid sh gc.sh &\n",
    "double-fork": "(sh gc.sh </dev/null >/dev/null 2>&1 &)\n",
}


def write_tree(directory: Path, how: str) -> Path:
    (directory / "gc.sh").write_text(GRANDCHILD)
    script = directory / "tree.sh"
    script.write_text(TREES[how] + "sleep 300 &\necho started\nwait\n")
    return script


# -- helpers ---------------------------------------------------------------------------------
def notice(petition_id: str) -> str:
    return f"orcha: cancelling petition {petition_id} (press Ctrl+C again to stop waiting)"


def assert_still_serving(env: Env) -> None:
    result = env.run("send", new_id("after"), "--counter", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello world! 0\nHello world! 1\n"
    assert without_progress(result.stderr) == ""


# -- Ctrl+C ----------------------------------------------------------------------------------
@pytest.mark.parametrize("how", sorted(TREES))
def test_ctrl_c_kills_the_whole_tree_including_detached_grandchild(
    env: Env, service: Service, start: Callable[..., Client], tmp_path: Path, how: str
) -> None:
    petition_id = new_id("tree")
    script = write_tree(tmp_path, how)
    client = start("run", petition_id, "--", "sh", str(script), cwd=tmp_path)
    assert client.out.wait_for(lambda d: d == b"started\n"), bytes(client.out.data)
    grandchild = read_pid(tmp_path / "gc.pid")
    assert not gone(grandchild)
    tree = petition_processes(petition_id)
    assert grandchild in [p.pid for p in tree]
    assert len(tree) >= 3, describe(tree)  # sh, sleep, the grandchild
    assert os.getsid(grandchild) != os.getsid(client.proc.pid)

    sent = time.monotonic()
    client.proc.send_signal(signal.SIGINT)
    rc, out, err = client.finish_text(timeout=GRACE + 20)
    assert rc == 130, err
    assert out == "started\n"
    assert err.splitlines() == [notice(petition_id)]

    left = max(0.5, sent + GRACE + WAIT - time.monotonic())
    assert wait_for(lambda: gone(grandchild) and not petition_processes(petition_id), left), (
        f"left behind: {describe(petition_processes(petition_id))}"
    )
    assert_still_serving(env)


def test_a_client_started_with_sigint_ignored_keeps_ignoring_it(
    env: Env, service: Service, start: Callable[..., Client]
) -> None:
    # As ``orcha run ... &`` in a script or under nohup: Ctrl+C is not meant for it.
    petition_id = new_id("bg")

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    client = start("run", petition_id, "--", "sh", "-c", "echo started; exec sleep 300",
                   preexec_fn=ignore_sigint)  # fmt: skip
    assert client.out.wait_for(lambda d: d == b"started\n"), bytes(client.out.data)
    client.proc.send_signal(signal.SIGINT)  # discarded by the kernel at delivery
    assert client.proc.poll() is None
    assert states(env)[petition_id] == "RUNNING"
    assert env.run("cancel", petition_id).returncode == 0
    rc, out, err = client.finish_text(timeout=GRACE + 20)
    assert (rc, out) == (207, "started\n"), err
    assert wait_for(lambda: not petition_processes(petition_id), GRACE + WAIT)


def test_ctrl_c_prints_what_the_command_writes_while_it_stops(
    env: Env, service: Service, start: Callable[..., Client]
) -> None:
    petition_id = new_id("bye")
    program = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        "    print('cleanup', flush=True)\n"
        "    print('cleanup-err', file=sys.stderr, flush=True)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('started', flush=True)\n"
        "while True:\n"
        "    time.sleep(0.1)\n"
    )
    client = start("run", petition_id, "--", sys.executable, "-c", program)
    assert client.out.wait_for(lambda d: d == b"started\n"), bytes(client.out.data)
    client.proc.send_signal(signal.SIGINT)
    rc, out, err = client.finish_text(timeout=GRACE + 20)
    assert rc == 130, err
    assert out == "started\ncleanup\n"
    assert err.splitlines() == [notice(petition_id), "cleanup-err"]
    assert wait_for(lambda: not petition_processes(petition_id), GRACE + WAIT)
    assert_still_serving(env)


def test_ctrl_c_on_send_stops_it_and_keeps_printed_lines(
    env: Env, service: Service, start: Callable[..., Client]
) -> None:
    petition_id = new_id("send")
    # 1,000 lines 0.2 s apart: left alone, the send would go on for 200 s.
    client = start("send", petition_id, "--counter", "1000", "--sleep-time", "0.2")
    assert client.out.wait_for(lambda d: b"Hello world! 1\n" in d), bytes(client.out.data)
    sent = time.monotonic()
    client.proc.send_signal(signal.SIGINT)
    rc, out, err = client.finish_text(timeout=SEND_LEFT / 2)
    took = time.monotonic() - sent
    assert rc == 130, err
    assert without_progress(err).splitlines() == [notice(petition_id)]
    lines = out.splitlines(keepends=True)
    assert 2 <= len(lines) < 1000, out
    assert lines == [f"Hello world! {i}\n" for i in range(len(lines))]
    # The alternative is waiting for the send's own end, some 200 s away: half of that is
    # a bound no loaded machine reaches in the few round-trips a cancel takes, and no
    # client that waited for the end can meet.
    assert took < SEND_LEFT / 2, f"the client took {took:.1f}s to end after Ctrl+C"
    assert_still_serving(env)


def test_second_ctrl_c_stops_waiting_at_once_and_tree_still_dies(
    env: Env, start: Callable[..., Client], tmp_path: Path
) -> None:
    # The TERM-ignoring tree keeps the petition alive for the whole grace period: long
    # enough that a client which ends at once after the second Ctrl+C ends while the tree
    # still lives, however loaded the machine (see below).
    grace = 15.0
    env.serve("--max-running", "2", "--grace", str(grace))
    petition_id = new_id("twice")
    client = start(
        "run",
        petition_id,
        "--",
        "sh",
        "-c",
        'trap "" TERM; echo started; while :; do sleep 0.1; done',
    )
    assert client.out.wait_for(lambda d: d == b"started\n"), bytes(client.out.data)
    assert petition_processes(petition_id)

    first = time.monotonic()
    client.proc.send_signal(signal.SIGINT)
    assert client.err.wait_for(lambda d: notice(petition_id).encode() in d), bytes(client.err.data)
    time.sleep(0.5)  # the TERM-ignoring tree keeps the petition alive for the grace period
    assert client.proc.poll() is None, "the client ended before the grace period was over"
    assert petition_processes(petition_id), "the tree ignores TERM; it must outlive it"

    client.proc.send_signal(signal.SIGINT)
    rc, out, err = client.finish_text(timeout=WAIT)
    assert rc == 130, err
    # It stopped waiting at once: it ended while the petition it waited for still runs (the
    # service ends the tree only when the grace period is over), an order of events that
    # a loaded machine cannot turn round the way a bound on its duration could fail.
    assert petition_processes(petition_id), "the client waited for the tree to end"
    assert states(env).get(petition_id) is not None, "the client waited for the petition"
    assert out == "started\n"
    assert err.splitlines()[0] == notice(petition_id)

    # (The margin after the grace period is only a deadline for the poll.)
    left = max(0.5, first + grace + WAIT - time.monotonic())
    assert wait_for(lambda: not petition_processes(petition_id), left), (
        f"left behind: {describe(petition_processes(petition_id))}"
    )
    assert_still_serving(env)


# -- a vanished client -----------------------------------------------------------------------
def test_sigkilled_client_has_its_petition_cancelled(
    env: Env, service: Service, start: Callable[..., Client], tmp_path: Path
) -> None:
    petition_id = new_id("killed")
    script = write_tree(tmp_path, "setsid")
    client = start("run", petition_id, "--", "sh", str(script), cwd=tmp_path)
    assert client.out.wait_for(lambda d: d == b"started\n"), bytes(client.out.data)
    grandchild = read_pid(tmp_path / "gc.pid")
    assert len(petition_processes(petition_id)) >= 3

    killed = time.monotonic()
    client.proc.kill()
    assert client.proc.wait(WAIT) == -signal.SIGKILL
    left = max(0.5, killed + GRACE + WAIT - time.monotonic())
    assert wait_for(lambda: gone(grandchild) and not petition_processes(petition_id), left), (
        f"left behind: {describe(petition_processes(petition_id))}"
    )
    # The petition has ended (its ID is free again) shortly after.
    left = max(0.5, killed + GRACE + WAIT - time.monotonic())
    assert wait_for(lambda: petition_id not in states(env), left), states(env)
    again = env.run("send", petition_id, "--counter", "1")
    assert (again.returncode, again.stdout, without_progress(again.stderr)) == (
        0,
        "Hello world! 0\n",
        "",
    )
    assert_still_serving(env)


@pytest.mark.parametrize("how", ["client gone", "orcha cancel"])
def test_a_cancel_after_its_command_exited_leaves_its_outcome(
    env: Env, service: Service, start: Callable[..., Client], tmp_path: Path, how: str
) -> None:
    """The command exits 0 on its own (what it left in the background holds its output
    open a moment longer); then its client goes away (as one that cannot write what it
    got: 'orcha run ... > /dev/full'), or 'orcha cancel' comes. Nothing was stopped by
    the cancel: the record says SUCCEEDED 0, not CANCELLED with code 0; 'orcha cancel'
    says it had ended."""
    petition_id = new_id("exited")
    script = "echo $$ > main.pid; sleep 300 & echo started"
    client = start("run", petition_id, "--", "sh", "-c", script, cwd=tmp_path)
    assert client.out.wait_for(lambda d: d == b"started\n"), bytes(client.out.data)
    main = read_pid(tmp_path / "main.pid")
    assert wait_for(lambda: gone(main), WAIT)
    if how == "orcha cancel":
        _, err = orcha(env, "cancel", petition_id, code=209)
        assert (
            err
            == f"orcha: petition {petition_id!r} has already ended (SUCCEEDED); nothing to cancel\n"
        )
    client.proc.kill()
    assert client.proc.wait(WAIT) in (-signal.SIGKILL, 0)
    assert wait_for(lambda: petition_id not in states(env), GRACE + WAIT), states(env)
    row = record(env, petition_id)
    assert (row["state"], row["code"], row["message"]) == ("SUCCEEDED", 0, None), row
    assert wait_for(lambda: not petition_processes(petition_id), WAIT), (
        f"left behind: {describe(petition_processes(petition_id))}"
    )


# -- a queued petition -----------------------------------------------------------------------
def test_ctrl_c_removes_a_queued_petition(
    env: Env, start: Callable[..., Client], tmp_path: Path
) -> None:
    env.serve("--max-running", "1", "--grace", "2")
    blocker_id, queued_id = new_id("blocker"), new_id("queued")
    release = tmp_path / "release"
    blocker = start(
        "run",
        blocker_id,
        "--",
        "sh",
        "-c",
        f'echo started; i=0; while [ ! -e "{release}" ] && [ $i -lt 500 ]; do sleep 0.05; '
        f'i=$((i+1)); done; [ -e "{release}" ] || exit 9; echo done',
    )
    assert blocker.out.wait_for(lambda d: d == b"started\n"), bytes(blocker.out.data)

    queued = start("send", queued_id, "--counter", "1")
    assert wait_for(lambda: states(env).get(queued_id) == "QUEUED", WAIT), states(env)
    queued.proc.send_signal(signal.SIGINT)
    rc, out, err = queued.finish_text()
    assert rc == 130, err
    # It did not wait for the slot: it ended while the blocker, which holds the only slot
    # until released, still runs (an order of events, not a duration a load can stretch).
    assert not release.exists() and blocker.proc.poll() is None
    assert out == ""
    assert err.splitlines() == [notice(queued_id)]
    assert states(env) == {blocker_id: "RUNNING"}

    # The ID can be used again at once; the new petition waits for the slot.
    reuse = start("send", queued_id, "--counter", "2")
    assert wait_for(lambda: states(env).get(queued_id) == "QUEUED", WAIT), states(env)
    assert reuse.proc.poll() is None

    release.touch()
    assert blocker.finish_text() == (0, "started\ndone\n", "")
    rc, out, err = reuse.finish_text()
    assert (rc, out, without_progress(err)) == (0, "Hello world! 0\nHello world! 1\n", "")
    assert_still_serving(env)


# -- a client that stopped reading -------------------------------------------------------------
def pipe_held(fd: int) -> int:
    """Bytes waiting in the pipe whose read end is ``fd``."""
    import fcntl
    import termios

    buf = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return int.from_bytes(buf, sys.byteorder)


class StuckClient:
    """``orcha run ID -- yes`` whose stdout is a pipe nobody reads (``| less``, never
    scrolled): once the pipe is full the client blocks writing, and its petition's
    output queue in the service fills up."""

    def __init__(self, env: Env, petition_id: str) -> None:
        self.petition_id = petition_id
        self.read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orcha", "run", petition_id, "--", "yes"],
            env=env.vars,
            stdin=subprocess.DEVNULL,
            stdout=write_fd,
            stderr=subprocess.PIPE,
        )
        os.close(write_fd)

    def wait_stuck(self) -> None:
        assert wait_for(lambda: pipe_held(self.read_fd) >= 65536, WAIT), pipe_held(self.read_fd)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        os.close(self.read_fd)


def test_a_petition_whose_client_stopped_reading_is_cancelled_and_the_service_stops(
    env: Env,
) -> None:
    service = env.serve("--max-running", "1", "--grace", "2")
    petition_id, queued_id = new_id("stuck"), new_id("behind")
    stuck = StuckClient(env, petition_id)
    try:
        stuck.wait_stuck()
        assert env.run("run", "--detach", queued_id, "--", "true").returncode == 0
        # 'cancel' returns once the petition has ended: its ID and its slot are free.
        result = env.run("cancel", "--force", petition_id, timeout=WAIT)
        assert (result.returncode, result.stderr) == (0, f"orcha: cancelled {petition_id}\n")
        assert petition_id not in states(env)
        again = env.run("run", petition_id, "--", "echo", "again", timeout=WAIT)
        assert (again.returncode, again.stdout) == (0, "again\n"), again.stderr
        assert wait_for(lambda: queued_id not in states(env), WAIT), states(env)
    finally:
        stuck.close()
    # A stopping service does not wait for ever for such a petition either.
    stuck = StuckClient(env, new_id("stuck"))
    try:
        stuck.wait_stuck()
        assert service.stop(timeout=WAIT) == 0, service.stderr
    finally:
        stuck.close()


def test_ctrl_c_reaches_a_client_blocked_writing_to_a_reader_that_stopped(env: Env) -> None:
    """A Ctrl+C cancels the petition although the client is blocked in a write its
    reader never takes: the client prints no more of its output and ends with it (130)."""
    env.serve("--max-running", "1", "--grace", "2")
    stuck = StuckClient(env, new_id("stuck"))
    try:
        stuck.wait_stuck()
        stuck.proc.send_signal(signal.SIGINT)
        assert stuck.proc.wait(WAIT) == 130
        assert stuck.petition_id not in states(env)
        assert stuck.proc.stderr is not None
        err = stuck.proc.stderr.read().decode()
        assert err.splitlines()[0] == notice(stuck.petition_id), err
    finally:
        stuck.close()
