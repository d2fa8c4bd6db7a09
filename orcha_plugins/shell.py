"""The shell plugin: ``orcha run ID -- CMD [ARG...]`` runs a command on the service host.

The command is declared in :mod:`orcha_plugins.shell_command`; this module adds its click
command and the ``shell`` kind."""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any

import click

from orcha.cli.petition_options import command, petition_id, submission
from orcha.errors import ExitCode, InvalidPetitionError
from orcha.kinds import Kind
from orcha_plugins.base import FirstPartyPlugin
from orcha_plugins.shell_command import KIND, RUN, check_argv

if TYPE_CHECKING:
    import subprocess

    from orcha.service.context import Context


class ShellKind(Kind):
    """Runs ``argv`` in its own session with the client's cwd and environment; streams
    stdout and stderr byte for byte; the exit code is the command's (128+N if killed by
    signal N, 127 if not found, 126 if not executable)."""

    name = KIND
    help = "Run a command (argv list) on the service host."
    schema = {
        "type": "object",
        "properties": {
            "argv": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                     "description": "The command and its arguments (no shell)."},
        },
        "required": ["argv"],
        "additionalProperties": False,
    }  # fmt: skip

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return {"argv": check_argv(params.get("argv"))}
        except ValueError as e:
            raise InvalidPetitionError(str(e)) from None

    def start(self, ctx: Context) -> subprocess.Popen[bytes] | int:
        # Started, not pumped: the service pumps it (Kind.start), many at once.
        argv = ctx.params["argv"]
        # Only where it runs: a worker's file system is not the service host's.
        if getattr(ctx, "local", True) and not os.path.isdir(ctx.cwd):
            ctx.fail(f"working directory {ctx.cwd} does not exist on the service host")
            return int(ExitCode.START_FAILED)
        try:
            return ctx.spawn(argv)
        except NotADirectoryError as e:  # its cwd is missing where it runs (a Dask worker)
            ctx.fail(e.strerror or str(e))
            return int(ExitCode.START_FAILED)
        except OSError as e:
            error = e
        local = getattr(ctx, "local", True)
        if error.errno == errno.ENOEXEC and local and (script := _script(ctx, argv[0])):
            # A script without a '#!' line: run by /bin/sh, as execvp(3) does (env, nohup,
            # xargs, tsp and a shell all run it so).
            try:
                return ctx.spawn(["/bin/sh", script, *argv[1:]])
            except OSError as e:
                error = e
        return _not_started(ctx, argv[0], error, local)


def _script(ctx: Context, name: str) -> str | None:
    """The file ``name`` is on the service host, as execvp(3) finds it (in the
    petition's cwd if it has a slash, else along the petition's PATH), or None."""
    import shutil

    if "/" in name:
        path = os.path.join(ctx.cwd, name)
        return path if os.path.isfile(path) else None
    return shutil.which(name, path=ctx.env.get("PATH", os.defpath))


def _not_started(ctx: Context, name: str, error: OSError, local: bool) -> int:
    """Record why ``name`` could not be executed, as a shell says it; its exit code."""
    path = os.path.join(ctx.cwd, name) if local and "/" in name else ""
    if isinstance(error, FileNotFoundError):
        if path and os.path.isfile(path):  # the file is there: its interpreter is not
            ctx.fail(f"cannot execute {name}: the interpreter its '#!' line names is missing")
        else:
            ctx.fail(f"command not found: {name}")
        return int(ExitCode.NOT_FOUND)
    if path and os.path.isdir(path):
        ctx.fail(f"cannot execute {name}: it is a directory")
    elif isinstance(error, PermissionError):
        ctx.fail(f"cannot execute {name}: permission denied")
    else:
        ctx.fail(f"cannot execute {name}: {error.strerror or error}")
    return int(ExitCode.CANNOT_EXECUTE)


@command(RUN)
def run(**values: Any) -> int:
    """Run CMD on the service host once there is room, streaming its output live.

    The command runs in the current directory with the current environment; its exit
    code is orcha's. Put '--' before the command so its options are not read as orcha's.
    An ID, if given, goes before '--' (or with --id); without one the service numbers
    the petition ('orcha run -- make test' runs 'make test'; --detach prints the number).
    Without '--' every word is the command, as with tsp and pueue: 'orcha run sleep 10'
    runs 'sleep 10', and 'orcha run test pytest' runs the shell's 'test pytest' (which
    succeeds), not pytest as petition 'test': that is 'orcha run test -- pytest'.
    A piped or redirected stdin is sent to the command (--no-stdin: not); a terminal's
    is not, nor with --detach (the command reads /dev/null).
    """
    from orcha.cli.petition import attach

    kind, params = submission(RUN, values)
    if values.get("array") is not None or values.get("each") is not None:
        from orcha.cli.arrays import members_of, run_array

        members, limit = members_of(values["array"], values["each"], values["at_once"])
        # Members read /dev/null; '--each -' takes the stdin as its list.
        stdin = not values["no_stdin"] and values["each"] != "-"
        return run_array(kind, petition_id(values), params, values["priority"],
                         values["detach"], members, limit, stdin)  # fmt: skip
    if values.get("at_once") is not None:
        raise click.UsageError("--at-once goes with --array or --each")
    return attach(
        kind, petition_id(values), params, values["priority"], values["detach"],
        stdin=not values["no_stdin"],
    )  # fmt: skip


class ShellPlugin(FirstPartyPlugin):
    name = KIND
    help = "Run commands: the 'run' command and the 'shell' kind"

    def commands(self) -> list[click.Command]:
        return [run]

    def kinds(self) -> list[Kind]:
        return [ShellKind()]
