"""The shell plugin: ``orcha run ID -- CMD [ARG...]`` runs a command on the service host."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from orcha.cli.options import global_options
from orcha.cli.petition_options import petition_options
from orcha.errors import ExitCode, InvalidPetitionError
from orcha.kinds import Kind
from orcha_plugins import FirstPartyPlugin

if TYPE_CHECKING:
    from orcha.service.context import Context


class ShellKind(Kind):
    """Runs ``argv`` in its own session with the client's cwd and environment; streams
    stdout and stderr byte for byte; the exit code is the command's (128+N if killed by
    signal N, 127 if not found, 126 if not executable)."""

    name = "shell"
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
        argv = params.get("argv")
        if (
            not isinstance(argv, list)
            or not argv
            or not all(isinstance(a, str) for a in argv)
            or not argv[0]
        ):
            raise InvalidPetitionError("argv must be a non-empty list of strings")
        return {"argv": argv}

    def run(self, ctx: Context) -> int:
        argv = ctx.params["argv"]
        if not os.path.isdir(ctx.cwd):
            ctx.fail(f"working directory {ctx.cwd} does not exist on the service host")
            return int(ExitCode.START_FAILED)
        try:
            proc = ctx.spawn(argv)
        except FileNotFoundError:
            ctx.fail(f"command not found: {argv[0]}")
            return int(ExitCode.NOT_FOUND)
        except PermissionError:
            ctx.fail(f"cannot execute {argv[0]}: permission denied")
            return int(ExitCode.CANNOT_EXECUTE)
        except OSError as e:
            ctx.fail(f"cannot execute {argv[0]}: {e.strerror or e}")
            return int(ExitCode.CANNOT_EXECUTE)
        return ctx.pump(proc)


@click.command("run")
@click.argument("petition_id", metavar="ID")
@click.option(
    "--priority",
    type=int,
    metavar="P",
    help="Lower runs first; equal priorities run in arrival order (default 0).",
)
@click.argument(
    "command", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD [ARG]..."
)
@click.option(
    "--detach", is_flag=True, help="Print the ID once queued and return; it runs on its own."
)
@petition_options
@global_options
def run(petition_id: str, priority: int | None, command: tuple[str, ...], detach: bool) -> int:
    """Run CMD on the service host once there is room, streaming its output live.

    The command runs in the current directory with the current environment; its exit
    code is orcha's. Put '--' before the command so its options are not read as orcha's.
    """
    from orcha.client.submit import attach

    return attach(ShellKind.name, petition_id, {"argv": list(command)}, priority, detach)


class ShellPlugin(FirstPartyPlugin):
    name = "shell"
    help = "Run commands: the 'run' command and the 'shell' kind"

    def commands(self) -> list[click.Command]:
        return [run]

    def kinds(self) -> list[Kind]:
        return [ShellKind()]
