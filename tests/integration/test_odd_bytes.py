"""Bytes that are not UTF-8 where users give names (a command, a working directory, an
ID, a key, a webhook URL): Linux allows them, so orcha takes them or refuses them in one
line, and shows them as the bytes they are (``\\xff``), never as Python's surrogates."""

from __future__ import annotations

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
