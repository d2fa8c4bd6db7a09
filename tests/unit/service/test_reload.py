"""Reloading the configuration in process (orcha.service.reload): what changes live, what
the command line keeps, what an invalid file leaves alone. No petition is stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orcha.service.reload import ConfigSource
from tests.unit.service.harness import Harness


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, max_running=1)
    yield harness
    harness.close()


def configure(h: Harness, tmp_path: Path, text: str, **overrides: Any) -> Path:
    """Write the configuration file and make it the one the service reloads, as if the
    harness's grace and aging were given on the command line (None: not given)."""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    options = {"grace": 1.0, "aging": 0.0, **overrides}
    h.service.config_source = ConfigSource(str(path), options)
    return path


def reload(h: Harness) -> dict[str, Any]:
    return h.call("reload")


def test_raising_max_running_admits_waiting_petitions_at_once(h: Harness, tmp_path: Path) -> None:
    h.submit("a"), h.submit("b"), h.submit("c")
    h.gates.wait_started("a")
    assert h.record("b")["state"] == "QUEUED"
    configure(h, tmp_path, "max_running: 3\n")
    answer = reload(h)
    assert answer["changed"] == ["max_running: 1 -> 3"]
    assert (answer["restart"], answer["warnings"]) == ([], [])
    h.gates.wait_started("b"), h.gates.wait_started("c")
    assert h.service.scheduler.capacity == 3
    assert h.call("health")["capacity"] == 3


def test_lowering_max_running_lets_running_petitions_finish(h: Harness, tmp_path: Path) -> None:
    configure(h, tmp_path, "max_running: 2\n")
    reload(h)
    h.submit("a"), h.submit("b"), h.submit("c")
    h.gates.wait_started("a"), h.gates.wait_started("b")
    configure(h, tmp_path, "max_running: 1\n")
    assert reload(h)["changed"] == ["max_running: 2 -> 1"]
    assert h.procs.stopped == [] and h.procs.signalled == []  # nothing was stopped
    assert {h.record(i)["state"] for i in "ab"} == {"RUNNING"}
    h.run_to_end("a")
    assert h.record("c")["state"] == "QUEUED"  # b alone fills the one slot now
    h.run_to_end("b")
    h.gates.wait_started("c")


