"""Start times and durations far ahead, against a real ``orcha serve``: a petition due in
weeks or years leaves the service serving, also after a restart; a duration beyond the
longest orcha takes is refused, never fatal to the service's timeouts."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from orcha.protocol.messages import SubmitRequest
from orcha.protocol.schedule import Schedule
from tests.conftest import Env, private_env, wait_for
from tests.integration.clients import WAIT, new_id, orcha

TIMEOUT = 124


@pytest.fixture
def env() -> Iterator[Env]:
    with private_env() as e:
        yield e


def _state(env: Env, petition_id: str) -> str:
    out, _ = orcha(env, "status", petition_id, "--json")
    (row,) = json.loads(out)["petitions"]
    return str(row["state"])


def test_starts_weeks_and_years_ahead_keep_the_service_serving_across_a_restart(
    env: Env,
) -> None:
    """epoll waits at most ~24.8 days: a start 30 days ahead once made the service's loop
    die, and the restored petition killed every restart."""
    service = env.serve("--max-running", "2", "--grace", "2")
    busy, weeks, years = new_id("busy"), new_id("weeks"), new_id("years")
    orcha(env, "run", busy, "--detach", "--", "sleep", "600")
    assert wait_for(lambda: _state(env, busy) == "RUNNING", WAIT)
    orcha(env, "run", weeks, "--detach", "--delay", "30d", "--", "true")
    in_five_years = datetime.datetime.now() + datetime.timedelta(days=5 * 365)
    orcha(env, "run", years, "--detach", "--at", in_five_years.strftime("%Y-%m-%dT%H:%M"),
          "--", "true")  # fmt: skip
    orcha(env, "edit", weeks, "--delay", "40d")
    # The loop has looked at its next start since (each command woke it): it serves on.
    out, _ = orcha(env, "run", new_id("now"), "--", "echo", "served")
    assert out == "served\n"
    assert service.proc is not None and service.proc.poll() is None, service.stderr
    assert _state(env, busy) == "RUNNING"  # not killed with a dying service
    orcha(env, "cancel", busy)
    assert service.stop(timeout=WAIT) == 0, service.stderr

    again = env.serve("--max-running", "2", "--grace", "2")
    out, _ = orcha(env, "run", new_id("after"), "--", "echo", "restarted")
    assert out == "restarted\n"
    assert (_state(env, weeks), _state(env, years)) == ("QUEUED", "QUEUED")
    assert again.proc is not None and again.proc.poll() is None, again.stderr
    assert "Traceback" not in service.stderr + again.stderr


def _submit_raw(env: Env, petition_id: str, schedule: dict[str, Any]) -> dict[str, Any]:
    """Submit as a client that bypasses the CLI's checks would: ``schedule`` as given."""
    from orcha import settings
    from orcha.client.session import Session
    from orcha.errors import PetitionError
    from orcha.protocol.transport import set_recv_timeout

    request = SubmitRequest(
        kind="shell", id=petition_id, params={"argv": ["sleep", "1"]}, priority=None,
        cwd="/", env={}, attach=False, schedule=Schedule(),
    )  # fmt: skip
    wire = {**request.to_wire(), "schedule": schedule}
    key = (env.state / "key").read_text().strip()
    session = Session.open(settings.resolve(address=str(env.socket), key=key))
    try:
        set_recv_timeout(session.fileno(), WAIT)
        reply: dict[str, Any] = session.call("submit", wire)
        return reply
    except PetitionError as e:
        return {"refused": e.message}
    finally:
        session.close()


def test_a_huge_timeout_is_refused_and_other_timeouts_still_hold(env: Env) -> None:
    """A timeout of 200000 days once killed the service's deadlines thread: every later
    --timeout went unheard."""
    service = env.serve("--max-running", "2", "--grace", "2")
    result = env.run("run", "t1", "--detach", "--timeout", "200000d", "--", "sleep", "1")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "orcha run: invalid value for '--timeout': '200000d' is longer than the longest "
        "duration orcha takes, 3650d (10 years) (see 'orcha run --help')\n"
    )
    for schedule in ({"timeout": 1.728e10}, {"retries": 1, "retry_delay": 1.728e10}):
        reply = _submit_raw(env, new_id("raw"), schedule)
        assert "3650d (10 years)" in reply.get("refused", ""), reply
    started = time.monotonic()
    orcha(env, "run", new_id("t2"), "--timeout", "1", "--", "sleep", "4", code=TIMEOUT)
    assert time.monotonic() - started < 3.5
    assert service.proc is not None and service.proc.poll() is None
    assert "Traceback" not in service.stderr and "OverflowError" not in service.stderr
