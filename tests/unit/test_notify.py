"""notify: webhooks (tries, pauses, failure report), event sinks, on_finish hooks."""

from __future__ import annotations

import json
import subprocess
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from orcha.defaults import DEFAULT_EVENTS
from orcha.protocol.schedule import Schedule
from orcha.service.notify import EventSinks, FinishHooks, Webhooks
from orcha.states import State
from orcha.units import check_hook_template
from tests.conftest import wait_for


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
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []

    def __call__(self, url: str, body: bytes, timeout: float, headers: dict[str, str]) -> None:
        self.calls.append((url, json.loads(body), timeout))
        self.headers.append(headers)
        self.bodies.append(body)
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


def test_at_a_stop_failing_deliveries_are_tried_again_without_the_pauses() -> None:
    post, failed = Poster(failures=100), []
    hooks = Webhooks(post=post, backoff=3600, failed=lambda j, m: failed.append(m))
    for _ in range(3):
        hooks.event(job(notify=("http://127.0.0.1:9/down",)), envelope())
    assert wait_for(lambda: len(post.calls) >= 1, 5)  # the first try, then an hour's pause
    assert not hooks.idle(0.2)
    hooks.hurry()
    assert hooks.idle(30)  # every try of every delivery, with no pause between
    assert len(post.calls) == 12 and len(failed) == 3


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


# -- signed webhooks (issue 13, point 21) -----------------------------------------------------
def test_bodies_are_signed_with_the_webhooks_secret_or_the_global_one() -> None:
    import hashlib
    import hmac

    post = Poster()
    everyone = [{"url": "http://127.0.0.1:9/own", "events": DEFAULT_EVENTS, "secret": b"own"},
                {"url": "http://127.0.0.1:9/none", "events": DEFAULT_EVENTS}]  # fmt: skip
    hooks = Webhooks(everyone, post=post, backoff=0, secret=b"global")
    hooks.event(job(notify=("http://127.0.0.1:9/petition",)), envelope("finished"))
    assert hooks.idle(5)
    by_url = {c[0]: (h, b) for c, h, b in zip(post.calls, post.headers, post.bodies, strict=True)}
    for url, secret in (("/own", b"own"), ("/petition", b"global")):
        headers, body = by_url["http://127.0.0.1:9" + url]
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        assert headers["X-Orcha-Signature-256"] == expected
        assert headers["X-Hub-Signature-256"] == expected
        assert headers["X-Orcha-Event"] == "finished" and len(headers["X-Orcha-Delivery"]) == 32
    unsigned, _ = by_url["http://127.0.0.1:9/none"]
    assert "X-Orcha-Signature-256" not in unsigned and "X-Orcha-Delivery" in unsigned


def test_a_retried_delivery_keeps_its_id_and_signature() -> None:
    post = Poster(failures=2)
    hooks = Webhooks(post=post, backoff=0, secret=b"s")
    hooks.event(job(notify=("http://127.0.0.1:9/a",)), envelope("finished"))
    assert hooks.idle(5)
    assert len(post.headers) == 3 and all(h == post.headers[0] for h in post.headers)


# -- on_finish: command, log, tail; environment variables (issue 13, point 21) ---------------
def test_on_finish_gets_the_command_the_log_and_its_tail(tmp_path: Any) -> None:
    from orcha.service.logs import PetitionLog

    log = PetitionLog(str(tmp_path / "p.log"), 1 << 20)
    for i in range(15):
        log.write(1 if i % 2 else 2, f"line {i}\n".encode())
    log.close()
    runs: list[tuple[list[str], dict[str, str]]] = []

    def run(argv: list[str], **kw: Any) -> Any:
        runs.append((argv, kw["env"]))
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    hooks = FinishHooks("echo {command} {log} {tail}", run=run)
    hooks.finished(job(petition=SimpleNamespace(cwd="/", params={"argv": ["sh", "-c", "x y"]}),
                       log=log))  # fmt: skip
    assert hooks.idle(5)
    ((argv, env),) = runs
    tail = "".join(f"line {i}\n" for i in range(5, 15))
    assert argv[2] == f"echo 'sh -c '\"'\"'x y'\"'\"'' {log.path} '{tail}'"
    assert env["ORCHA_ID"] == "j1" and env["ORCHA_STATE"] == "FAILED" and env["ORCHA_CODE"] == "2"
    assert env["ORCHA_COMMAND"] == "sh -c 'x y'" and env["ORCHA_LOG"] == log.path
    assert env["ORCHA_TAIL"] == tail and env["ORCHA_GROUP"] == "build"


