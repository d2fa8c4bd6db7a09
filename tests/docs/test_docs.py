"""The documentation builds without warnings, and every code example in it runs.

``sphinx-build -W`` builds ``docs/`` once per session; its extension
(``docs/_ext/orcha_docs.py``) writes every literal block of every page to
``examples.json``, which these tests run according to the block's language:

``console``
    A shell session. ``$ CMD`` runs ``CMD`` with bash in the page's own folder and
    environment (a line ending in ``\\`` continues on the next); the lines after it, up to
    the next ``$``, are what it must print (stdout and stderr together, blank lines
    ignored). In them, a line ``...`` stands for any number of lines and ``...`` inside a
    line for any text. A command must exit 0 unless the next command is ``echo $?``,
    which prints the code it exited with. Three commands are special:

    * ``orcha serve ...`` starts in the background (its log is not compared); the
      session waits until it answers, and it is stopped by its PID at the end of the
      page, where it must exit 0.
    * ``export NAME=VALUE`` sets a variable for the rest of the page (``$PWD`` and other
      variables in VALUE are expanded).
    * a line ``^C`` in the expected output sends SIGINT (as Ctrl+C in a terminal does) to
      the command once the lines before it have been printed.

    Each page gets a new folder holding a copy of ``docs/examples/`` (so a page can say
    ``export ORCHA_PLUGIN_PATH=$PWD/plugins``) and private runtime, state and
    configuration folders: never the user's own.
``python``
    Written to a file and run with this interpreter in the page's folder; exit 0.
``yaml``
    A configuration file: ``orcha config validate --config FILE`` accepts it.
``toml``
    Parses.
``json``
    Parses.
``ini``
    A systemd unit included from ``systemd/`` (``tests/integration/test_systemd.py``
    verifies those with ``systemd-analyze``).
``shell``
    Only the usage lines that sphinx-click generates on the CLI reference page.

Any other language, including an unlabelled ``::`` block, fails the test: a block that
cannot be run is a block that can rot.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
PAGES = sorted(p.stem for p in DOCS.glob("*.rst"))
RUNNABLE = {"console", "python", "yaml", "toml", "json", "ini", "shell"}
COMMAND_TIMEOUT = 60.0
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


@dataclass
class Build:
    returncode: int
    output: str
    outdir: Path

    def examples(self) -> dict[str, list[dict[str, Any]]]:
        data: dict[str, list[dict[str, Any]]] = json.loads(
            (self.outdir / "examples.json").read_text()
        )
        return data


def _clean_env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHA_")}
    env.update(
        XDG_CONFIG_HOME=str(root / "config"),
        ORCHA_RUNTIME_DIR=str(root / "run"),
        ORCHA_STATE_DIR=str(root / "state"),
        PYTHONUNBUFFERED="1",
        COLUMNS="100",
        TERM="dumb",
        PATH=os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")]),
    )
    env.pop("NO_COLOR", None)
    return env


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """``sphinx-build -W --keep-going`` of docs/ into a temporary folder, once."""
    root = tmp_path_factory.mktemp("docs")
    outdir = root / "html"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(root / "doctrees"), str(DOCS), str(outdir)],
        env=_clean_env(root), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return Build(proc.returncode, proc.stdout + proc.stderr, outdir)


@pytest.mark.timeout(320)
def test_the_docs_build_with_warnings_as_errors(build: Build) -> None:
    assert build.returncode == 0, build.output
    assert "WARNING" not in build.output, build.output
    for page in PAGES:
        assert (build.outdir / f"{page}.html").is_file(), page


@pytest.mark.timeout(320)
def test_every_example_is_in_a_language_the_tests_run(build: Build) -> None:
    assert build.returncode == 0, build.output
    examples = build.examples()
    assert set(examples) >= set(PAGES)
    wrong = [
        f"{b['page']}.rst line {b['line']}: language {b['language']!r}"
        for blocks in examples.values()
        for b in blocks
        if b["language"] not in RUNNABLE
    ]
    assert not wrong, "blocks the tests cannot run (label them, or make them runnable):\n" + (
        "\n".join(wrong)
    )
    shell = [
        b for blocks in examples.values() for b in blocks
        if b["language"] == "shell" and (b["page"] != "cli" or not b["text"].startswith("orcha"))
    ]  # fmt: skip
    assert not shell, f"'shell' is for sphinx-click's usage lines only; use 'console': {shell}"


#: A dash lookalike (hyphen, non-breaking hyphen, figure dash, en and em dash) where a
#: command line would have ASCII hyphens: before a letter or digit (an en dash and
#: ``json``), or alone between spaces (``ID``, an en dash, ``CMD``). (A minus sign in a
#: formula is no option.)
_DASH_FOR_OPTION = re.compile(r"[\u2010-\u2014]+(?=[\w=])|(?<=\s)[\u2010-\u2014](?=\s)")


@pytest.mark.timeout(320)
def test_no_dash_lookalike_stands_where_an_option_is_written(build: Build) -> None:
    """Options copied from any page (headings, the sidebar, the CLI reference, the search
    index) work in a shell: smartquotes are off, and nothing else makes dashes of them."""
    assert build.returncode == 0, build.output
    bad = []
    files = [*build.outdir.glob("*.html"), build.outdir / "searchindex.js"]
    for path in files:
        text = path.read_text(encoding="utf-8")
        for match in _DASH_FOR_OPTION.finditer(text):
            around = text[max(0, match.start() - 30) : match.end() + 30].replace("\n", " ")
            bad.append(f"{path.name}: ...{around}...")
    assert not bad, "dashes where options are written:\n" + "\n".join(bad[:40])
    # And the options are there, as typed.
    cli = (build.outdir / "cli.html").read_text(encoding="utf-8")
    assert "--json" in cli and "--timeout" in cli and "-- CMD" in cli


def test_the_dash_check_catches_what_smartquotes_did() -> None:
    for text in ("<code>\u2013json</code>", "orcha run ID \u2013 CMD", "\u2014timeout=5"):
        assert _DASH_FOR_OPTION.search(text), text
    for text in ("--json", "ID -- CMD", "priority \u2212 waited / aging"):
        assert not _DASH_FOR_OPTION.search(text), text


# ---------------------------------------------------------------------------- matching


def _line_matches(expected: str, actual: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual) is not None


def match_output(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` matches ``expected`` (``...`` lines span any lines)."""
    expected = [e.rstrip() for e in expected if e.strip()]
    actual = [a.rstrip() for a in actual if a.strip()]

    def walk(i: int, j: int) -> bool:
        while i < len(expected):
            if expected[i] == "...":
                return any(walk(i + 1, k) for k in range(j, len(actual) + 1))
            if j >= len(actual) or not _line_matches(expected[i], actual[j]):
                return False
            i, j = i + 1, j + 1
        return j == len(actual)

    return walk(0, 0)


