"""Issue 13, points 11 and 21, against a real service.

* SIGHUP (and ``orcha config reload``) reloads the configuration: a higher max_running
  starts waiting petitions at once, a lower one stops nothing, an invalid file is refused
  with its reason and the old configuration kept, a group limit above the capacity is
  warned about.
* Webhook bodies are signed (``X-Orcha-Signature-256``), checked by a real HTTP receiver
  on loopback; the ``on_finish`` hook gets the command, the log and its tail (template
  fields and ``ORCHA_*`` variables), and fires for a petition a restart marks INTERRUPTED.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Env, Service, wait_for
from tests.integration.clients import WAIT, new_id, orcha

REFUSED = 204


def write_config(env: Env, text: str) -> Path:
    path = env.root / "config" / "orcha" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def states(env: Env, *ids: str) -> list[str]:
    """The states of live petitions (asked in process: cheaper to poll than a client);
    "ENDED" for one that is no longer queued or running."""
    by_id = {p["id"]: p["state"] for p in env.info()["petitions"]}
    return [by_id.get(i, "ENDED") for i in ids]


def detach(env: Env, petition_id: str, script: str) -> None:
    orcha(env, "run", petition_id, "--detach", "--", "sh", "-c", script)


def gated(gate: Path) -> str:
    """A script that runs until ``gate`` exists."""
    return f"while [ ! -e {gate} ]; do sleep 0.05; done"


def test_sighup_and_config_reload_change_the_running_service(env: Env) -> None:
    write_config(env, "max_running: 1\ngroups:\n  wide: {max_running: 3}\n")
    service = env.serve("--grace", "1")
    # A group limit above the capacity is warned about at start (and at reload, below).
    assert wait_for(lambda: "group wide's limit of 3 running is above" in service.stderr, WAIT)
    gate = env.root / "gate"
    ids = [new_id(n) for n in "abc"]
    for petition_id in ids:
        detach(env, petition_id, gated(gate))
    assert wait_for(lambda: states(env, *ids) == ["RUNNING", "QUEUED", "QUEUED"], WAIT)

    # SIGHUP to 'orcha serve' as started (its guard forwards it): b and c start at once.
    write_config(env, "max_running: 3\n")
    service.signal(signal.SIGHUP)
    assert wait_for(lambda: states(env, *ids) == ["RUNNING"] * 3, WAIT), service.stderr
    assert wait_for(lambda: "reload: groups.wide: 3 -> no limit" in service.stderr, WAIT)
    assert "reload: max_running: 1 -> 3" in service.stderr  # (logged before the groups)

    # An invalid file: refused with the reason; the service keeps max_running 3. By
    # SIGHUP: one log line. By 'config reload': the client finds it invalid (2); given
    # another, valid file (--config), the service refuses its own (204).
    path = write_config(env, "max_running: [\n")
    service.signal(signal.SIGHUP)
    assert wait_for(lambda: "reload refused" in service.stderr, WAIT), service.stderr
    (refusal,) = [line for line in service.stderr.splitlines() if "reload refused" in line]
    assert str(path) in refusal and "not valid YAML" in refusal
    result = env.run("config", "reload", timeout=WAIT)
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and "keeps its configuration" in result.stderr
    other = env.root / "other.yaml"
    other.write_text("grace: 1\n")
    result = env.run("--config", str(other), "config", "reload", timeout=WAIT)
    assert result.returncode == REFUSED, result
    assert str(path) in result.stderr and "keeps its configuration" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert env.info()["max_running"] == 3

    # Lower, and a group limit above the capacity: nothing running is stopped.
    write_config(env, "max_running: 1\ngroups:\n  big: {max_running: 4}\n")
    out, err = orcha(env, "config", "reload")
    assert out.splitlines() == ["max_running: 3 -> 1", "groups.big: no limit -> 4"]
    assert "group big's limit of 4 running is above the service's capacity of 1" in err
    assert states(env, *ids) == ["RUNNING"] * 3
    _, err = orcha(env, "group", "set", "other", "--max-running", "2")
    assert "warning: group other's limit of 2 running is above the service's capacity" in err
    out, err = orcha(env, "config", "reload")  # the same file: nothing to change
    assert (out, err.splitlines()[0]) == ("", f"orcha: {path}: nothing changed")
    gate.touch()
    assert wait_for(lambda: states(env, *ids) == ["ENDED"] * 3, WAIT)
    assert service.stop(timeout=WAIT) == 0, service.stderr
    assert "stopping" in service.stderr


class SigningReceiver:
    """An HTTP server on 127.0.0.1 that checks each POST's signature under ``secret``."""

    def __init__(self, secret: bytes) -> None:
        self.posts: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
                given = self.headers.get("X-Orcha-Signature-256", "")
                with outer.cond:
                    outer.posts.append({
                        "valid": hmac.compare_digest(given, expected),
                        "github": self.headers.get("X-Hub-Signature-256") == expected,
                        "event": self.headers.get("X-Orcha-Event"),
                        "body": json.loads(body),
                    })  # fmt: skip
                    outer.cond.notify_all()
                self.send_response(204 if given == expected else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def finished(self, petition_id: str, *services: Service) -> dict[str, Any]:
        """The 'finished' POST of ``petition_id``, once it has come (the ``services``'
        logs are shown if it does not)."""

        def find() -> dict[str, Any] | None:
            for post in self.posts:
                body = post["body"]
                if body["event"] == "finished" and body["petition"] == petition_id:
                    return post
            return None

        with self.cond:
            came = self.cond.wait_for(lambda: find() is not None, WAIT)
            assert came, (self.posts, [service.stderr for service in services])
            found = find()
            assert found is not None
            return found


@pytest.fixture
def receiver() -> Iterator[SigningReceiver]:
    r = SigningReceiver(b"top-secret-42")
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_signed_webhooks_and_on_finish_with_output_and_after_a_restart(
    env: Env, receiver: SigningReceiver
) -> None:
    for name in list(env.vars):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            del env.vars[name]
    env.vars["NO_PROXY"] = env.vars["no_proxy"] = "127.0.0.1,localhost"
    secret = env.root / "secret"
    secret.write_text("top-secret-42\n")
    secret.chmod(0o640)
    hooked = env.root / "hooked"
    hooked.mkdir()
    script = env.root / "hook.sh"
    script.write_text(
        f'printf "%s|%s|%s|%s|%s" "$ORCHA_ID" "$ORCHA_STATE" "$ORCHA_CODE" "$ORCHA_COMMAND" '
        f'"$ORCHA_LOG" > {hooked}/"$ORCHA_ID".env\n'
        f'printf "%s" "$3" > {hooked}/"$1".tail\n'
    )
    write_config(env, f"notify: [{receiver.url}]\nnotify_secret_file: {secret}\n"
                 f"hooks: {{on_finish: 'sh {script} {{id}} {{log}} {{tail}}'}}\n")  # fmt: skip
    # A secret others may read is refused, like the key.
    result = env.run("config", "validate", timeout=WAIT)
    assert result.returncode == 2 and f"run 'chmod 600 {secret}'" in result.stderr, result
    secret.chmod(0o600)

    service = env.serve("--max-running", "2", "--grace", "1")
    loud = new_id("loud")
    orcha(env, "run", loud, "--", "sh", "-c", "echo one; echo two >&2; exit 3", code=3)
    post = receiver.finished(loud, service)
    assert post["valid"] and post["github"] and post["event"] == "finished"
    assert post["body"]["data"]["state"] == "FAILED"
    env_file = hooked / f"{loud}.env"
    assert wait_for(env_file.exists, WAIT)
    petition_id, state, code, command, log = env_file.read_text().split("|")
    assert (petition_id, state, code) == (loud, "FAILED", "3")
    assert command == "sh -c 'echo one; echo two >&2; exit 3'"
    assert log.startswith(str(env.state)) and os.path.exists(log)
    assert wait_for(lambda: (hooked / f"{loud}.tail").exists(), WAIT)
    assert (hooked / f"{loud}.tail").read_text() == "one\ntwo\n"

    # Running when the service dies: the next start marks it INTERRUPTED, and says so.
    stuck = new_id("stuck")
    began = env.root / "began"
    detach(env, stuck, f"touch {began}; " + gated(env.root / "never"))
    # Its process has begun, so its start is committed (RUNNING alone is shown a moment
    # before: a crash in between queues it again, as it never ran).
    assert wait_for(began.exists, WAIT)
    assert states(env, stuck) == ["RUNNING"]
    service.kill_service()
    second = env.serve("--max-running", "2", "--grace", "1")
    post = receiver.finished(stuck, service, second)
    assert post["valid"] and post["body"]["data"]["state"] == "INTERRUPTED"
    env_file = hooked / f"{stuck}.env"
    assert wait_for(env_file.exists, WAIT), second.stderr
    assert env_file.read_text().split("|")[:2] == [stuck, "INTERRUPTED"]
    assert second.stop(timeout=WAIT) == 0, second.stderr
    for text in (service.stderr, second.stderr):  # (config show: tests/unit/test_config.py)
        assert "top-secret-42" not in text
