"""Plugins that leave the rules the hard way (a real service, a fixture plugin on
ORCHA_PLUGIN_PATH): a kind whose ``run`` calls ``os._exit`` kills its service, which
'orcha serve' says in one line and ends with exit code 1, and the petition is INTERRUPTED
by the next service; a kind whose ``run`` never looks at ``ctx.cancelled`` is abandoned
after the grace period (its slot freed, 'cancel' and 'health' saying so), and the
service still stops, exit 0."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import Env, wait_for
from tests.integration.clients import new_id, orcha, record

pytestmark = pytest.mark.timeout(120)

EXIT_PLUGIN = '''
"""Kinds that break the contract of Kind.run on purpose."""
import os
import time
from pathlib import Path

from orcha.kinds import Kind
from orcha.plugins import BasePlugin


class QuitKind(Kind):
    name = "exittest_quit"
    help = "Ends the service's process with os._exit(7)."
    schema = {"type": "object"}

    def run(self, ctx):
        os._exit(7)


class StubbornKind(Kind):
    name = "exittest_stubborn"
    help = "Never looks at ctx.cancelled."
    schema = {"type": "object"}

    def run(self, ctx):
        while True:
            time.sleep(0.2)


class ExitPlugin(BasePlugin):
    name = "exittest"

    def kinds(self):
        return [QuitKind(), StubbornKind()]


plugin = ExitPlugin
'''


@pytest.fixture
def xenv(env: Env) -> Env:
    """The environment with the exit plugin on ORCHA_PLUGIN_PATH."""
    env.add_plugin("exittest", EXIT_PLUGIN)
    return env


def test_a_kind_calling_os_exit_is_named_by_the_guard_and_serve_exits_1(xenv: Env) -> None:
    service = xenv.serve("--grace", "1")
    quitter = new_id("q")
    orcha(xenv, "send", quitter, "--kind", "exittest_quit", code=206)  # the service went away
    assert service.proc is not None
    assert service.proc.wait(30) == 1  # an internal error, not the plugin's 7
    line = (
        f"orcha serve: the service (pid {service.service_pid}) died unexpectedly with exit "
        "code 7 (not through its own stop: a plugin may have called os._exit); stopping "
        "what it left running; exiting 1\n"
    )
    assert line in service.stderr_lines, service.stderr
    # The next service finds it RUNNING and never runs it again.
    again = xenv.serve("--grace", "1")
    row = record(xenv, quitter)
    assert row["state"] == "INTERRUPTED", row
    assert again.stop() == 0


def test_a_kind_that_ignores_its_cancel_is_abandoned_and_the_service_still_stops(
    xenv: Env,
) -> None:
    service = xenv.serve("--grace", "1", "--max-running", "1")
    stuck = new_id("s")
    orcha(xenv, "send", stuck, "--kind", "exittest_stubborn", "--detach")
    assert wait_for(lambda: record(xenv, stuck)["state"] == "RUNNING")
    _, err = orcha(xenv, "cancel", stuck)
    assert err == (
        f"orcha: cancelled {stuck}, but its action ignored the cancel and was abandoned: it "
        "may still run inside the service ('orcha health' counts it)\n"
    )
    row = record(xenv, stuck)
    assert (row["state"], row["code"]) == ("CANCELLED", None), row
    assert row["message"].endswith(
        "its action ignored the cancel and was abandoned: it may still run in the service"
    ), row
    # Its slot is free: the next petition runs at once.
    assert orcha(xenv, "run", new_id("next"), "--", "echo", "ran")[0] == "ran\n"
    health = xenv.run("health")
    assert health.returncode == 1, health.stdout
    assert (
        "plugin exittest: UNHEALTHY (abandoned=1 action that ignored its cancel still runs)"
        in health.stdout
    ), health.stdout
    # One more, running when the service is told to stop: it stops after the grace.
    second = new_id("s")
    orcha(xenv, "send", second, "--kind", "exittest_stubborn", "--detach")
    assert wait_for(lambda: record(xenv, second)["state"] == "RUNNING")
    began = time.monotonic()
    assert service.stop() == 0, service.stderr
    assert time.monotonic() - began < 10, service.stderr  # the grace and a bit, not 20 s
    assert "petition " + second + ": the action of kind exittest_stubborn (plugin exittest)" in (
        service.stderr
    )


def test_cancel_json_says_which_actions_were_abandoned(xenv: Env) -> None:
    service = xenv.serve("--grace", "1", "--max-running", "2")
    stuck, plain = new_id("s"), new_id("p")
    orcha(xenv, "send", stuck, "--kind", "exittest_stubborn", "--detach")
    orcha(xenv, "run", plain, "--detach", "--", "sleep", "30")
    assert wait_for(lambda: record(xenv, stuck)["state"] == "RUNNING")
    out, err = orcha(xenv, "cancel", stuck, plain, "--json")
    assert json.loads(out) == {
        "results": {stuck: "cancelled", plain: "cancelled"},
        "abandoned": [stuck],
    }, out
    assert err == ""  # --json: the JSON says it all
    # None abandoned: an empty list, the same keys.
    other = new_id("p")
    orcha(xenv, "run", other, "--detach", "--", "sleep", "30")
    out, _ = orcha(xenv, "cancel", other, "--json")
    assert json.loads(out) == {"results": {other: "cancelled"}, "abandoned": []}, out
    assert service.stop() == 0, service.stderr


STUBBORN_ORIGINAL = """
import argparse
import os
import time
from pathlib import Path
from dataclasses import dataclass