def test_on_finish_runs_for_a_record_ended_at_a_restart() -> None:
    runs: list[dict[str, str]] = []

    def run(argv: list[str], **kw: Any) -> Any:
        runs.append(kw["env"])
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    hooks = FinishHooks("true", run=run)
    hooks.record_ended({"id": "r1", "kind": "hello", "state": "INTERRUPTED", "code": None,
                        "message": "stopped", "params": {"counter": 3}, "log_path": None,
                        "cwd": "/w"}, "default")  # fmt: skip
    assert hooks.idle(5)
    ((env,),) = [runs]
    assert (env["ORCHA_STATE"], env["ORCHA_CODE"], env["ORCHA_COMMAND"], env["ORCHA_TAIL"]) == (
        "INTERRUPTED",
        "",
        'hello {"counter": 3}',
        "",
    )


def test_the_tail_of_a_big_log_reads_only_its_end(tmp_path: Any) -> None:
    from orcha.service.logs import PetitionLog
    from orcha.service.notify import tail_of

    log = PetitionLog(str(tmp_path / "big.log"), 1 << 30)
    for i in range(20000):
        log.write(1, f"line {i} {'x' * 80}\n".encode())
    log.write(2, b"the end, no newline")
    log.close()
    assert (
        tail_of(log.path, lines=3)
        == "".join(f"line {i} {'x' * 80}\n" for i in (19998, 19999)) + "the end, no newline"
    )
    assert len(tail_of(log.path, lines=1000, limit=500)) == 500
    assert tail_of(str(tmp_path / "none.log")) == "" and tail_of("") == ""


# -- one receiver never holds up another's deliveries ---------------------------------------
class Blocking(Poster):
    """The HTTP seam: POSTs to ``slow`` wait until ``release`` is set."""

    def __init__(self, slow: str) -> None:
        super().__init__()
        self.slow = slow
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, url: str, body: bytes, timeout: float, headers: dict[str, str]) -> None:
        if url == self.slow:
            assert self.release.wait(30)
        with self.lock:
            super().__call__(url, body, timeout, headers)


SLOW, FAST = "http://127.0.0.1:9/slow", "http://127.0.0.1:9/fast"


def test_a_slow_receiver_holds_up_no_other_receivers_deliveries() -> None:
    post = Blocking(SLOW)
    hooks = Webhooks(post=post, backoff=0)
    try:
        for event in ("submitted", "started", "finished"):
            hooks.event(job(notify=(SLOW,)), envelope(event))
        for event in ("submitted", "started", "finished"):
            hooks.event(job(notify=(FAST,), id="j2"), envelope(event))
        assert wait_for(lambda: len(post.calls) == 3, 5)  # while the slow one still waits
        assert [(c[0], c[1]["event"]) for c in post.calls] == [
            (FAST, "submitted"), (FAST, "started"), (FAST, "finished")]  # fmt: skip
        assert hooks.pending() == {SLOW: 3}
    finally:
        post.release.set()
    assert hooks.idle(5)
    assert [c[1]["event"] for c in post.calls if c[0] == SLOW] == [
        "submitted", "started", "finished"]  # fmt: skip


def test_each_receiver_gets_its_events_in_order_with_fewer_threads_than_receivers() -> None:
    post = Poster()
    hooks = Webhooks(post=post, backoff=0, threads=2)
    urls = [f"http://127.0.0.1:9/{i}" for i in range(5)]
    for n in range(40):
        for url in urls:
            hooks.event(job(notify=(url,)), {**envelope("finished"), "data": {"n": n}})
    assert hooks.idle(10)
    for url in urls:
        assert [c[1]["data"]["n"] for c in post.calls if c[0] == url] == list(range(40))


def test_at_a_stop_each_receiver_drains_and_what_is_left_is_said_by_url() -> None:
    from orcha.service.events import Events

    post = Blocking(SLOW)
    events = Events(scheduler=SimpleNamespace())  # type: ignore[arg-type]
    events.webhooks = Webhooks(post=post, backoff=3600)
    try:
        events.webhooks.event(job(notify=(SLOW,)), envelope("started"))
        events.webhooks.event(job(notify=(SLOW,)), envelope("finished"))
        assert wait_for(lambda: events.webhooks.pending() == {SLOW: 2}, 5)
        for event in ("submitted", "started", "finished"):
            events.webhooks.event(job(notify=(FAST,), id="j2"), envelope(event))
        left = events.finish_deliveries(0.5)
    finally:
        post.release.set()
    assert [c[0] for c in post.calls[:3]] == [FAST] * 3
    assert left == [f"2 webhook deliveries (2 to {SLOW})"]  # no hooks nor sinks: not named
    assert events.webhooks.idle(5)


