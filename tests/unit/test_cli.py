"""orcha.cli: a Ctrl+C while the ``orcha`` command is still importing; values refused in
one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orcha.units import DURATION_FORMS

EARLY_CTRL_C = """
import os, signal, sys
sys.argv = ["/somewhere/bin/orcha", "status"]
import orcha.cli  # the orcha script imports this first
os.kill(os.getpid(), signal.SIGINT)  # Ctrl+C while the rest is being imported
from orcha.cli.main import main
main()
"""

AS_A_LIBRARY = """
import signal, sys
sys.argv = ["my-program"]
import orcha.cli
assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
"""


def test_ctrl_c_while_importing_is_an_interruption_not_a_traceback() -> None:
    proc = subprocess.run([sys.executable, "-c", EARLY_CTRL_C], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert (proc.returncode, proc.stderr) == (130, "orcha: interrupted\n")


def test_a_program_importing_orcha_keeps_its_own_ctrl_c() -> None:
    proc = subprocess.run([sys.executable, "-c", AS_A_LIBRARY], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_processes_the_suite_starts_get_sigint_at_its_default() -> None:
    """Holds even when the suite itself was started with SIGINT ignored (nohup, '&'):
    tests/conftest.py sees to it, and the tests that send SIGINT rely on it."""
    probe = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.stdout == "True\n", proc.stderr


def test_a_refused_value_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from orcha.cli.app import run

    assert run(["run", "x", "--priority", str(10**30), "--", "true"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"orcha run: invalid value for '--priority': {10**30} is not between -1000000000 "
        "and 1000000000 (see 'orcha run --help')\n"
    )
    assert run(["send", "x", "--priority", "abc"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'abc' is not a valid integer" in err, err
    assert run(["send", "x", "--counter", "-1"]) == 2
    assert capsys.readouterr().err == (
        "orcha send: invalid value for '--counter': -1 is less than 0 (see 'orcha send --help')\n"
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        # an unknown option: what click suggests, then where the help is
        (["restart", "first", "--json", "--detach"],
         "orcha restart: no such option '--detach' (did you mean '--delay'?); "
         "see 'orcha restart --help'"),
        (["run", "--detatch", "x", "--", "true"],
         "orcha run: no such option '--detatch' (did you mean '--delay', '--detach' or "
         "'--each'?); see 'orcha run --help'"),
        (["status", "--cpus"], "orcha status: no such option '--cpus' (see 'orcha status --help')"),
        (["--bogus"],
         "orcha: no such option '--bogus' (did you mean '--verbose'?); see 'orcha --help'"),
        (["config", "validate", "--bogus"],
         "orcha config validate: no such option '--bogus' (did you mean '--verbose'?); "
         "see 'orcha config validate --help'"),
        # a plugin's command (orcha's own plugins: send, run)
        (["send", "--bogus"],
         "orcha send: no such option '--bogus' (did you mean '--cpus', '--gpus' or "
         "'--verbose'?); see 'orcha send --help'"),
        # a missing argument, an extra one, an option without its value
        (["run"], "orcha run: missing argument '-- CMD [ARG]...' (see 'orcha run --help')"),
        (["logs"], "orcha logs: missing argument 'ID...' (see 'orcha logs --help')"),
        (["kinds", "add"],
         "orcha kinds add: missing argument 'NAME' (see 'orcha kinds add --help')"),
        (["ls", "extra"], "orcha ls: unexpected extra argument 'extra' (see 'orcha ls --help')"),
        (["ls", "a", "b"], "orcha ls: unexpected extra arguments 'a b' (see 'orcha ls --help')"),
        (["run", "x", "--cpus"],
         "orcha run: option '--cpus' requires an argument (see 'orcha run --help')"),
        (["config", "validate", "--config"],
         "orcha config validate: option '--config' requires an argument "
         "(see 'orcha config validate --help')"),
        (["--address"], "orcha: option '--address' requires an argument (see 'orcha --help')"),
        (["config", "nosuch"],
         "orcha config: no such command 'nosuch' (see 'orcha config --help')"),
        # what a command refuses as a usage error of its own
        (["run", "x", "--at-once", "2", "--", "true"],
         "orcha run: --at-once goes with --array or --each (see 'orcha run --help')"),
    ],
)  # fmt: skip
def test_an_unknown_option_or_a_missing_argument_is_one_line_too(
    capsys: pytest.CaptureFixture[str], args: list[str], line: str
) -> None:
    """As a refused value: what is wrong and where the help is, not click's usage block."""
    from orcha.cli.app import run

    assert run(args) == 2
    assert capsys.readouterr().err == f"{line}\n"


