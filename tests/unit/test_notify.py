"""notify: webhooks (tries, pauses, failure report), event sinks, on_finish hooks."""

from __future__ import annotations

import json
import subprocess
from types import SimpleNamespace
from typing import Any

import pytest

from orcha.defaults import DEFAULT_EVENTS
from orcha.protocol.schedule import Schedule
from orcha.service.notify import EventSinks, FinishHooks, Webhooks
from orcha.states import State
from orcha.units import check_hook_template


def job(notify: tuple[str, ...] = (), **fields: Any) -> Any:
    base = {"id": "j1", "kind": "shell", "state": State.FAILED, "code": 2, "message": None,
            "started": 1.0, "ended": 2.0, "petition": SimpleNamespace(cwd="/tmp/x y"),
            "schedule": Schedule(notify=notify, group="build")}  # fmt: skip
    base.update(fields)
    return SimpleNamespace(**base)


def envelope(event: str = "finished") -> dict[str, Any]:
    return {"event": event, "petition": "j1", "kind": "shell", "timestamp": 1.0, "data": {}}


class Poster:
    """The HTTP seam: fails the first ``failures`` POSTs, records all."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[tuple[str, dict[str, Any], float]] = []

    def __call__(self, url: str, body: bytes, timeout: float) -> None:
        self.calls.append((url, json.loads(body), timeout))
        if len(self.calls) <= self.failures:
            raise OSError("connection refused")


def test_a_petitions_notify_urls_get_its_state_changes_and_custom_events() -> None:
    post = Poster()
    hooks = Webhooks(post=post, backoff=0)
    for event in ("submitted", "started", "output", "progress", "shell.checkpoint", "finished"):
        hooks.event(job(notify=("http://127.0.0.1:9/a",)), envelope(event))
    assert hooks.idle(5)
    assert [c[1]["event"] for c in post.calls] == [
        "submitted", "started", "shell.checkpoint", "finished"]  # fmt: skip
    assert all(c[0] == "http://127.0.0.1:9/a" and c[2] == 5.0 for c in post.calls)


def test_configured_webhooks_get_the_events_they_name() -> None:
    post = Poster()
    everyone = [{"url": "http://127.0.0.1:9/all", "events": frozenset({"progress"})},
                {"url": "http://127.0.0.1:9/std", "events": DEFAULT_EVENTS}]  # fmt: skip
    hooks = Webhooks(everyone, post=post, backoff=0)
    hooks.event(job(), envelope("progress"))
    hooks.event(job(), envelope("finished"))
    assert hooks.idle(5)
    assert [(c[0], c[1]["event"]) for c in post.calls] == [
        ("http://127.0.0.1:9/all", "progress"), ("http://127.0.0.1:9/std", "finished")]  # fmt: skip


def test_a_failing_post_is_tried_four_times_then_reported() -> None:
    post, failed = Poster(failures=10), []
    hooks = Webhooks(post=post, backoff=0, failed=lambda j, m: failed.append((j.id, m)))
    hooks.event(job(notify=("http://127.0.0.1:9/down",)), envelope())
    assert hooks.idle(5)
    assert len(post.calls) == 4
    assert failed == [("j1", "webhook http://127.0.0.1:9/down failed for event finished "
                              "(4 tries): OSError: connection refused")]  # fmt: skip


def test_a_post_that_succeeds_on_a_retry_is_not_reported() -> None:
    post, failed = Poster(failures=2), []
    hooks = Webhooks(post=post, backoff=0, failed=lambda j, m: failed.append(m))
    hooks.event(job(notify=("http://127.0.0.1:9/flaky",)), envelope())
    assert hooks.idle(5)
    assert (len(post.calls), failed) == (3, [])


def test_event_sinks_get_copies_and_a_raising_sink_harms_no_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[dict[str, Any]] = []

    def broken(envelope: dict[str, Any]) -> None:
        raise RuntimeError("sink bug")

    def keeper(envelope: dict[str, Any]) -> None:
        envelope["touched"] = True
        seen.append(envelope)

    sinks = EventSinks([("bad", broken), ("good", keeper)])
    original = envelope()
    sinks.event(original)
    assert sinks.idle(5)
    assert [e["event"] for e in seen] == ["finished"] and "touched" not in original
    assert "plugin bad: its event sink raised" in caplog.text


def test_on_finish_substitutes_fields_shell_quoted() -> None:
    runs: list[list[str]] = []

    def run(argv: list[str], **kw: Any) -> Any:
        runs.append(argv)
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    hooks = FinishHooks("echo {id} {state} {code} {group} {cwd}", run=run)
    hooks.finished(job())
    assert hooks.idle(5)
    assert runs == [["/bin/sh", "-c", "echo j1 FAILED 2 build '/tmp/x y'"]]


def test_on_finish_failures_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    def run(argv: list[str], **kw: Any) -> Any:
        return subprocess.CompletedProcess(argv, 3, b"", b"oops\n")

    hooks = FinishHooks("false", run=run)
    hooks.finished(job())
    assert hooks.idle(5)
    assert "on_finish hook exited 3: oops" in caplog.text


def test_on_finish_template_fields_are_checked() -> None:
    check_hook_template("echo {id} {state}")
    with pytest.raises(ValueError, match=r"unknown field \{nope\}"):
        check_hook_template("echo {nope}")
