"""The process table as /proc tells it (orcha.service.proc_table), read for real."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from orcha.defaults import ENV_PETITION_TOKEN
from orcha.service import proc_table
from orcha.service.proc_table import read_proc_table, start_ticks
from tests.conftest import wait_for


def test_the_real_process_table_has_this_process() -> None:
    table = read_proc_table()
    me = table[os.getpid()]
    assert me.ppid == os.getppid() and me.rss > 0 and me.state in "RS"


def test_a_start_in_wall_clock_time_is_the_ticks_a_process_started_then_would_have() -> None:
    before = proc_table.boot_ticks(time.time())
    proc = subprocess.Popen([sys.executable, "-c", "input()"], stdin=subprocess.PIPE)
    try:
        info = proc_table.read_stat(proc.pid)
        after = proc_table.boot_ticks(time.time())
        assert info is not None and before is not None and after is not None
        # A second early (START_SLACK): never after the process's own start.
        slack = int(proc_table.START_SLACK * proc_table._CLK_TCK)
        assert before <= info.start <= after + slack + 1
        assert info.start - before >= slack - 1
    finally:
        proc.kill()
        proc.wait()
    assert proc_table.boot_ticks(None) is None


def test_a_threads_id_reads_as_a_thread_and_a_processs_does_not() -> None:
    import threading

    done = threading.Event()
    thread = threading.Thread(target=done.wait)
    thread.start()
    try:
        me = proc_table.read_stat(os.getpid())
        it = proc_table.read_stat(thread.native_id)  # type: ignore[arg-type]
        assert me is not None and it is not None
        assert not me.thread and it.thread and it.ppid == me.ppid
    finally:
        done.set()
        thread.join()
    assert start_ticks(os.getpid()) == me.start


def test_the_last_pid_handed_out_is_at_least_a_new_processs() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    last = proc_table.read_last_pid()
    assert last is not None and 0 < last < proc_table.read_pid_max()
    # Handed out since: the new process's, or (PIDs wrapped) one below it.
    assert last >= proc.pid or last < 1000


def test_the_token_is_the_whole_value_of_its_own_variable_only() -> None:
    key = f"{ENV_PETITION_TOKEN}="
    assert proc_table.token_in(f"{key}t1\0A=1\0".encode()) == "t1"
    assert proc_table.token_in(f"A=1\0{key}t2".encode()) == "t2"  # last, no NUL after
    assert proc_table.token_in(f"X{key}t3\0A={key}t4\0".encode()) is None
    assert proc_table.token_in(b"") is None


def test_an_environment_is_read_as_the_kernel_gives_it() -> None:
    env = {"A": "1", ENV_PETITION_TOKEN: "t5"}
    proc = subprocess.Popen([sys.executable, "-c", "input()"], env=env, stdin=subprocess.PIPE)
    try:
        expected = f"A=1\0{ENV_PETITION_TOKEN}=t5\0".encode()
        # Popen returns a moment before the kernel sets the new environment up.
        assert wait_for(lambda: proc_table.read_environ(proc.pid) == expected)
        assert proc_table.read_token(proc.pid) == "t5"
    finally:
        proc.kill()
        proc.wait()
    assert proc_table.read_environ(proc.pid) is None  # reaped: no such process
