"""The fast path for ``orcha run`` and ``orcha send``: no click, no plugin discovery.

A client's start-up time is most of a short petition's latency, and click plus entry-point
discovery cost several times Python's own start-up. This parser accepts exactly the
documented grammar of the two first-party commands::

    orcha [GLOBAL]... run  [--priority P | GLOBAL]... ID [...] -- CMD [ARG]...
    orcha [GLOBAL]... send [--counter N | --sleep-time T | --priority P | GLOBAL]... ID
    GLOBAL: --address ADDR | --key KEY | -v | -vv | --verbose  (also --opt=value)

and returns None for anything else (help, unknown options, bad values, plugins disabled),
so that the click commands in ``orcha_plugins`` answer those with their full messages.
``tests/unit/test_fast.py`` checks both paths agree.
"""

from __future__ import annotations

import math
import os

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import Any

_GLOBAL_VALUES = ("--address", "--key")
_VERBOSE = {"-v": 1, "-vv": 2, "-vvv": 3, "--verbose": 1}

#: command -> (kind, options taking a value); the plugins that own them (orcha_plugins).
_COMMANDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "run": ("shell", ("--priority",), "shell"),
    "send": ("hello", ("--counter", "--sleep-time", "--priority"), "hello"),
}


class Parsed:
    def __init__(self, command: str) -> None:
        self.command = command
        self.kind, self.value_options, self.plugin = _COMMANDS[command]
        self.options: dict[str, str] = {}
        self.petition_id: str | None = None
        self.argv: list[str] = []
        self.verbose = 0


def parse(args: list[str]) -> Parsed | None:
    """Parse the documented forms; None if ``args`` is anything else."""
    i, n = 0, len(args)
    options: dict[str, str] = {}
    verbose = 0
    command_seen = False

    def take(option_names: tuple[str, ...]) -> bool:
        nonlocal i, verbose
        arg = args[i]
        if arg in _VERBOSE:
            verbose += _VERBOSE[arg]
            i += 1
            return True
        if arg == "--detach" and command_seen and "--detach" not in options:
            options[arg] = ""
            i += 1
            return True
        name, eq, value = arg.partition("=")
        if name not in option_names:
            return False
        if not eq:
            if i + 1 >= n:
                return False
            value = args[i + 1]
            i += 1
        if name in options:
            return False  # repeated: leave the semantics to click
        options[name] = value
        i += 1
        return True

    while i < n and args[i].startswith("-"):
        if not take(_GLOBAL_VALUES):
            return None
    if i >= n or args[i] not in _COMMANDS:
        return None
    parsed = Parsed(args[i])
    command_seen = True
    i += 1
    allowed = parsed.value_options + _GLOBAL_VALUES
    while i < n:
        arg = args[i]
        if arg == "--":
            if parsed.command != "run":
                return None
            parsed.argv = args[i + 1 :]
            break
        if arg.startswith("-") and arg != "-":
            if not take(allowed):
                return None
            continue
        if parsed.petition_id is not None:
            return None  # a second positional: only click knows what was meant
        parsed.petition_id = arg
        i += 1
    if parsed.petition_id is None or (parsed.command == "run" and not parsed.argv):
        return None
    parsed.options = options
    parsed.verbose = verbose
    return parsed


def _params(parsed: Parsed) -> tuple[dict[str, Any], int | None] | None:
    opts = parsed.options
    try:
        priority = int(opts["--priority"]) if "--priority" in opts else None
        if parsed.command == "run":
            return {"argv": parsed.argv}, priority
        counter = int(opts.get("--counter", "1"))
        sleep_time = float(opts.get("--sleep-time", "0"))
    except ValueError:
        return None
    if counter < 0 or not math.isfinite(sleep_time) or sleep_time < 0:
        return None
    return {"counter": counter, "sleep_time": sleep_time}, priority


def try_fast(args: list[str]) -> int | None:
    """Run ``args`` if it is a fast-path command line; None to let click handle it."""
    parsed = parse(args)
    if parsed is None:
        return None
    disabled = os.environ.get("ORCHA_DISABLE_PLUGINS", "")
    if parsed.plugin in (name.strip() for name in disabled.split(",")):
        return None
    values = _params(parsed)
    if values is None:
        return None
    from orcha.protocol.messages import check_id

    try:
        petition_id = check_id(parsed.petition_id)
    except ValueError:
        return None
    params, priority = values
    try:
        from orcha import settings
        from orcha.client.attach import run_in_foreground

        resolved = settings.resolve(
            address=parsed.options.get("--address"),
            key=parsed.options.get("--key"),
            verbose=parsed.verbose,
        )
        settings.configure(resolved)
        detach = "--detach" in parsed.options
        return run_in_foreground(resolved, parsed.kind, petition_id, params, priority, detach)
    except BaseException as e:
        from orcha.cli.main import report

        return report(e, args)
