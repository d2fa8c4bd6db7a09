"""Events, plugin state, finish hooks, close()/outcomes and runtime kinds, with real
services and real clients:

* ``orcha state ls|get|set|rm``, its errors, and state kept across restarts (and used by
  a plugin's ``start`` hook);
* webhooks: ``--notify URL`` and ``notify:`` in the configuration file, POSTed to a
  receiver on 127.0.0.1 inside the test (retries, a receiver that is down, progress and
  custom events), and the same events in ``orcha watch --json``;
* the ``hooks: {on_finish: ...}`` command template;
* a kind's ``close()`` on ``orcha cancel`` and Ctrl+C, and ``ctx.set_outcome``;
* ``orcha kinds add|ls|rm`` and ``orcha send --kind``.

The kinds used here come from the test plugin ``orchatest_steps``
(``tests/fixtures/platform_plugins/steps``) found through ORCHA_PLUGIN_PATH.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orcha.defaults import WEBHOOK_ATTEMPTS
from tests.conftest import Env, Service, wait_for
from tests.integration.clients import WAIT, Client, gone, new_id, orcha, petition_processes
from tests.integration.clients import without_progress as no_progress

pytestmark = pytest.mark.timeout(90)

STEPS_PLUGINS = Path(__file__).resolve().parents[1] / "fixtures" / "platform_plugins" / "steps"
STEPS = "orchatest_steps"
ENVELOPE_KEYS = {"event", "petition", "kind", "timestamp", "data"}
USAGE, UNKNOWN, REFUSED, NO_PETITION, CANCELLED, INTERRUPTED = 2, 203, 204, 209, 207, 130
BLOCK_ENDED = "orchatest_steps: a blocked close() returned"  # the steps plugin's line
OUTCOME_LINE = re.compile(r"^orcha: outcome: (.*)$", re.MULTILINE)


# -- helpers ---------------------------------------------------------------------------------
@pytest.fixture
def senv(env: Env) -> Env:
    """The environment with the orchatest_steps plugin on ORCHA_PLUGIN_PATH (service and
    clients) and no HTTP proxy (webhooks go straight to 127.0.0.1)."""
    env.vars["ORCHA_PLUGIN_PATH"] = str(STEPS_PLUGINS)
    for name in list(env.vars):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            del env.vars[name]
    env.vars["NO_PROXY"] = env.vars["no_proxy"] = "127.0.0.1,localhost"
    return env


def serve(env: Env, *args: str, extra: dict[str, str] | None = None) -> Service:
    return env.serve("--max-running", "2", "--grace", "2", *args, env=extra)


def stop(service: Service) -> None:
    """SIGTERM the service; it must exit 0 (and so be gone) before the test goes on."""
    assert service.stop(timeout=WAIT) == 0, service.stderr
    assert wait_for(lambda: "stopped (exit code 0)" in service.stderr, WAIT), service.stderr


def write_config(env: Env, text: str) -> Path:
    path = env.root / "config" / "orcha" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def record(env: Env, petition_id: str) -> dict[str, Any]:
    """``orcha status --json ID``'s record of the petition."""
    rows = json.loads(orcha(env, "status", "--json", petition_id)[0])["petitions"]
    assert len(rows) == 1, rows
    return rows[0]


def outcomes(stderr: str) -> list[Any]:
    """The outcomes a client printed (``orcha: outcome: JSON``)."""
    return [json.loads(m) for m in OUTCOME_LINE.findall(stderr)]


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass
class Post:
    path: str
    status: int  # what the receiver answered
    body: dict[str, Any]
    content_type: str
    at: float  # time.monotonic() on arrival


