"""Bytes that are not UTF-8 where users give names (a command, a working directory, an
ID, a key, a webhook URL): Linux allows them, so orcha takes them or refuses them in one
line, and shows them as the bytes they are (``\\xff``), never as Python's surrogates."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import Env, Service
from tests.integration.clients import new_id, record
from tests.integration.test_run_send import one_error_line

#: What Python makes of the byte 0xff in a command line or file name (surrogateescape).
FF = "\udcff"


def test_a_command_name_that_is_not_utf8_is_not_found_exit_127(env: Env, service: Service) -> None:
    petition_id = new_id("nf")
    result = env.run("run", petition_id, "--", f"{FF}cmd")
    assert result.returncode == 127, result.stderr
    assert one_error_line(result.stderr) == "orcha: command not found: \\xffcmd"
    assert record(env, petition_id)["message"] == "command not found: \\xffcmd"


def test_a_working_directory_that_is_not_utf8_is_where_the_petition_runs(
    env: Env, service: Service, tmp_path: Path
) -> None:
    workdir = tmp_path / f"d{FF}ir"
    workdir.mkdir()
    petition_id = new_id("cwd")
    show = "import os; print(os.getcwdb().hex())"
    result = env.run("run", petition_id, "--", sys.executable, "-c", show, cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert bytes.fromhex(result.stdout.strip()) == os.fsencode(os.path.realpath(workdir))
    assert record(env, petition_id)["cwd"] == str(workdir)  # the very name, in JSON
    shown = env.run("status", petition_id)
    assert shown.returncode == 0, shown.stderr
    assert f"Cwd:         {tmp_path}/d\\xffir\n" in shown.stdout, shown.stdout


@pytest.mark.parametrize("command", ["status", "logs", "cancel", "wait", "restart"])
def test_an_id_that_is_not_utf8_names_no_petition(env: Env, service: Service, command: str) -> None:
    result = env.run(command, f"a{FF}")
    assert result.returncode == 209, result.stderr
    assert one_error_line(result.stderr).startswith("orcha: no petition has ID 'a\\xff'")


def test_a_key_that_is_not_utf8_is_refused_by_the_service(env: Env, service: Service) -> None:
    for given in (["--key", f"k{FF}", "status"], ["status"]):
        result = env.run(*given, env={"ORCHA_KEY": f"{FF}"})
        assert result.returncode == 201, result.stderr
        assert "refused" in one_error_line(result.stderr)


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (f"http://127.0.0.1:1/{FF}", "'http://127.0.0.1:1/\\xff' is not valid UTF-8"),
        ("http://127.0.0.1:1/\x1b[2J", "'http://127.0.0.1:1/\\x1b[2J' has a control character"),
    ],
)
def test_a_webhook_url_urllib_cannot_send_to_is_refused_before_anything_is_sent(
    env: Env, service: Service, url: str, said: str
) -> None:
    petition_id = new_id("nt")
    result = env.run("run", petition_id, "--notify", url, "--", "true")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("orcha run: invalid value for '--notify': "), result.stderr
    assert said in result.stderr and "percent-encode" in result.stderr, result.stderr
    assert env.run("status", petition_id).returncode == 209  # nothing was sent