def test_match_output_rules() -> None:
    assert match_output(["a", "b"], ["a", "", "b  "])
    assert not match_output(["a"], ["a", "b"])
    assert match_output(["a", "..."], ["a", "b", "c"])
    assert match_output(["...", "c"], ["a", "b", "c"])
    assert match_output(["x ... z"], ["x y y z"])
    assert not match_output(["x ... z"], ["x y y"])
    assert match_output(["..."], [])
    assert not match_output(["a", "...", "d"], ["a", "b", "c"])


# ---------------------------------------------------------------------------- sessions


@dataclass
class Command:
    text: str
    expected: list[str] = field(default_factory=list)
    line: int = 0


def parse_session(text: str, line: int = 0) -> list[Command]:
    """The commands of a console block and the output each must print."""
    commands: list[Command] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        raw = lines[i]
        if raw.startswith("$ "):
            command = raw[2:]
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command + "\n" + lines[i]  # bash joins the lines
            commands.append(Command(command, [], line + i))
        elif commands:
            commands[-1].expected.append(raw)
        elif raw.strip():
            raise AssertionError(f"console block at line {line}: output before any command")
        i += 1
    return commands


class Session:
    """One page's shell: its folder, its environment, its services."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cwd = root / "work"
        if EXAMPLES.is_dir():
            shutil.copytree(EXAMPLES, self.cwd)
        else:
            self.cwd.mkdir()
        self.env = _clean_env(root)
        self.env["PWD"] = str(self.cwd)
        self.env["HOME"] = str(self.cwd)
        self.last_rc = 0
        self.services: list[subprocess.Popen[bytes]] = []
        self.started: list[int] = []

    def _spawn(self, command: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["bash", "-c", command], cwd=self.cwd, env=self.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.started.append(proc.pid)
        return proc

    def run(self, cmd: Command, where: str) -> None:
        text = cmd.text.strip()
        if text == "echo $?":
            got = [str(self.last_rc)]
            assert match_output(cmd.expected, got), f"{where}: exit code {self.last_rc}"
            return
        if text.startswith("export "):
            name, _, value = text[len("export ") :].partition("=")
            value = " ".join(shlex.split(value))
            self.env[name.strip()] = os.path.expandvars(
                re.sub(r"\$(\w+)", lambda m: self.env.get(m.group(1), m.group(0)), value)
            )
            return
        if text.startswith("orcha serve"):
            self._serve(text, where)
            return
        self._run(text, cmd.expected, where)

    def _serve(self, text: str, where: str) -> None:
        proc = self._spawn(text)
        self.services.append(proc)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise AssertionError(f"{where}: 'orcha serve' exited {proc.returncode}:\n{out}")
            probe = subprocess.run(
                [sys.executable, "-m", "orcha", "status"], env=self.env, cwd=self.cwd,
                capture_output=True, timeout=COMMAND_TIMEOUT,
            )  # fmt: skip
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"{where}: 'orcha serve' did not answer in {READY_TIMEOUT}s")

    def _run(self, text: str, expected: list[str], where: str) -> None:
        proc = self._spawn(text)
        assert proc.stdout is not None
        before, after = expected, []
        if "^C" in [e.strip() for e in expected]:
            at = [e.strip() for e in expected].index("^C")
            before, after = expected[:at], expected[at + 1 :]
        lines: list[str] = []
        deadline = time.monotonic() + COMMAND_TIMEOUT
        try:
            if after or before is not expected:
                # Read until what was printed matches the lines before ^C, then interrupt.
                fd = proc.stdout.fileno()
                buffer = b""
                while not match_output(before, lines):
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise AssertionError(
                            f"{where}: before ^C expected {before!r}, got {lines!r}"
                        )
                    import select

                    ready, _, _ = select.select([fd], [], [], 0.1)
                    if ready:
                        chunk = os.read(fd, 65536)
                        buffer += chunk
                        lines = buffer.decode(errors="replace").splitlines()
                os.killpg(proc.pid, signal.SIGINT)
                rest, _ = proc.communicate(timeout=COMMAND_TIMEOUT)
                buffer += rest
            else:
                buffer, _ = proc.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{where}: {text!r} ran over {COMMAND_TIMEOUT}s") from None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        out = buffer.decode(errors="replace").splitlines()
        self.last_rc = proc.returncode
        assert match_output(expected if not after else [*before, *after], out), (
            f"{where}: {text!r} printed:\n" + "\n".join(out) + "\n--- expected:\n" +
            "\n".join(expected)
        )  # fmt: skip

    def check_exit(self, cmd: Command, next_cmd: Command | None, where: str) -> None:
        if cmd.text.strip().startswith(("orcha serve", "export ", "echo $?")):
            return
        if self.last_rc != 0 and (next_cmd is None or next_cmd.text.strip() != "echo $?"):
            raise AssertionError(f"{where}: {cmd.text!r} exited {self.last_rc}")

    def close(self) -> list[str]:
        """Stop the services by PID; return what went wrong."""
        problems = []
        for proc in self.services:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    problems.append(f"service {proc.pid} ignored SIGTERM")
            if proc.returncode not in (0, None):
                problems.append(f"service {proc.pid} exited {proc.returncode}")
        for pid in self.started:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        marker = str(self.root)
        found: list[psutil.Process] = []
        for p in psutil.process_iter(["pid", "cmdline", "environ"]):
            try:
                mine = any(marker in part for part in p.info["cmdline"] or []) or any(
                    marker in v for v in (p.info["environ"] or {}).values()
                )
            except (psutil.Error, TypeError):
                continue
            if mine and p.pid != os.getpid():
                found.append(p)
        # What is on its way out is not left behind: a Dask worker's spawner, told of its
        # worker's death (PDEATHSIG), first stops what runs below it, within its grace.
        _, alive = psutil.wait_procs(found, timeout=STOP_TIMEOUT)
        for p in alive:
            problems.append(f"left behind: {p.pid} {p.info['cmdline']}")
            try:
                p.kill()
            except psutil.Error:
                pass
        return problems


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    s = Session(tmp_path)
    yield s
    problems = s.close()
    assert not problems, problems


def _run_block(session: Session, block: dict[str, Any]) -> None:
    where = f"{block['page']}.rst line {block['line']}"
    language, text = block["language"], block["text"]
    if language == "console":
        commands = parse_session(text, block["line"] or 0)
        assert commands, f"{where}: a console block without a command"
        for i, cmd in enumerate(commands):
            session.run(cmd, f"{where} (+{i})")
            session.check_exit(cmd, commands[i + 1] if i + 1 < len(commands) else None, where)
    elif language == "python":
        path = session.root / f"example_{block['line']}.py"
        path.write_text(text)
        proc = subprocess.run(
            [sys.executable, str(path)], cwd=session.cwd, env=session.env,
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
        )  # fmt: skip
        assert proc.returncode == 0, f"{where}: {proc.stdout}{proc.stderr}"
    elif language == "yaml":
        path = session.root / f"config_{block['line']}.yaml"
        path.write_text(text)
        proc = subprocess.run(
            [sys.executable, "-m", "orcha", "config", "validate", "--config", str(path)],
            cwd=session.cwd, env=session.env, capture_output=True, text=True,
            timeout=COMMAND_TIMEOUT,
        )  # fmt: skip
        assert proc.returncode == 0, f"{where}: {proc.stdout}{proc.stderr}"
    elif language == "toml":
        tomllib = pytest.importorskip("tomllib")
        tomllib.loads(text)
    elif language == "json":
        json.loads(text)
    elif language == "ini":
        assert (block["included"] or "").startswith("../systemd/"), (
            f"{where}: 'ini' blocks are the systemd units, included from systemd/"
        )
    elif language == "shell":
        pass  # sphinx-click's usage lines, checked by the test above
    else:
        raise AssertionError(f"{where}: no runner for language {language!r}")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("page", PAGES)
def test_the_examples_of_each_page_run(build: Build, session: Session, page: str) -> None:
    assert build.returncode == 0, build.output
    blocks = build.examples().get(page, [])
    for block in blocks:
        _run_block(session, block)