class Receiver:
    """An HTTP server on 127.0.0.1 (a free port) that records every POST; it answers
    500 to the first ``fail_first`` of them and 204 to the rest."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.posts: list[Post] = []
        self._cond = threading.Condition()
        self._open = threading.Event()  # cleared by hold(): answers wait for release()
        self._open.set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer._cond:
                    status = 500 if len(outer.posts) < outer.fail_first else 204
                    outer.posts.append(Post(self.path, status, json.loads(body),
                                            self.headers.get("Content-Type", ""),
                                            time.monotonic()))  # fmt: skip
                    outer._cond.notify_all()
                outer._open.wait(WAIT)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def wait_posts(self, count: int, path: str | None = None, timeout: float = WAIT) -> list[Post]:
        """The POSTs (to ``path``, if given) once there are at least ``count``."""

        def matching() -> list[Post]:
            return [p for p in self.posts if path is None or p.path == path]

        with self._cond:
            self._cond.wait_for(lambda: len(matching()) >= count, timeout)
            found = matching()
        assert len(found) >= count, f"{len(found)} POSTs, expected {count}: {found}"
        return found

    def hold(self) -> None:
        """From now on, every POST is recorded on arrival but answered only on release()
        (the service gives up on one after WEBHOOK_TIMEOUT and tries again)."""
        self._open.clear()

    def release(self) -> None:
        """Answer the held POSTs and every one after them at once."""
        self._open.set()

    def arrived(self) -> int:
        """How many POSTs have arrived so far (answered or held)."""
        with self._cond:
            return len(self.posts)

    def delivered(self, path: str | None = None) -> list[dict[str, Any]]:
        """Bodies of the POSTs answered with success."""
        with self._cond:
            return [p.body for p in self.posts
                    if p.status < 300 and (path is None or p.path == path)]  # fmt: skip

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(fail_first: int = 0) -> Receiver:
        r = Receiver(fail_first)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture
def receiver(receiver_factory: Callable[..., Receiver]) -> Receiver:
    return receiver_factory()


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback URL where nothing listens: the port is held by a socket that is bound
    but not listening (so no one else takes it and connections are refused)."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{holder.getsockname()[1]}/down"
    finally:
        holder.close()


def events_of(bodies: list[dict[str, Any]], petition_id: str) -> list[str]:
    return [b["event"] for b in bodies if b["petition"] == petition_id]


# -- 1. plugin state -------------------------------------------------------------------------
def test_state_set_get_ls_and_errors(senv: Env) -> None:
    service = serve(senv)
    assert orcha(senv, "state", "set", "shell", "k", "5") == ("", "")
    assert orcha(senv, "state", "get", "shell", "k") == ("5\n", "")
    orcha(senv, "state", "set", "shell", "text", '"some words"')
    orcha(senv, "state", "set", "shell", "list", '[1, {"a": null}, true]')
    out, err = orcha(senv, "state", "ls", "shell")
    assert err == ""
    assert sorted(out.splitlines()) == [
        'k\t5', 'list\t[1, {"a": null}, true]', 'text\t"some words"',
    ]  # fmt: skip
    assert orcha(senv, "state", "get", "shell", "list")[0] == '[1, {"a": null}, true]\n'

    # Not JSON: refused by the client (nothing sent), with a hint how to quote text.
    out, err = orcha(senv, "state", "set", "shell", "k", "notjson", code=USAGE)
    assert out == ""
    assert "'notjson' is not JSON" in err and "'\"notjson\"'" in err, err
    assert orcha(senv, "state", "get", "shell", "k")[0] == "5\n"  # unchanged

    out, err = orcha(senv, "state", "get", "nope", "k", code=UNKNOWN)
    assert out == "" and "the service has no plugin 'nope'" in err and "shell" in err, err
    orcha(senv, "state", "ls", "nope", code=UNKNOWN)
    orcha(senv, "state", "set", "nope", "k", "1", code=UNKNOWN)
    out, err = orcha(senv, "state", "get", "shell", "missing", code=NO_PETITION)
    assert err == (
        "orcha: plugin shell has no state key 'missing'; see 'orcha state ls shell'\n"
    ), err

    orcha(senv, "state", "rm", "shell", "k")
    orcha(senv, "state", "get", "shell", "k", code=NO_PETITION)
    # The namespaces are apart: the steps plugin's state has only its own key.
    assert orcha(senv, "state", "ls", STEPS)[0] == "starts\t1\n"
    stop(service)


@pytest.mark.parametrize(
    "value",
    [
        "{'a': 1}",
        "tru",
        "[1,",
        "NaN",
        "Infinity",
    ],
)
def test_state_set_refuses_values_that_are_not_json(senv: Env, value: str) -> None:
    serve(senv)
    out, err = orcha(senv, "state", "set", "shell", "k", value, code=USAGE)
    assert out == ""
    assert f"{value!r} is not JSON; quote text as JSON" in err, err
    orcha(senv, "state", "get", "shell", "k", code=NO_PETITION)  # nothing was stored


def test_state_survives_a_restart_and_a_start_hook_reads_and_writes_it(senv: Env) -> None:
    service = serve(senv)
    assert orcha(senv, "state", "get", STEPS, "starts")[0] == "1\n"  # written by its start hook
    orcha(senv, "state", "set", "shell", "k", "5")
    orcha(senv, "state", "set", STEPS, "note", '{"kept": [1, 2]}')
    stop(service)

    service = serve(senv)
    assert orcha(senv, "state", "get", STEPS, "starts")[0] == "2\n"
    assert orcha(senv, "state", "get", "shell", "k")[0] == "5\n"
    assert orcha(senv, "state", "get", STEPS, "note")[0] == '{"kept": [1, 2]}\n'
    assert sorted(orcha(senv, "state", "ls", STEPS)[0].splitlines()) == [
        'note\t{"kept": [1, 2]}', "starts\t2",
    ]  # fmt: skip
    stop(service)


# -- 2. webhooks -----------------------------------------------------------------------------
def test_notify_posts_submitted_started_finished(senv: Env, receiver: Receiver) -> None:
    serve(senv)
    petition_id = new_id("x")
    out, err = orcha(senv, "run", petition_id, "--notify", receiver.url(), "--",
                     "sh", "-c", "echo hi; exit 2", code=2)  # fmt: skip
    assert (out, err) == ("hi\n", "")
    posts = receiver.wait_posts(3)
    time.sleep(0.5)  # nothing more comes (output is not a default event)
    assert len(receiver.posts) == 3, receiver.posts
    for post in posts:
        assert (post.path, post.status, post.content_type) == ("/hook", 204, "application/json")
        assert set(post.body) == ENVELOPE_KEYS, post.body
        assert (post.body["petition"], post.body["kind"]) == (petition_id, "shell")
        assert isinstance(post.body["timestamp"], float)
    bodies = [p.body for p in posts]
    assert [b["event"] for b in bodies] == ["submitted", "started", "finished"]
    stamps = [b["timestamp"] for b in bodies]
    assert stamps == sorted(stamps)
    assert abs(stamps[0] - time.time()) < 60
    finished = bodies[2]["data"]
    assert (finished["id"], finished["state"], finished["code"]) == (petition_id, "FAILED", 2)
    assert record(senv, petition_id)["notify_error"] is None


def assert_not_waited_for(receiver: Receiver) -> None:
    """What just returned did not wait for the deliveries to ``receiver``, which holds
    every POST unanswered: it returned before the first one's tries ran out. (Waiting for
    a delivery means waiting for its answer, which never comes while held, or for its last
    try, which arrives only after WEBHOOK_ATTEMPTS tries of WEBHOOK_TIMEOUT each: 18 s.)
    An order of events, not a duration: a loaded machine does not reorder them."""
    assert receiver.arrived() < WEBHOOK_ATTEMPTS, "returned only once every try had failed"


def test_notify_retries_a_receiver_that_fails(
    senv: Env, receiver_factory: Callable[..., Receiver]
) -> None:
    receiver = receiver_factory(fail_first=2)
    serve(senv)
    petition_id = new_id("retry")
    receiver.hold()
    try:
        orcha(senv, "run", petition_id, "--notify", receiver.url(), "--", "true")
        assert_not_waited_for(receiver)  # the client does not wait for deliveries
    finally:
        receiver.release()
    posts = receiver.wait_posts(5)
    assert [(p.body["event"], p.status) for p in posts] == [
        ("submitted", 500), ("submitted", 500), ("submitted", 204),
        ("started", 204), ("finished", 204),
    ]  # fmt: skip
    assert posts[0].body == posts[1].body == posts[2].body  # the same envelope, tried again
    # Growing pauses between tries (0.5 s, then 1 s).
    assert posts[1].at - posts[0].at >= 0.4, posts
    assert posts[2].at - posts[1].at >= 0.9, posts
    assert events_of(receiver.delivered(), petition_id) == ["submitted", "started", "finished"]
    time.sleep(0.3)
    assert record(senv, petition_id)["notify_error"] is None


def test_notify_to_nothing_records_notify_error_without_delaying_anyone(
    senv: Env, dead_url: str, receiver: Receiver
) -> None:
    # Every petition's events also go to a receiver that holds them: deliveries, one at a
    # time, are stuck in front of the dead URL's tries, so no client can be back before
    # them by being quick (which a loaded machine can stop it being), only by not
    # waiting for them at all.
    write_config(senv, f"notify:\n  - {receiver.url('/held')}\n")
    serve(senv)
    petition_id = new_id("down")
    receiver.hold()
    try:
        began = time.monotonic()
        orcha(senv, "run", petition_id, "--notify", dead_url, "--", "sh", "-c", "exit 0")
        assert_not_waited_for(receiver)  # the client did not wait for the webhook
        first = record(senv, petition_id)
        assert (first["state"], first["code"]) == ("SUCCEEDED", 0)  # it ended normally
        assert first["schedule"]["notify"] == [dead_url]
        assert first["notify_error"] is None  # the dead URL's tries are still to come
        # Another petition is not held up by the dead receiver (nor the held one) either.
        other = new_id("other")
        assert orcha(senv, "run", other, "--", "echo", "fine") == ("fine\n", "")
        assert_not_waited_for(receiver)
    finally:
        receiver.release()

    def error() -> str | None:
        return record(senv, petition_id)["notify_error"]

    assert wait_for(error, timeout=20, interval=0.2), "no notify_error recorded"
    elapsed = time.monotonic() - began
    assert elapsed >= 3.0, f"4 tries with pauses of 0.5, 1 and 2 s took only {elapsed:.1f}s"
    message = error()
    assert message is not None and dead_url in message and "4 tries" in message, message
    assert "refused" in message.lower(), message
    final = record(senv, petition_id)
    assert (final["state"], final["code"]) == ("SUCCEEDED", 0)
    assert record(senv, other)["notify_error"] is None
    # Once released, the held receiver has every event of both (and the service has no
    # deliveries left to it when the receiver closes).
    receiver.wait_posts(6, "/held")
    held = receiver.delivered("/held")
    expected = ["submitted", "started", "finished"]
    assert events_of(held, petition_id) == events_of(held, other) == expected, held


def test_config_notify_gets_every_petition_and_progress_when_asked(
    senv: Env, receiver: Receiver
) -> None:
    write_config(
        senv,
        f"notify:\n  - {receiver.url('/all')}\n"
        f"  - {{url: {receiver.url('/progress')}, events: [progress]}}\n",
    )
    serve(senv)
    run_id, send_id = new_id("cfg-run"), new_id("cfg-send")
    orcha(senv, "run", run_id, "--", "true")  # no --notify: the file's hooks apply
    out, err = orcha(senv, "send", send_id, "--counter", "3")
    assert out == "Hello world! 0\nHello world! 1\nHello world! 2\n"
    assert no_progress(err) == ""
    receiver.wait_posts(6, "/all")
    receiver.wait_posts(3, "/progress")
    time.sleep(0.5)
    everything = receiver.delivered("/all")
    assert events_of(everything, run_id) == ["submitted", "started", "finished"]
    assert events_of(everything, send_id) == ["submitted", "started", "finished"]
    progress = receiver.delivered("/progress")
    assert [(b["event"], b["petition"], b["kind"]) for b in progress] == [
        ("progress", send_id, "hello")
    ] * 3
    assert [b["data"] for b in progress] == [
        {"value": v, "target": 3, "unit": "lines"} for v in (1, 2, 3)
    ]
    assert all(set(b) == ENVELOPE_KEYS for b in everything + progress)


def test_a_custom_event_reaches_notify_and_watch(
    senv: Env, receiver: Receiver, start: Callable[..., Client]
) -> None:
    serve(senv)
    petition_id = new_id("ev")
    gate = senv.root / "gate"
    client = start("orchatest-steps", petition_id, "event", "--gate", str(gate),
                   "--notify", receiver.url())  # fmt: skip
    assert client.out.wait_for(lambda d: b"waiting for the gate\n" in d), client.err.text()
    watcher = start("watch", petition_id, "--json")
    # The watcher gets the current state first: once it has, it is subscribed.
    assert watcher.out.wait_for(lambda d: b'"event": "state"' in d), watcher.err.text()
    gate.touch()
    rc, out, err = client.finish_text()
    assert (rc, out, no_progress(err)) == (0, "waiting for the gate\nevent sent\n", "")
    rc, out, err = watcher.finish_text()
    assert (rc, err) == (0, ""), err
    watched = [e for e in json_lines(out) if e["event"] != "output"]
    assert [e["event"] for e in watched] == ["state", "steps_event.checkpoint", "finished"]
    checkpoint = watched[1]
    assert set(checkpoint) == ENVELOPE_KEYS
    assert (checkpoint["petition"], checkpoint["kind"], checkpoint["data"]) == (
        petition_id, "steps_event", {"n": 1},
    )  # fmt: skip

    receiver.wait_posts(4)
    bodies = receiver.delivered()
    assert [b["event"] for b in bodies] == [
        "submitted", "started", "steps_event.checkpoint", "finished",
    ]  # fmt: skip
    assert bodies[2]["data"] == {"n": 1} and bodies[2]["petition"] == petition_id
    assert set(bodies[2]) == ENVELOPE_KEYS


def test_a_runtime_kinds_custom_event_is_named_after_its_parent_kind(
    senv: Env, receiver: Receiver
) -> None:
    # A notify: entry listing the parent kind's event hears it from its runtime kinds.
    write_config(senv, f"notify:\n  - {{url: {receiver.url('/ev')}, "
                       "events: [steps_event.checkpoint]}\n")  # fmt: skip
    serve(senv)
    gate = senv.root / "gate"
    gate.touch()
    orcha(senv, "kinds", "add", "gated", "--from", "steps_event", "--set", f"gate={gate}")
    petition_id = new_id("tmpl")
    out, _ = orcha(senv, "send", petition_id, "--kind", "gated")
    assert out == "waiting for the gate\nevent sent\n"
    receiver.wait_posts(1, "/ev")
    ((body,),) = [receiver.delivered("/ev")]
    assert (body["event"], body["kind"], body["petition"], body["data"]) == (
        "steps_event.checkpoint", "gated", petition_id, {"n": 1},
    )  # fmt: skip


# -- 3. the on_finish hook -------------------------------------------------------------------
def test_on_finish_hook_runs_after_each_petition(senv: Env) -> None:
    hooked = senv.root / "finished.txt"
    write_config(senv, f'hooks: {{on_finish: "echo {{id}} {{state}} {{code}} >> {hooked}"}}\n')
    orcha(senv, "config", "validate")
    serve(senv)
    failing, fine = new_id("fail"), new_id("fine")
    orcha(senv, "run", failing, "--", "sh", "-c", "exit 3", code=3)
    orcha(senv, "run", fine, "--", "true")
    expected = [f"{failing} FAILED 3", f"{fine} SUCCEEDED 0"]

    def lines() -> list[str]:
        return hooked.read_text().splitlines() if hooked.exists() else []

    assert wait_for(lambda: len(lines()) >= 2, WAIT), lines()
    assert lines() == expected


def test_an_on_finish_template_with_an_unknown_field_is_refused(senv: Env) -> None:
    path = write_config(senv, 'hooks: {on_finish: "echo {id} {nope}"}\n')
    out, err = orcha(senv, "config", "validate", code=USAGE)
    assert out == ""
    assert err.startswith(f"orcha: {path}: hooks.on_finish: unknown field {{nope}}"), err
    assert err.count("\n") == 1, err
    result = senv.run("serve", timeout=WAIT)  # and serve will not start on it
    assert result.returncode == USAGE, (result.stdout, result.stderr)
    assert "hooks.on_finish" in result.stderr
    assert not senv.socket.exists()


@pytest.mark.parametrize("template", ["echo {code:d}", "echo {id!x}", "echo {id:{nope}}"])
def test_an_on_finish_template_that_cannot_be_formatted_is_refused(
    senv: Env, template: str
) -> None:
    path = write_config(senv, f'hooks: {{on_finish: "{template}"}}\n')
    out, err = orcha(senv, "config", "validate", code=USAGE)
    assert out == ""
    assert err.startswith(f"orcha: {path}: hooks.on_finish: "), err


def test_an_on_finish_template_that_validate_accepts_does_not_wedge_the_service(
    senv: Env,
) -> None:
    write_config(senv, 'hooks: {on_finish: "echo {id} {code:d}"}\n')
    validate = senv.run("config", "validate", timeout=WAIT)
    if validate.returncode == USAGE:  # refused up front: serve must refuse it as well
        assert "hooks.on_finish" in validate.stderr
        assert senv.run("serve", timeout=WAIT).returncode == USAGE
        return
    service = serve(senv)
    try:
        for _ in range(3):  # more petitions than --max-running 2
            result = senv.run("run", new_id("fmt"), "--", "echo", "hi", timeout=6)
            assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr
        health = json.loads(orcha(senv, "health", "--json")[0])
        assert (health["running"], health["cpus_in_use"]) == (0, 0), health
    finally:
        # A wedged service ignores the first SIGTERM (it waits for its "running"
        # petitions); the second one stops it by force.
        for _ in range(2):
            if service.proc is not None and service.proc.poll() is None:
                service.signal(signal.SIGTERM)
                wait_for(lambda: service.proc.poll() is not None, 5)  # type: ignore[union-attr]


def test_on_finish_hooks_of_petitions_cancelled_by_a_stop_still_run(
    senv: Env, start: Callable[..., Client]
) -> None:
    hooked = senv.root / "finished.txt"
    write_config(senv, f'hooks: {{on_finish: "sleep 1; echo {{id}} {{state}} >> {hooked}"}}\n')
    service = senv.serve("--max-running", "3", "--grace", "2")
    ids = [new_id("stopped") for _ in range(3)]
    clients = [start("run", i, "--", "sh", "-c", "echo up; exec sleep 300") for i in ids]
    for client in clients:
        assert client.out.wait_for(lambda d: b"up\n" in d), client.err.text()
    stop(service)
    for client in clients:
        assert client.finish()[0] == CANCELLED

    def lines() -> list[str]:
        return hooked.read_text().splitlines() if hooked.exists() else []

    wait_for(lambda: len(lines()) >= 3, 8)
    assert sorted(lines()) == sorted(f"{i} CANCELLED" for i in ids)


def test_the_finished_webhook_of_a_petition_cancelled_by_a_stop_is_delivered(
    senv: Env, receiver_factory: Callable[..., Receiver], start: Callable[..., Client]
) -> None:
    receiver = receiver_factory(fail_first=2)  # the first event takes 1.5 s of retries
    service = serve(senv)
    petition_id = new_id("stopped")
    client = start("run", petition_id, "--notify", receiver.url(), "--",
                   "sh", "-c", "echo up; exec sleep 300")  # fmt: skip
    assert client.out.wait_for(lambda d: b"up\n" in d), client.err.text()
    stop(service)
    assert client.finish()[0] == CANCELLED
    wait_for(lambda: len(receiver.delivered()) >= 3, 10)
    assert events_of(receiver.delivered(), petition_id) == ["submitted", "started", "finished"]


# -- 4. progress in watch --------------------------------------------------------------------
PROGRESS = [{"value": v, "target": 3, "unit": "lines"} for v in (1, 2, 3)]


def test_watch_all_json_shows_progress_events(senv: Env, start: Callable[..., Client]) -> None:
    serve(senv)
    watcher = start("watch", "--json")
    # Subscribed once it has seen a petition submitted after it started.
    deadline = time.monotonic() + WAIT
    while True:
        warm = new_id("warm")
        orcha(senv, "run", warm, "--", "true")
        if watcher.out.wait_for(lambda d, w=warm: f'"petition": "{w}"'.encode() in d, 1):
            break
        assert time.monotonic() < deadline, watcher.err.text()
    petition_id = new_id("prog")
    out, _ = orcha(senv, "send", petition_id, "--counter", "3", "--sleep-time", "0.3")
    assert out == "Hello world! 0\nHello world! 1\nHello world! 2\n"
    finished = f'"event": "finished", "petition": "{petition_id}"'.encode()
    assert watcher.out.wait_for(lambda d: finished in d), watcher.out.text(0)
    watcher.proc.send_signal(signal.SIGINT)
    rc, out, _ = watcher.finish_text()
    assert rc == INTERRUPTED
    mine = [e for e in json_lines(out) if e["petition"] == petition_id]
    assert all(set(e) == ENVELOPE_KEYS for e in mine)
    assert [e["data"] for e in mine if e["event"] == "progress"] == PROGRESS
    assert all(e["kind"] == "hello" for e in mine)
    states = [e["event"] for e in mine if e["event"] not in ("output", "progress")]
    assert states == ["submitted", "started", "finished"]


def test_watch_id_json_shows_progress_events(senv: Env, start: Callable[..., Client]) -> None:
    serve(senv)
    gate = senv.root / "gate"
    blocker = new_id("blocker")
    start("run", blocker, "--", "sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.05; done")
    # Known to the service before the next client names it in --after (both clients
    # start at once; the second must not win the race).
    assert wait_for(lambda: record_state(senv, blocker) == "RUNNING", WAIT)
    petition_id = new_id("prog")
    # Queued behind the blocker, so the watcher is there before its first progress report.
    client = start("send", petition_id, "--counter", "3", "--sleep-time", "0.3",
                   "--after", blocker)  # fmt: skip
    assert wait_for(lambda: record_state(senv, petition_id) == "QUEUED", WAIT)
    watcher = start("watch", petition_id, "--json")
    assert watcher.out.wait_for(lambda d: b'"event": "state"' in d), watcher.err.text()
    gate.touch()
    rc, out, err = client.finish_text()
    assert (rc, out) == (0, "Hello world! 0\nHello world! 1\nHello world! 2\n"), err
    rc, out, err = watcher.finish_text()  # it ends by itself once the petition has
    assert (rc, err) == (0, "")
    events = json_lines(out)
    assert [e["data"] for e in events if e["event"] == "progress"] == PROGRESS
    assert events[0]["data"]["state"] == "QUEUED"
    assert [e["event"] for e in events if e["event"] not in ("output", "progress")] == [
        "state", "started", "finished",
    ]  # fmt: skip


def record_state(env: Env, petition_id: str) -> str | None:
    result = env.run("status", "--json", petition_id, timeout=WAIT)
    rows = json.loads(result.stdout)["petitions"] if result.returncode == 0 else []
    return rows[0]["state"] if rows else None


# -- 5. close() and outcomes -----------------------------------------------------------------
def start_loop(start: Callable[..., Client], *args: str) -> tuple[str, Client]:
    petition_id = new_id("loop")
    client = start("orchatest-steps", petition_id, "loop", *args)
    assert client.out.wait_for(lambda d: b"looping\n" in d), client.err.text()
    time.sleep(0.3)  # a few loops
    return petition_id, client


def test_cancel_calls_close_first_and_keeps_its_outcome(
    senv: Env, start: Callable[..., Client]
) -> None:
    serve(senv)
    petition_id, client = start_loop(start)
    assert orcha(senv, "cancel", petition_id) == ("", f"orcha: cancelled {petition_id}\n")
    rc, out, err = client.finish_text()
    assert rc == CANCELLED, err
    # The action heard of the cancel only once close() had returned.
    assert out == "looping\ncancel heard; close had returned: True\n"
    (outcome,) = outcomes(err)
    assert set(outcome) == {"closed_after"} and outcome["closed_after"] >= 1, err
    assert f"orcha: petition {petition_id} was cancelled" in err
    row = record(senv, petition_id)
    assert (row["state"], row["outcome"]) == ("CANCELLED", outcome)


def test_ctrl_c_in_the_attached_client_calls_close(senv: Env, start: Callable[..., Client]) -> None:
    serve(senv)
    petition_id, client = start_loop(start)
    client.proc.send_signal(signal.SIGINT)
    rc, out, err = client.finish_text()
    assert rc == INTERRUPTED, err
    assert out == "looping\ncancel heard; close had returned: True\n"
    assert err.startswith(
        f"orcha: cancelling petition {petition_id} (press Ctrl+C again to stop waiting)\n"
    ), err
    (outcome,) = outcomes(err)
    assert set(outcome) == {"closed_after"} and outcome["closed_after"] >= 1, err
    row = record(senv, petition_id)
    assert (row["state"], row["outcome"]) == ("CANCELLED", outcome)


def test_an_outcome_set_by_a_kind_is_printed_and_kept(senv: Env) -> None:
    serve(senv)
    petition_id = new_id("out")
    out, err = orcha(senv, "orchatest-steps", petition_id, "outcome", "--answer", "7")
    assert out == "done\n"
    assert err == f'orcha: outcome: {{"answer": 7, "id": "{petition_id}"}}\n'
    row = record(senv, petition_id)
    assert (row["state"], row["code"]) == ("SUCCEEDED", 0)
    assert row["outcome"] == {"answer": 7, "id": petition_id}


@pytest.mark.parametrize(
    ("mode", "logged"),
    [
        ("raise", "close() failed: RuntimeError: close failed on purpose"),
        ("block", "close() did not return within 1s"),
    ],
)
def test_a_close_that_fails_or_blocks_still_ends_the_petition(
    senv: Env, start: Callable[..., Client], mode: str, logged: str
) -> None:
    service = serve(senv, "--grace", "1")  # the later --grace wins
    petition_id, client = start_loop(start, "--spawn", "--close", mode)
    found = re.search(rb"child (\d+)\n", bytes(client.out.data))
    assert found, bytes(client.out.data)
    child = int(found[1])
    assert not gone(child)
    orcha(senv, "cancel", petition_id)
    rc, _, err = client.finish_text()
    assert rc == CANCELLED, err
    # It ended without waiting for close(): a blocking one (60 s) has not returned yet
    # when the petition's client has its end, an order of events no load can turn round.
    assert BLOCK_ENDED not in service.stderr, "the petition waited for its close()"
    assert outcomes(err) == []
    assert gone(child), "the petition's child outlived it"
    assert petition_processes(petition_id) == []
    row = record(senv, petition_id)
    assert (row["state"], row["outcome"]) == ("CANCELLED", None)
    assert wait_for(lambda: logged in service.stderr, WAIT), service.stderr
    # The service goes on serving.
    assert orcha(senv, "run", new_id("after"), "--", "echo", "ok") == ("ok\n", "")
    stop(service)


# -- 6. runtime kinds ------------------------------------------------------------------------
BUILD_ARGV = ["sh", "-c", "echo built $ORCHA_ATTEMPT"]


def kinds_json(env: Env) -> list[dict[str, Any]]:
    return json.loads(orcha(env, "kinds", "ls", "--json")[0])["kinds"]


def test_runtime_kinds_add_send_restart_unavailable_rm(senv: Env) -> None:
    service = serve(senv)
    out, err = orcha(senv, "kinds", "add", "build", "--from", "shell",
                     "--set", f"argv={json.dumps(BUILD_ARGV)}", "--set", "cpus=1",
                     "--set", "timeout=1m")  # fmt: skip
    assert (out, err) == ("", "orcha: kind build defined from shell\n")
    (build,) = kinds_json(senv)
    assert (build["name"], build["from"], build["available"]) == ("build", "shell", True)
    assert build["params"] == {"argv": BUILD_ARGV}
    assert build["schedule"]["timeout"] == 60 and build["schedule"].get("cpus", 1) == 1
    out, _ = orcha(senv, "kinds", "ls")
    assert out.startswith("build  from shell  argv=") and "timeout=60" in out, out

    assert orcha(senv, "send", "b1", "--kind", "build") == ("built 1\n", "")
    row = record(senv, "b1")
    assert (row["kind"], row["state"], row["code"]) == ("build", "SUCCEEDED", 0)
    assert row["params"] == {"argv": BUILD_ARGV}
    assert row["schedule"]["timeout"] == 60 and row["schedule"].get("cpus", 1) == 1
    stop(service)

    service = serve(senv)  # the template survives a restart
    assert kinds_json(senv) == [build]
    assert orcha(senv, "send", "b2", "--kind", "build") == ("built 1\n", "")
    stop(service)

    service = serve(senv, extra={"ORCHA_DISABLE_PLUGINS": "shell"})
    assert "shell" not in service.banner.split("kinds:")[1], service.banner
    (listed,) = kinds_json(senv)
    assert listed == {**build, "available": False}
    out, _ = orcha(senv, "kinds", "ls")
    assert out.rstrip("\n").endswith("(unavailable: no loaded plugin has shell)"), out
    out, err = orcha(senv, "send", "b3", "--kind", "build", code=UNKNOWN)
    assert out == "" and "kind 'build' is a template of 'shell'" in err, err
    assert orcha(senv, "kinds", "rm", "build") == ("", "orcha: kind build removed\n")
    out, err = orcha(senv, "kinds", "rm", "build", code=NO_PETITION)
    assert err == "orcha: there is no runtime kind 'build'; see 'orcha kinds ls'\n", err
    assert kinds_json(senv) == []
    # None left: said in one line, to stderr; 'orcha kinds' alone lists as 'kinds ls' does.
    none = ("", "orcha: no runtime kinds; 'orcha kinds add NAME --from KIND' defines one\n")
    assert orcha(senv, "kinds", "ls") == orcha(senv, "kinds") == none
    stop(service)


def test_runtime_kinds_refuse_bad_settings_and_taken_names(senv: Env) -> None:
    serve(senv)
    out, err = orcha(senv, "kinds", "add", "bad", "--from", "shell", "--set", "argv=5",
                     code=REFUSED)  # fmt: skip
    assert out == "" and "params.argv" in err and "expected a list" in err, err
    out, err = orcha(senv, "kinds", "add", "hello", "--from", "shell",
                     "--set", 'argv=["true"]', code=REFUSED)  # fmt: skip
    assert err == "orcha: kind 'hello' is provided by a plugin; choose another name\n", err
    _, err = orcha(senv, "kinds", "add", "steps_loop", "--from", "shell",
                   "--set", 'argv=["true"]', code=REFUSED)  # fmt: skip
    assert "provided by a plugin" in err, err
    _, err = orcha(senv, "kinds", "add", "other", "--from", "nope", code=UNKNOWN)
    assert "no loaded plugin provides kind 'nope'" in err, err
    assert kinds_json(senv) == []
    orcha(senv, "send", "hello-still", "--counter", "1")  # 'hello' is still the plugin's


def test_a_template_of_resources_alone_takes_the_command_of_each_run(senv: Env) -> None:
    serve(senv)
    # shell requires argv: a template may leave it to each 'orcha run --kind big -- CMD'.
    _, err = orcha(senv, "kinds", "add", "big", "--from", "shell", "--set", "cpus=2",
                   "--set", "timeout=10m")  # fmt: skip
    assert err == "orcha: kind big defined from shell\n"
    assert orcha(senv, "run", "kb", "--kind", "big", "--", "echo", "mine") == ("mine\n", "")
    row = record(senv, "kb")
    assert (row["kind"], row["params"]) == ("big", {"argv": ["echo", "mine"]})
    assert row["schedule"]["cpus"] == 2 and row["schedule"]["timeout"] == 600
    # What a submission still lacks is refused then, as for any petition of the kind.
    out, err = orcha(senv, "send", "kc", "--kind", "big", code=REFUSED)
    assert out == "" and "params.argv: is required" in err, err
    # What the template gives is checked when it is defined.
    _, err = orcha(senv, "kinds", "add", "bad", "--from", "shell", "--set", "argv=5",
                   code=REFUSED)  # fmt: skip
    assert "params.argv: expected a list" in err, err


def test_describe_of_a_runtime_kind_shows_its_template_and_its_parents_parameters(
    senv: Env,
) -> None:
    serve(senv)
    orcha(senv, "kinds", "add", "big", "--from", "shell", "--set", "cpus=2")
    orcha(senv, "kinds", "add", "hk", "--from", "hello", "--set", "counter=2")
    assert orcha(senv, "describe", "big") == (
        "big (runtime kind from shell, plugin shell): Run a command (argv list) on the "
        "service host.\n"
        "settings: cpus=2 (a submission's own parameters and options override them)\n"
        "PARAMETER  TYPE             DEFAULT     CONSTRAINTS  DESCRIPTION\n"
        "argv       array of string  (required)  items >= 1   The command and its "
        "arguments (no shell).\n"
        "no other parameters are accepted\n",
        "",
    )
    out, _ = orcha(senv, "describe", "hk")  # the template's value is each run's default
    assert out.splitlines()[1:4] == [
        "settings: counter=2 sleep_time=0.0 (a submission's own parameters and options "
        "override them)",
        "PARAMETER   TYPE     DEFAULT  CONSTRAINTS  DESCRIPTION",
        "counter     integer  2        >= 0         How many lines to print.",
    ], out
    doc = json.loads(orcha(senv, "describe", "hk", "--json")[0])
    assert (doc["kind"], doc["plugin"]) == ("hk", "hello")
    assert doc["template"] == {
        "from": "hello", "params": {"counter": 2, "sleep_time": 0.0}, "schedule": {},
    }  # fmt: skip
    assert doc["schema"]["properties"]["counter"]["default"] == 1  # the parent's schema
    assert json.loads(orcha(senv, "describe", "hello", "--json")[0])["template"] is None
    out, err = orcha(senv, "describe", "nope", code=UNKNOWN)
    assert out == "" and err.endswith(
        "and the service has no runtime kind of that name; see 'orcha ls' and 'orcha kinds ls'\n"
    ), err


def test_a_queued_petition_of_a_removed_runtime_kind_survives_a_restart(senv: Env) -> None:
    service = serve(senv)
    orcha(senv, "kinds", "add", "build", "--from", "shell",
          "--set", f"argv={json.dumps(BUILD_ARGV)}")  # fmt: skip
    orcha(senv, "pause", "--all")
    assert orcha(senv, "send", "q1", "--kind", "build", "--detach")[0] == "q1\n"
    orcha(senv, "kinds", "rm", "build")
    assert record(senv, "q1")["state"] == "QUEUED"
    stop(service)
    service = serve(senv)
    orcha(senv, "resume", "--all")
    orcha(senv, "wait", "q1")
    row = record(senv, "q1")
    assert (row["state"], row["code"]) == ("SUCCEEDED", 0), row
    assert orcha(senv, "logs", "q1")[0] == "built 1\n"
    stop(service)
