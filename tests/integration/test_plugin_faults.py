"""Plugins cannot hurt the service (a real service, a fixture plugin on ORCHA_PLUGIN_PATH):
a kind that raises KeyboardInterrupt or returns a code outside 0-255 fails its petition
with the reason (and the records' writer lives on), and a health check that never returns
costs one thread, not one per ``orcha health``."""

from __future__ import annotations

import re

import psutil
import pytest

from tests.conftest import Env
from tests.integration.clients import new_id, orcha, record

pytestmark = pytest.mark.timeout(120)

FAULT_PLUGIN = '''
"""Kinds that misbehave on purpose, and a health check that never returns."""
import threading

import click

from orcha.cli.options import global_options
from orcha.cli.petition_options import petition_options
from orcha.kinds import Kind
from orcha.plugins import BasePlugin

FAULTS = {"interrupt": None, "negative": -1, "over": 300, "huge": 2**63, "edge": 255, "ok": 0}


class FaultKind(Kind):
    name = "faulttest"
    help = "Raises KeyboardInterrupt or returns an odd exit code, as params.what says."

    def run(self, ctx):
        what = ctx.params["what"]
        if what == "interrupt":
            raise KeyboardInterrupt("a plugin typed ^C")
        return FAULTS[what]


@click.command("faulttest")
@click.argument("petition_id", metavar="ID")
@click.argument("what", type=click.Choice(sorted(FAULTS)))
@petition_options
@global_options
def faulttest(petition_id, what):
    """Send a faulttest petition."""
    from orcha.cli.petition import attach

    return attach(FaultKind.name, petition_id, {"what": what}, None)


class FaultPlugin(BasePlugin):
    name = "orchatest_faults"

    def commands(self):
        return [faulttest]

    def kinds(self):
        return [FaultKind()]

    def health(self):
        threading.Event().wait()  # never returns


plugin = FaultPlugin
'''


@pytest.fixture
def fenv(env: Env) -> Env:
    """The environment with the fault plugin on ORCHA_PLUGIN_PATH."""
    env.add_plugin("orchatest_faults", FAULT_PLUGIN)
    return env


def test_a_kind_that_misbehaves_fails_its_petition_and_the_service_goes_on(fenv: Env) -> None:
    service = fenv.serve("--grace", "2")
    cases = {
        "interrupt": "petition {id} failed: KeyboardInterrupt: a plugin typed ^C",
        "negative": "exit code -1 is out of range 0-255",
        "over": "exit code 300 is out of range 0-255",
        "huge": f"exit code {2**63} is out of range 0-255",
    }
    for what, message in cases.items():
        petition_id = new_id(what)
        _, err = orcha(fenv, "faulttest", petition_id, what, code=1)
        row = record(fenv, petition_id)
        expected = message.format(id=petition_id)
        assert (row["state"], row["code"], row["message"]) == ("FAILED", 1, expected), row
        assert expected in err, err
    edge = new_id("edge")
    orcha(fenv, "faulttest", edge, "edge", code=255)  # the range's edge is kept as it is
    assert (record(fenv, edge)["state"], record(fenv, edge)["code"]) == ("FAILED", 255)
    ok = new_id("ok")
    orcha(fenv, "faulttest", ok, "ok")
    assert record(fenv, ok)["state"] == "SUCCEEDED"  # the runner and the writer live on
    assert orcha(fenv, "run", new_id("r"), "--", "echo", "still serving")[0] == "still serving\n"
    assert service.proc is not None and service.proc.poll() is None


def test_a_hung_health_check_costs_one_thread_not_one_per_call(fenv: Env) -> None:
    service = fenv.serve()
    proc = psutil.Process(service.service_pid)
    out, _ = orcha(fenv, "health", code=1)  # the first check starts, and hangs
    hung = "plugin orchatest_faults: UNHEALTHY (error=health check did not answer within 5s)"
    assert hung in out.splitlines(), out
    threads = proc.num_threads()
    for _ in range(20):
        out, _ = orcha(fenv, "health", code=1)
        (line,) = [x for x in out.splitlines() if x.startswith("plugin orchatest_faults:")]
        assert re.fullmatch(
            r"plugin orchatest_faults: UNHEALTHY \(error=its health check has not returned "
            r"for \d+s\)",
            line,
        ), out
    assert proc.num_threads() <= threads + 2, (threads, proc.num_threads())
    assert orcha(fenv, "run", new_id("r"), "--", "echo", "still serving")[0] == "still serving\n"
