"""Shell completion (click's mechanism, IDs from the service) and NO_COLOR."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

import pytest

from tests.conftest import Env
from tests.integration.clients import WAIT, new_id


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "_ORCHA_COMPLETE=bash_complete"), ("zsh", "_ORCHA_COMPLETE=zsh_complete"),
     ("fish", "_ORCHA_COMPLETE=fish_complete")],
)  # fmt: skip
def test_completion_prints_the_script_for_each_shell(env: Env, shell: str, marker: str) -> None:
    result = env.run("completion", shell, timeout=WAIT)
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout and "orcha" in result.stdout


def test_completion_of_an_unknown_shell_is_a_usage_error(env: Env) -> None:
    result = env.run("completion", "tcsh", timeout=WAIT)
    assert result.returncode == 2 and "tcsh" in result.stderr


def complete(env: Env, words: str, cword: int) -> list[str]:
    result = env.run(
        timeout=WAIT,
        env={"COMP_WORDS": words, "COMP_CWORD": str(cword), "_ORCHA_COMPLETE": "bash_complete"},
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if "," in line]


def test_commands_complete(env: Env) -> None:
    assert {"state", "status"} <= set(complete(env, "orcha sta", 1))


def test_petition_ids_complete_from_the_service(env: Env) -> None:
    env.serve()
    first, second, other = new_id("alpha"), new_id("alpine"), new_id("beta")
    for petition in (first, second, other, first):  # a name used again: listed once
        assert env.run("run", petition, "--", "true", timeout=WAIT).returncode == 0
    for command in ("logs", "status", "cancel", "follow", "wait", "pause"):
        assert complete(env, f"orcha {command} al", 2) == [first, second], command


def test_petition_ids_complete_to_nothing_without_a_service(env: Env) -> None:
    assert complete(env, "orcha logs al", 2) == []


def _on_a_terminal(env: Env, *args: str, extra: dict[str, str]) -> bytes:
    """Run orcha with stdout and stderr on a pseudo-terminal; what it wrote."""
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "orcha", *args], stdout=child, stderr=child,
        env={**env.vars, "TERM": "xterm-256color", "COLUMNS": "120", **extra},
    )  # fmt: skip
    os.close(child)
    out = b""
    deadline = time.monotonic() + WAIT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(main, 65536)
                except OSError:
                    break  # the terminal closed: the command is done
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=WAIT) == 0, out
    finally:
        os.close(main)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out


def test_status_honours_no_color_on_a_terminal(env: Env) -> None:
    env.serve()
    assert env.run("run", new_id("col"), "--", "true", timeout=WAIT).returncode == 0
    coloured = _on_a_terminal(env, "status", extra={})
    plain = _on_a_terminal(env, "status", extra={"NO_COLOR": "1"})
    assert b"SUCCEEDED" in coloured and b"SUCCEEDED" in plain
    assert b"\x1b[3" in coloured  # a colour on a terminal
    assert b"\x1b[3" not in plain  # none with NO_COLOR