def test_a_group_without_its_command_still_shows_its_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from orcha.cli.app import run

    assert run(["config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: orcha config [OPTIONS] COMMAND [ARGS]...") and "validate" in err


BOTH_STARTS = (
    "--delay and --at both say when to start: give one (--delay counts from now, --at names a time)"
)
TOO_LONG = "longer than the longest duration orcha takes, 3650d (10 years)"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["run", "we ird", "--", "true"],
         "orcha run: the petition ID 'we ird' has whitespace or control characters"),
        (["run", "id\udcff", "--", "true"],
         "orcha run: the petition ID 'id\\xff' is not valid UTF-8; choose a name in UTF-8"),
        (["run", "x", "--after", "a\udcff", "--", "true"],
         "orcha run: invalid value for '--after': the petition ID 'a\\xff' is not valid "
         "UTF-8; choose a name in UTF-8"),
        (["run", "--array", "1-3", "--each", "f", "x", "--", "true"],
         "orcha run: give --array or --each, not both"),
        (["cancel"], "orcha cancel: say what to cancel: IDs, --group, --state or --all"),
        (["restart"], "orcha restart: name the petitions to restart, or use --failed or --group"),
        (["edit", "x"], "orcha edit: nothing to change: give --priority or other requests"),
        # checked before anything is sent, by the service's rules (it said so with 204)
        (["kinds", "add", "a b", "--from", "shell"],
         "orcha kinds add: invalid value for 'NAME': kind name 'a b' must be 1-64 letters, "
         "digits, '-', '_' or '.'"),
        # so are the requests a runtime kind fixes (cpus, gpus, retries, timeout, group...)
        (["kinds", "add", "k", "--from", "shell", "--set", "cpus=0"],
         "orcha kinds add: invalid value for '--set cpus': 'cpus' must be an integer from 1 "
         "to 65536, got 0"),
        (["kinds", "add", "k", "--from", "shell", "--set", "gpus=-1"],
         "orcha kinds add: invalid value for '--set gpus': 'gpus' must be an integer from 0 "
         "to 65536, got -1"),
        (["kinds", "add", "k", "--from", "shell", "--set", "argv=[\"true\"]", "--set",
          "timeout=0"],
         "orcha kinds add: invalid value for '--set timeout': 'timeout' must be more than 0 "
         "seconds"),
        (["kinds", "add", "k", "--from", "shell", "--set", "group=a/b"],
         "orcha kinds add: invalid value for '--set group': group name 'a/b' must be 1-64 "
         "letters, digits, '-', '_' or '.'"),
        # --delay and --at both say when: neither is dropped quietly, in any order
        (["run", "a", "--detach", "--delay", "1s", "--at", "12:00", "--", "true"],
         f"orcha run: {BOTH_STARTS}"),
        (["run", "a", "--at", "12:00", "--delay", "1s", "--", "true"], f"orcha run: {BOTH_STARTS}"),
        (["run", "a", "--detach", "--array", "1-3", "--delay", "1s", "--at", "12:00", "--",
          "true"], f"orcha run: {BOTH_STARTS}"),
        (["edit", "x", "--delay", "1s", "--at", "12:00"], f"orcha edit: {BOTH_STARTS}"),
        (["restart", "x", "--at", "12:00", "--delay", "1s"], f"orcha restart: {BOTH_STARTS}"),
        # durations and start times have an upper bound, named
        (["run", "a", "--detach", "--timeout", "200000d", "--", "true"],
         f"orcha run: invalid value for '--timeout': '200000d' is {TOO_LONG}"),
        (["run", "a", "--retries", "1", "--retry-delay", "200000d", "--", "false"],
         f"orcha run: invalid value for '--retry-delay': '200000d' is {TOO_LONG}"),
        (["edit", "x", "--delay", "3651d"],
         f"orcha edit: invalid value for '--delay': '3651d' is {TOO_LONG}"),
        (["wait", "x", "--timeout", "200000d"],
         f"orcha wait: invalid value for '--timeout': '200000d' is {TOO_LONG}"),
        (["run", "a", "--detach", "--at", "2999-01-01T00:00", "--", "true"],
         "orcha run: invalid value for '--at': '2999-01-01T00:00' is more than 3650d (10 years) "
         "ahead: too far to schedule"),
        # a bare number after a unit is not taken as seconds (1h30 was 1h0m30s)
        (["run", "a", "--detach", "--timeout", "1h30", "--", "true"],
         "orcha run: invalid value for '--timeout': '1h30' is not a duration: its last number "
         f"has no unit; did you mean '1h30m'? (accepted: {DURATION_FORMS})"),
        (["edit", "x", "--delay", "1h90m"],
         "orcha edit: invalid value for '--delay': '1h90m' is not a duration: minutes after "
         f"the first unit are below 60; did you mean '2h30m'? (accepted: {DURATION_FORMS})"),
        (["run", "--", ""], "orcha run: the command is empty: give the program to run after '--'"),
        (["run", "x", "--", "", "a"],
         "orcha run: the command is empty: give the program to run after '--'"),
        (["run", "c" * 125, "--array", "1-1000", "--", "true"],
         "orcha run: invalid value for 'ID': the member ID cccccccccccccccc..._1000 would "
         "have 130 characters, more than 128: with indices up to 1000, the array's name may "
         "have at most 123 (it has 125)"),
    ],
)  # fmt: skip
def test_what_orcha_refuses_of_the_values_given_is_one_line_too(
    capsys: pytest.CaptureFixture[str], args: list[str], line: str
) -> None:
    """Nothing is sent: these are refused before the client connects (no service runs)."""
    from orcha.cli.app import run

    assert run(args) == 2
    command = line.split(":")[0]  # 'orcha kinds add'
    assert capsys.readouterr().err == f"{line} (see '{command} --help')\n"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["sned", "x"], "orcha: no command 'sned'; did you mean 'send'? (see 'orcha --help')"),
        (["stat"], "orcha: no command 'stat'; did you mean 'state', 'status' or 'restart'? "
                   "(see 'orcha --help')"),
        (["frobnicate"], "orcha: no command 'frobnicate' (see 'orcha --help' for commands, "
                         "'orcha ls' for plugins)"),
        (["help"], "orcha: no command 'help'; see 'orcha --help', or 'orcha COMMAND --help'"),
    ],
)  # fmt: skip
def test_an_unknown_command_is_one_line_naming_what_it_may_be_a_slip_for(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    line: str,
) -> None:
    from orcha.cli.app import run

    monkeypatch.delenv("ORCHA_DISABLE_PLUGINS", raising=False)
    assert run(args) == 2
    assert capsys.readouterr().err == line + "\n"