from orcha.interfaces import Message, Petition, ServiceWrapper, start_service
from orcha.lib import ClientManager, Manager
from orcha.plugins import BasePlugin

FLAG = {flag!r}


def _action(cb, p):
    while os.path.exists(FLAG):  # never looks at its cancel
        time.sleep(0.05)
    p.finish(0)


@dataclass(order=True)
class StubbornPetition(Petition):
    pass


class StubbornManager(Manager):
    def convert_to_petition(self, m):
        return StubbornPetition(
            id=m.id, queue=m.extras["queue"], action=_action, condition=lambda *_: True
        )


class StubbornPlugin(BasePlugin):
    name = "stubborn"

    def create_parser(self, parser):
        sub = parser.add_subparsers(required=True)
        sub.add_parser("serve").set_defaults(side="service")
        send = sub.add_parser("send")
        send.set_defaults(side="client")
        send.add_argument("id")

    def handle(self, ns):
        if ns.side == "service":
            return start_service(ServiceWrapper(StubbornManager()))
        manager = ClientManager()
        manager.connect()
        queue = manager.manager.Queue()
        manager.send(Message(id=ns.id, extras={{"queue": queue}}))
        item = queue.get()
        while isinstance(item, str):
            item = queue.get()
        return item if isinstance(item, int) else 0


plugin = StubbornPlugin
"""


def test_an_abandoned_action_of_the_original_api_is_counted_by_health(
    env: Env, tmp_path: Path
) -> None:
    flag = tmp_path / "hung"
    env.add_plugin("stubborn", STUBBORN_ORIGINAL.format(flag=str(flag)))
    service = env.serve(command=("stubborn", "serve"))  # its grace: the default 5 s
    flag.touch()
    sender = env.popen("stubborn", "send", "s1")
    try:
        assert wait_for(lambda: '"state": "RUNNING"' in env.run("status", "s1", "--json").stdout)
        cancel = env.run("cancel", "s1")
        assert cancel.returncode == 0, cancel.stderr
        assert "was abandoned" in cancel.stderr and "'orcha health' counts it" in cancel.stderr
        health = env.run("health")
        assert health.returncode == 1, health.stdout
        assert health.stdout.startswith("service: UNHEALTHY;")
        assert "abandoned: 1 action that ignored its cancel still runs\n" in health.stdout
    finally:
        flag.unlink()
    assert wait_for(lambda: env.run("health").returncode == 0)  # it returned after all
    sender.communicate(timeout=30)
    assert service.stop() == 0
