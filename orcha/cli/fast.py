"""The fast path: run a plugin's declared command without click or plugin discovery.

A client's start-up time is most of a short petition's latency, and click plus
entry-point discovery cost several times Python's own start-up. So a command line such as
``orcha run ID -- CMD`` or ``orcha send ID --counter 3`` is read here, by the same
declarations the click commands are built from (:mod:`orcha.cli.grammar`), for the
commands the click application last found (:mod:`orcha.cli.fast_commands`). It names no
plugin. It returns None, so that click answers, for anything it is not sure of: help, an
unknown, repeated or ``fast=False`` option, a bad value, ``--config``, a command it has no
current note of, and a command of a plugin that ``ORCHA_DISABLE_PLUGINS`` or the
configuration file disables (click then says "no command").
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import Any

    from orcha.cli.grammar import Command, Parsed
    from orcha.config import Config
    from orcha.protocol.schedule import Schedule


def _configuration() -> tuple[bool, Config | None]:
    """(usable, the configuration file if there is one). An invalid one is not usable:
    click reports it."""
    import os

    from orcha import config
    from orcha.errors import ConfigError

    path, named = config.config_path()
    if not named and not os.path.exists(path):
        return True, None  # the common case: no YAML parser imported
    try:
        return True, config.load()
    except ConfigError:
        return False, None


def _names_config(args: list[str]) -> bool:
    """Whether ``args`` give ``--config`` (before ``--``: after it, the words are the
    command's own)."""
    for arg in args:
        if arg == "--":
            return False
        if arg == "--config" or arg.startswith("--config="):
            return True
    return False


def parse(args: list[str], disabled: frozenset[str]) -> Parsed | None:
    """``args`` parsed by the declaration of its command, if the fast path may run it
    with ``disabled`` plugins; None otherwise."""
    from orcha.cli import fast_commands, grammar

    table = fast_commands.read(disabled)
    if not table:
        return None

    def find(name: str) -> Command | None:
        entry = table.get(name)
        if entry is None or entry[0] in disabled:
            return None
        return fast_commands.declared(entry[1], entry[2])

    return grammar.parse(args, find)


class Request:
    """What the fast path would send, and with which global options."""

    __slots__ = ("array", "as_json", "cwd", "detach", "env", "kind", "params", "petition_id",
                 "priority", "schedule", "stdin", "values")  # fmt: skip
    values: dict[str, Any]
    schedule: Schedule | None
    env: dict[str, str]
    cwd: str | None

    def __init__(self, parsed: Parsed) -> None:
        from orcha.cli.grammar import petition_id_of, petition_request

        self.values = values = parsed.values
        self.kind, self.params = parsed.command.submission(values)
        self.petition_id = petition_id_of(values)
        self.priority = values.get("priority")
        self.detach = bool(values.get("detach"))
        self.as_json = bool(values.get("as_json"))
        if self.as_json and not self.detach:
            raise ValueError("--json goes with --detach")  # click says so
        # Only commands that declare --no-stdin send their stdin (``orcha run``).
        self.stdin = "no_stdin" in values and not values["no_stdin"]
        fields, env, cwd = petition_request(values)
        self.schedule = None
        if fields:
            from orcha.protocol.schedule import Schedule

            self.schedule = Schedule.from_wire(fields)
        self.env, self.cwd = env, cwd
        #: ``--array SPEC``'s members and limit (``run --detach`` only: attached arrays
        #: stream as ``follow`` does, through click).
        self.array: tuple[list[Any], int | None] | None = None
        if values.get("array") is not None:
            from orcha.cli.fast_arrays import members

            if not self.detach or self.as_json or values.get("each") is not None:
                raise ValueError("an array the fast path does not send")
            self.array = members(values["array"], values.get("at_once"), self.petition_id)
        elif values.get("at_once") is not None:
            raise ValueError("--at-once goes with --array or --each")  # click says so


def prepare(args: list[str], disabled: frozenset[str]) -> Request | None:
    """The request ``args`` makes if the fast path may send it with ``disabled`` plugins;
    None to leave ``args`` to click."""
    parsed = parse(args, disabled)
    if parsed is None:
        return None
    try:
        return Request(parsed)
    except ValueError:
        return None  # click says what is wrong, with exit code 2


def try_fast(args: list[str]) -> int | None:
    """Run ``args`` if it is a fast-path command line; None to let click handle it."""
    from orcha.cli import fast_commands

    if _names_config(args):
        return None  # click reads that file; the default one is none of this command's
    usable, config = _configuration()
    if not usable:
        return None
    if args and args[0] in ("wait", "cancel", "status"):
        from orcha.cli.fast_jobs import try_jobs

        return try_jobs(args, config)
    request = prepare(args, fast_commands.disabled_plugins(config))
    if request is None:
        return None
    values = request.values
    try:
        from orcha import settings

        if values.get("color") is not None:
            from orcha.cli.output import set_color

            set_color(values["color"])
        from orcha.client.attach import run_in_foreground

        resolved = settings.resolve(
            address=values.get("address"),
            key=values.get("key"),
            verbose=values.get("verbose", 0),
            config=config,
        )
        settings.configure(resolved)
        if resolved.verbose:
            from orcha.cli import verbose

            verbose.report(resolved)
        if request.array is not None:
            from orcha.cli.fast_arrays import submit_detached

            return submit_detached(resolved, request, *request.array)
        return run_in_foreground(
            resolved, request.kind, request.petition_id, request.params, request.priority,
            request.detach, schedule=request.schedule, env=request.env or None, cwd=request.cwd,
            as_json=request.as_json,
            stdin=request.stdin,
        )  # fmt: skip
    except BaseException as e:
        from orcha.cli.report import report

        return report(e, args)