def test_an_invalid_file_is_refused_and_the_old_configuration_kept(
    h: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    configure(h, tmp_path, "max_running: 3\n")
    reload(h)
    path = configure(h, tmp_path, "max_running: lots\n")
    answer = h.request("reload")
    assert answer["ok"] is False and answer["error"] == "refused"
    assert str(path) in answer["message"] and "max_running" in answer["message"]
    assert answer["message"].endswith("the service keeps its configuration")
    assert h.service.manager.max_running == 3
    refused = [r for r in caplog.records if "reload refused" in r.getMessage()]
    assert len(refused) == 1
    configure(h, tmp_path, "notify: [ftp://x]\n")
    assert h.request("reload")["error"] == "refused"
    path.write_bytes(b"max_running: 2\n# \xe9t\xe9\n")  # a Latin-1 editor's file
    answer = h.request("reload")
    assert answer["error"] == "refused" and "not UTF-8 (byte 0xe9 at 17)" in answer["message"]
    assert h.service.manager.max_running == 3


def test_the_command_lines_options_still_beat_the_file(h: Harness, tmp_path: Path) -> None:
    configure(h, tmp_path, "max_running: 4\naging: 1m\n", max_running=1, aging=None)
    answer = reload(h)
    assert answer["changed"] == ["aging: 0s -> 60s"]
    assert h.service.manager.max_running == 1 and h.service.scheduler.aging == 60


def test_group_limits_follow_the_file_and_keep_what_was_set_by_hand(
    h: Harness, tmp_path: Path
) -> None:
    configure(h, tmp_path, "max_running: 2\ngroups:\n  g: {max_running: 1}\n"
              "  big: {max_running: 5}\n")  # fmt: skip
    answer = reload(h)
    assert "groups.g: no limit -> 1" in answer["changed"]
    assert answer["warnings"] == [
        "group big's limit of 5 running is above the service's capacity of 2 CPU slot(s): "
        "it never binds; lower it or raise max_running"
    ]
    h.submit("a", schedule={"group": "g"}), h.submit("b", schedule={"group": "g"})
    h.gates.wait_started("a")
    assert h.record("b")["state"] == "QUEUED"
    limits = {g["name"]: g for g in h.call("group")["groups"]}
    assert limits["g"]["max_running"] == 1 and "warning" in limits["big"]
    h.call("group", name="big", max_running=2)  # by hand: a file without it keeps it
    configure(h, tmp_path, "max_running: 2\n")
    answer = reload(h)
    assert answer["changed"] == ["groups.g: 1 -> no limit"]
    h.gates.wait_started("b")  # the limit went: b starts at once
    assert h.service.scheduler.group_limits() == {"big": 2}


def test_gpus_change_and_held_ones_stay_with_their_petitions(h: Harness, tmp_path: Path) -> None:
    configure(h, tmp_path, "max_running: 3\ngpus: '0,1'\n")
    assert "gpus: none -> 0,1" in reload(h)["changed"]
    h.submit("a", schedule={"gpus": 2})
    h.gates.wait_started("a")
    configure(h, tmp_path, "max_running: 3\ngpus: '1,2'\n")
    assert reload(h)["changed"] == ["gpus: 0,1 -> 1,2"]
    local = h.service.scheduler.machines[0]
    assert local.free_gpus == ["2"]  # 1 is still a's
    h.run_to_end("a")
    assert local.free_gpus == ["1", "2"]  # 0 left the inventory: not given out again
    assert h.call("info")["gpus"] == ["1", "2"]


def test_webhooks_hooks_and_secrets_change_for_later_events(h: Harness, tmp_path: Path) -> None:
    configure(h, tmp_path, "notify: ['http://127.0.0.1:9/x']\nnotify_secret: s3cret\n"
              "hooks: {on_finish: 'true {id}'}\nlog_cap: 1K\ngrace: 2\n",
              max_running=1, grace=None)  # fmt: skip
    (tmp_path / "config.yaml").chmod(0o644)
    answer = reload(h)
    assert answer["changed"] == [
        "grace: 1s -> 2s", "log_cap: 64M -> 1K", "notify: 0 -> 1 webhook(s)",
        "notify_secret: changed (not shown)", "hooks.on_finish: set",
    ]  # fmt: skip
    assert "s3cret" not in str(answer)
    (warning,) = answer["warnings"]  # the file holds the secret and others may read it
    assert "holds a webhook secret and others may read it (mode 0644)" in warning
    (tmp_path / "config.yaml").chmod(0o600)
    assert reload(h)["warnings"] == []
    events = h.service.events
    assert events.webhooks.secret == b"s3cret" and events.finish_hooks.on_finish == "true {id}"
    assert (h.service.log_cap, h.service.runner.grace) == (1024, 2.0)
    assert reload(h)["changed"] == []  # the same file again: nothing changes


def test_a_reload_names_only_what_changed_as_the_file_writes_it(h: Harness, tmp_path: Path) -> None:
    # notify alone claimed "notify_secret: changed" (no secret anywhere), ordered_output
    # showed Python's False/True, a hook replaced by another was "set".
    configure(h, tmp_path, "notify: ['http://127.0.0.1:9/x']\n", max_running=1)
    assert reload(h)["changed"] == ["notify: 0 -> 1 webhook(s)"]
    configure(h, tmp_path, "notify: ['http://127.0.0.1:9/y']\n", max_running=1)
    assert reload(h)["changed"] == ["notify: 1 -> 1 webhook(s)"]
    text = "notify: ['http://127.0.0.1:9/y']\nordered_output: true\nhooks: {on_finish: 'true'}\n"
    configure(h, tmp_path, text, max_running=1)
    assert reload(h)["changed"] == [
        "ordered_output: false -> true (for petitions from now on)", "hooks.on_finish: set",
    ]  # fmt: skip
    configure(h, tmp_path, text.replace("'true'", "'echo {id}'"), max_running=1)
    assert reload(h)["changed"] == ["hooks.on_finish: changed"]
    configure(h, tmp_path, "notify: ['http://127.0.0.1:9/y']\nnotify_secret: s\n", max_running=1)
    (tmp_path / "config.yaml").chmod(0o600)
    assert reload(h)["changed"] == [
        "ordered_output: true -> false (for petitions from now on)",
        "notify_secret: changed (not shown)", "hooks.on_finish: none",
    ]  # fmt: skip


def test_a_reload_that_leaves_a_waiting_petition_too_big_warns_and_keeps_it(
    h: Harness, tmp_path: Path
) -> None:
    configure(h, tmp_path, "max_running: 2\n")
    reload(h)
    h.submit("a")
    h.submit("wide", schedule={"cpus": 2})
    configure(h, tmp_path, "max_running: 1\nisolation: none\n")
    answer = reload(h)
    (warning,) = answer["warnings"]
    assert warning.startswith("petition wide waits but can no longer fit: ")
    assert h.record("wide")["state"] == "QUEUED"


def test_sighup_reloads_unless_the_terminal_hung_up(
    h: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orcha.service import daemon

    d = daemon.Daemon(h.service)
    configure(h, tmp_path, "max_running: 2\n")
    d._terminal = True
    monkeypatch.setattr(daemon, "_has_terminal", lambda: True)
    d._hang_up()  # the terminal is there: a reload
    assert h.service.manager.max_running == 2 and d._signals == 0
    configure(h, tmp_path, "max_running: [\n")
    d._hang_up()  # refused: logged, the service goes on as it was
    assert h.service.manager.max_running == 2 and d._signals == 0
    monkeypatch.setattr(daemon, "_has_terminal", lambda: False)
    d._hang_up()  # the terminal hung up: a stop, counted once however many SIGHUPs came
    d._hang_up()
    assert d._signals == 1


def test_settings_that_need_a_restart_are_named_and_left(h: Harness, tmp_path: Path) -> None:
    from orcha.config import load

    path = configure(h, tmp_path, "max_running: 1\nisolation: auto\n")
    source = h.service.config_source
    assert source is not None
    source.config = load(str(path))  # as 'orcha serve' started with it
    address = h.service.settings.address
    path.write_text("max_running: 1\nisolation: none\naddress: /tmp/elsewhere.sock\n")
    answer = reload(h)
    assert (answer["changed"], answer["restart"]) == ([], ["address", "isolation"])
    assert h.service.settings.address == address
    # Said again while it is pending (compared with the file the service started with),
    # and no longer once the file is back to what is in effect.
    assert reload(h)["restart"] == ["address", "isolation"]
    path.write_text("max_running: 1\nisolation: auto\n")
    assert reload(h)["restart"] == []


def test_an_executor_changed_in_the_file_is_named_as_needing_a_restart(
    h: Harness, tmp_path: Path
) -> None:
    # It was neither applied nor named: 'nothing changed', until the next start.
    from orcha.config import load

    path = configure(h, tmp_path, "", max_running=1)
    source = h.service.config_source
    assert source is not None
    source.config = load(str(path))  # as 'orcha serve' started with it
    path.write_text("executor:\n  kind: dask\n  scheduler: tcp://127.0.0.1:1\n")
    answer = reload(h)
    assert (answer["changed"], answer["restart"]) == ([], ["executor"])
    path.write_text("executor: {kind: local}\n")  # the default, written out
    assert reload(h)["restart"] == []


def test_under_nohup_a_hang_up_only_reloads(h: Harness) -> None:
    import contextlib
    import signal

    from orcha.service import daemon

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        d = daemon.Daemon(h.service)
        d._terminal = True
        with contextlib.ExitStack() as stack:
            d._catch_signals(stack)
            assert signal.getsignal(signal.SIGHUP) == d._on_hangup  # kill -HUP reloads
            assert d._terminal is False  # and the terminal's hang-up cannot stop it
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)