def test_a_click_command_whose_reader_is_gone_exits_as_sigpipe_would() -> None:
    """As the plain forms do (orcha.cli.report): 128 + SIGPIPE and nothing on stderr,
    not click's own exit 1."""
    import os

    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "orcha", "ls"], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=60)  # fmt: skip
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (141, "")


def test_shutdown_wait_is_refused_for_a_service_on_another_host(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Refused before anything is sent: its PID would name a process of this host."""
    from orcha.cli.app import run

    assert run(["shutdown", "--wait", "--address", "192.0.2.1:9"]) == 2
    assert capsys.readouterr().err == (
        "orcha shutdown: --wait needs the service on this host (a socket or a loopback "
        "address) (see 'orcha shutdown --help')\n"
    )


def test_a_configuration_file_that_is_not_utf8_is_one_line_from_any_command(
    tmp_path: Path,
) -> None:
    default = tmp_path / "cfg" / "orcha" / "config.yaml"
    default.parent.mkdir(parents=True)
    default.write_bytes(b"max_running: 3\n# \xe9t\xe9\n")
    other = tmp_path / "other.yaml"
    other.write_text("max_running: 3\n")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "ORCHA_STATE_DIR": str(tmp_path / "state"),
           "ORCHA_RUNTIME_DIR": str(tmp_path / "run")}  # fmt: skip
    env.pop("ORCHA_CONFIG", None)

    def orcha(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "orcha", *args], env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    for command in (["status"], ["run", "x", "--", "true"], ["serve"]):
        proc = orcha(*command)
        assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
        assert proc.stderr == (
            f"orcha: {default}: not UTF-8 (byte 0xe9 at 17); save the file as UTF-8\n"
        ), command
    # Another file named: the default one does not matter (no service here: 200).
    proc = orcha("--config", str(other), "status")
    assert proc.returncode == 200 and proc.stderr.startswith("orcha: no orcha service"), proc


def test_an_output_that_cannot_be_written_is_one_line_not_an_internal_error(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "ORCHA_STATE_DIR": str(tmp_path / "state"),
           "ORCHA_RUNTIME_DIR": str(tmp_path / "run")}  # fmt: skip
    env.pop("ORCHA_CONFIG", None)
    for args in (["config", "show"], ["config", "show", "--json"], ["--help"]):
        with open("/dev/full", "w") as full:  # every write: ENOSPC
            proc = subprocess.run([sys.executable, "-m", "orcha", *args], env=env, stdout=full,
                                  stderr=subprocess.PIPE, text=True, timeout=60)  # fmt: skip
        assert (proc.returncode, proc.stderr) == (
            1, "orcha: cannot write the output: No space left on device\n"), args  # fmt: skip


def test_other_os_errors_are_still_internal_errors(capsys: pytest.CaptureFixture[str]) -> None:
    from orcha.cli.report import report

    assert report(OSError(28, "No space left on device", "/some/file"), []) == 1
    assert "internal error" in capsys.readouterr().err  # a file's error names the file
    assert report(ConnectionResetError(104, "Connection reset by peer"), []) == 1
    assert "internal error" in capsys.readouterr().err


def test_an_error_line_shows_control_characters_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # An error's message may quote a petition's argv or message: one line, and nothing
    # in it reaches the terminal as an escape sequence.
    from orcha.cli.report import report
    from orcha.errors import OrchaError

    assert report(OrchaError("command not found: \x1b]0;T\x07red\nnext"), []) == 1
    assert capsys.readouterr().err == "orcha: command not found: \\x1b]0;T\\x07red\\nnext\n"


@pytest.mark.parametrize(
    ("value", "suggested"),
    [
        ("notjson", "'\"notjson\"'"),
        ('say "hi"', '\'"say \\"hi\\""\''),
        ('"a', '\'"\\"a"\''),
        ("it's", "'\"it'\"'\"'s\"'"),
        ("v\x1b]0;T\x07", "'\"v\\u001b]0;T\\u0007\"'"),
        ("café", "'\"café\"'"),
    ],
)
def test_state_set_suggests_the_json_of_a_value_that_is_not_json(
    capsys: pytest.CaptureFixture[str], value: str, suggested: str
) -> None:
    """B10: the suggestion was '"VALUE"' as typed: not JSON when it held a quote, and
    with its control characters raw. Now it is the JSON text, quoted for a shell."""
    import json
    import shlex

    from orcha.cli.app import run

    assert run(["state", "set", "shell", "k", value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    line = err.rstrip("\n")
    assert line.isprintable(), line
    assert line.endswith(f"quote text as JSON, e.g. {suggested} (see 'orcha state set --help')")
    assert json.loads(shlex.split(suggested)[0]) == value  # typed back, it is the value
