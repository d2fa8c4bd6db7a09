"""Identity, history and accounting against a real service (issue 13, points 1, 2, 19):
IDs are optional (the service numbers petitions), every submission keeps its record and
log (NAME, NAME~N and record numbers reach them), an ID may start with '-' (--id), and
each record says what its petition used (CPU time, peak memory, wall time).

One service for the module: its checks are independent of each other's petitions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Env, private_env

MIB = 1 << 20


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with private_env() as e:
        e.serve("--max-running", "2", "--grace", "1")
        yield e


def records(env: Env, *refs: str) -> list[dict[str, Any]]:
    done = env.run("status", "--json", "--", *refs)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)["petitions"]
    return rows


def test_without_an_id_the_command_runs_and_the_service_numbers_it(env: Env) -> None:
    # The trap of old: 'echo' was taken as the ID and 'x' run (exit 127).
    done = env.run("run", "--", "echo", "x")
    assert (done.returncode, done.stdout) == (0, "x\n"), done.stderr
    done = env.run("run", "printf", "%s-%s", "a", "b")  # without '--': all of it the command
    assert (done.returncode, done.stdout) == (0, "a-b"), done.stderr
    detached = env.run("run", "--detach", "--", "true")
    number = detached.stdout.strip()
    assert detached.returncode == 0 and number.isdigit(), detached
    assert env.run("wait", number).returncode == 0
    (row,) = records(env, number)
    assert (row["id"], row["seq"], row["state"]) == (number, int(number), "SUCCEEDED")
    # orcha.Client exposes the ID it got.
    from orcha import Client

    key = (env.state / "key").read_text().strip()
    with Client(str(env.socket), key) as client:
        handle = client.submit(argv=["true"])
        assert handle.id.isdigit() and int(handle.id) > int(number)
        assert handle.wait() == 0


def test_a_reused_name_keeps_every_record_and_log(env: Env) -> None:
    assert env.run("run", "job", "--", "sh", "-c", "echo first").stdout == "first\n"
    done = env.run("run", "job", "--", "sh", "-c", "echo second; exit 3")
    assert (done.returncode, done.stdout) == (3, "second\n")
    rows = [r for r in records(env) if r["id"] == "job"]
    assert [r["code"] for r in rows] == [0, 3]  # both kept, oldest first
    older = str(rows[0]["seq"])
    assert env.run("logs", "job~1").stdout == "first\n"  # the one before the newest
    assert env.run("logs", older).stdout == "first\n"  # its record number
    # Waited for together, both records are reported (by the reference each was named
    # by), and the failure of one is not hidden by the other's success.
    both = env.run("wait", "job~1", "job", "--json")
    assert both.returncode == 0, both.stderr
    assert [p["code"] for p in json.loads(both.stdout)["petitions"]] == [0, 3]
    assert json.loads(both.stdout)["failed"] == 1
    assert env.run("wait", "job", "job~1", "--status", "success").returncode == 1
    missing = env.run("status", "job", "job~2")
    assert missing.returncode == 209 and "job~2" in missing.stderr
    # A name that would read as a record number is refused before anything is sent.
    refused = env.run("run", "12", "--", "true")
    assert refused.returncode == 2 and "numbers name records" in refused.stderr
    assert "Traceback" not in refused.stderr


def _service_pid(env: Env) -> int:
    (service,) = env.services
    return service.service_pid


def _resident(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


@pytest.mark.parametrize("isolation", ["auto", "none"])
def test_a_small_petitions_peak_is_not_the_services_size(isolation: str) -> None:
    # Linux counts the service's memory into ru_maxrss of a child it starts (at its
    # exec): 'true' was reported as big as the service (30-40 MiB) whatever it used.
    with private_env() as e:
        (e.config_dir / "orcha").mkdir(parents=True)
        (e.config_dir / "orcha" / "config.yaml").write_text(f"isolation: {isolation}\n")
        e.serve()
        for command in (["true"], ["sleep", "0.2"], ["sh", "-c", "true"]):
            assert e.run("run", "--", *command).returncode == 0
        rows = json.loads(e.run("status", "--json", "--", "1", "2", "3").stdout)["petitions"]
        service = _resident(_service_pid(e))
        assert service > 10 * MIB
        for row in rows:  # unknown (null) or its own few MiB: never the service's size
            assert row["peak_rss"] is None or row["peak_rss"] < service // 4, (row, service)


def test_run_help_says_that_without_dashes_every_word_is_the_command(env: Env) -> None:
    # It was written nowhere a user looks: 'orcha run test pytest' ran sh's 'test pytest'
    # (and succeeded) where 'test' was meant as the ID.
    text = " ".join(env.run("run", "--help").stdout.split())
    assert "Without '--' every word is the command, as with tsp and pueue" in text, text
    assert "'orcha run test -- pytest'" in text, text
    # ... and so it is.
    done = env.run("run", "test", "pytest")
    assert done.returncode == 0, done.stderr
    assert env.run("status", "test").returncode == 209  # no petition is named 'test'
    last = json.loads(env.run("status", "--json", "--last", "1").stdout)["petitions"]
    assert last[0]["params"]["argv"] == ["test", "pytest"], last


def test_an_id_that_starts_with_a_dash_is_given_with_id(env: Env) -> None:
    done = env.run("run", "--id", "-x", "--", "echo", "hi")
    assert (done.returncode, done.stdout) == (0, "hi\n"), done.stderr
    assert env.run("logs", "--", "-x").stdout == "hi\n"
    assert records(env, "-x")[0]["state"] == "SUCCEEDED"
    both = env.run("run", "a", "--id", "b", "--", "true")
    assert both.returncode == 2 and "not both" in both.stderr


def test_each_record_says_what_its_petition_used(env: Env) -> None:
    # A child that allocates and writes ~50 MB and burns ~0.3 s of CPU; its parent waits.
    burn = (
        "import time\n"
        "block = b'x' * (50 << 20)\n"
        "start = time.process_time()\n"
        "while time.process_time() - start < 0.3: pass\n"
    )
    import sys

    done = env.run("run", "acct", "--", "sh", "-c", f'"{sys.executable}" -c "{burn}"; true')
    assert done.returncode == 0, done.stderr
    (row,) = records(env, "acct")
    assert 0.25 <= row["cpu_time"] < 30, row
    assert 45 * MIB <= row["peak_rss"] < 2048 * MIB, row
    assert 0 < row["wall_time"] < 60 and row["wall_time"] == pytest.approx(
        row["ended"] - row["started"], abs=0.01
    )
    assert (row["attempt"], row["machine"]) == (1, "local")
    assert row["peak_rss"] < 2 * (50 * MIB + _resident(_service_pid(env))), row
    # A running petition's figures so far, when asked for by ID.
    detached = env.run("run", "--detach", "--", sys.executable, "-c", burn + "time.sleep(30)\n")
    number = detached.stdout.strip()
    try:
        from tests.conftest import wait_for

        assert wait_for(lambda: (records(env, number)[0].get("cpu_time") or 0) >= 0.25, 20)
        (live,) = records(env, number)
        assert live["state"] == "RUNNING" and live["peak_rss"] >= 45 * MIB, live
    finally:
        env.run("cancel", number)