def test_at_a_stop_only_what_is_left_is_said_with_its_count() -> None:
    from orcha.service.events import Events

    events = Events(scheduler=SimpleNamespace())  # type: ignore[arg-type]
    assert events.finish_deliveries(0) == []  # nothing configured, nothing queued
    release = threading.Event()

    def run(argv: list[str], **kw: Any) -> Any:
        assert release.wait(30)
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    events.finish_hooks = FinishHooks("true", run=run)
    events.sinks = EventSinks([("p", lambda envelope: None)])
    try:
        for _ in range(3):
            events.finish_hooks.finished(job())
        events.sinks.event(envelope())
        assert events.finish_deliveries(0.1) == ["3 on_finish hook runs"]  # the sink's went
    finally:
        release.set()
    assert events.finish_hooks.idle(5) and events.finish_deliveries(0) == []


# -- redirects: 307/308 followed as the same POST; 301/302/303 an error naming the URL --------
@pytest.fixture
def receiver() -> Any:
    """A local HTTP receiver: ``/to/CODE`` redirects to ``/landed`` with CODE; ``/landed``
    answers 200; each request is kept as (method, path, body, delivery header)."""
    import http.server

    seen: list[tuple[str, str, bytes, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            seen.append((self.command, self.path, self.rfile.read(size),
                         self.headers.get("X-Orcha-Delivery")))  # fmt: skip
            if self.path.startswith("/to/"):
                self.send_response(int(self.path[4:]))
                self.send_header("Location", "/landed")
            elif self.path == "/loop":
                self.send_response(307)
                self.send_header("Location", "/loop")
            else:
                self.send_response(200 if self.path == "/landed" else 501)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET = _answer

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize("code", [307, 308])
def test_a_307_or_308_is_followed_with_the_same_post_and_body(receiver: Any, code: int) -> None:
    base, seen = receiver
    failed: list[str] = []
    hooks = Webhooks(backoff=0, failed=lambda j, m: failed.append(m))
    hooks.event(job(notify=(f"{base}/to/{code}",)), envelope("finished"))
    assert hooks.idle(10)
    assert failed == []
    (first, landed) = seen
    assert (first[0], first[1], landed[0], landed[1]) == ("POST", f"/to/{code}", "POST", "/landed")
    assert json.loads(landed[2])["event"] == "finished" and landed[2] == first[2]
    assert landed[3] == first[3]  # the same delivery (its signature too)


@pytest.mark.parametrize("code", [301, 302, 303])
def test_a_301_302_or_303_is_an_error_naming_the_url_tried_once(receiver: Any, code: int) -> None:
    base, seen = receiver
    failed: list[str] = []
    hooks = Webhooks(backoff=0, failed=lambda j, m: failed.append(m))
    hooks.event(job(notify=(f"{base}/to/{code}",)), envelope("finished"))
    assert hooks.idle(10)
    assert [s[:2] for s in seen] == [("POST", f"/to/{code}")]  # no GET without the body
    assert failed == [
        f"webhook {base}/to/{code} failed for event finished (1 try): HTTP {code}: redirected "
        f"to {base}/landed; give that URL to --notify (or notify:)"
    ]


def test_redirects_are_followed_a_bounded_number_of_times(receiver: Any) -> None:
    from orcha.defaults import WEBHOOK_REDIRECTS

    base, seen = receiver
    failed: list[str] = []
    hooks = Webhooks(backoff=0, failed=lambda j, m: failed.append(m))
    hooks.event(job(notify=(f"{base}/loop",)), envelope("finished"))
    assert hooks.idle(10)
    assert failed == [
        f"webhook {base}/loop failed for event finished (1 try): HTTP 307: redirected more "
        f"than {WEBHOOK_REDIRECTS} times or in a loop (last to {base}/loop)"
    ]
    assert [s[:2] for s in seen] == [("POST", "/loop")] * len(seen)
    assert len(seen) <= WEBHOOK_REDIRECTS + 1


# -- custom events: named after the kind whose code emits them -------------------------------
def test_a_runtime_kinds_custom_events_are_named_after_its_parent_kind() -> None:
    from orcha.service.context import ServiceContext

    seen: list[tuple[str, str | None, dict[str, Any]]] = []
    events = SimpleNamespace(watch_event=lambda j, event, data: seen.append((event, j.kind, data)))
    petition = SimpleNamespace(kind="goodevent", params={}, cwd="/", env={})
    runtime = SimpleNamespace(id="p1", kind="ge", petition=petition, cancel_event=None,
                              attempt=1, gpu_ids=(), events=events, abandoned=False)  # fmt: skip
    ServiceContext(runtime, lambda *a: None, None).event("custom", {"n": 1})  # type: ignore[arg-type]
    plain = SimpleNamespace(**{**vars(runtime), "kind": "goodevent"})
    ServiceContext(plain, lambda *a: None, None).event("custom", {"n": 2})  # type: ignore[arg-type]
    # The same event name either way (a notify: entry listing it hears both); the
    # envelope's kind says which runtime kind the petition was submitted as.
    assert seen == [
        ("goodevent.custom", "ge", {"n": 1}),
        ("goodevent.custom", "goodevent", {"n": 2}),
    ]
