"""The hello plugin: the original Orcha tutorial's hello world as a native orcha kind.

The ``send`` command is declared in :mod:`orcha_plugins.hello_command`; this module adds
its click command and the ``hello`` kind."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import click

from orcha.cli.petition_options import command, petition_id, submission
from orcha.errors import ExitCode, InvalidPetitionError
from orcha.kinds import Kind
from orcha_plugins.base import FirstPartyPlugin
from orcha_plugins.hello_command import KIND, SEND

if TYPE_CHECKING:
    from orcha.service.context import Context


class HelloKind(Kind):
    """Prints ``Hello world! i`` for i in 0..counter-1, sleeping ``sleep_time`` between."""

    name = KIND
    help = "Print 'Hello world! i' COUNTER times, SLEEP_TIME seconds apart."
    schema = {
        "type": "object",
        "properties": {
            "counter": {"type": "integer", "minimum": 0, "default": 1,
                        "description": "How many lines to print."},
            "sleep_time": {"type": "number", "minimum": 0, "default": 0,
                           "description": "Seconds between lines."},
        },
        "additionalProperties": False,
    }  # fmt: skip

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        counter = params.get("counter", 1)
        if isinstance(counter, bool) or not isinstance(counter, int) or counter < 0:
            raise InvalidPetitionError(f"counter must be an integer >= 0, got {counter!r}")
        sleep_time = params.get("sleep_time", 0.0)
        if (
            isinstance(sleep_time, bool)
            or not isinstance(sleep_time, (int, float))
            or not math.isfinite(sleep_time)
            or sleep_time < 0
        ):
            raise InvalidPetitionError(f"sleep_time must be a number >= 0, got {sleep_time!r}")
        return {"counter": counter, "sleep_time": float(sleep_time)}

    def run(self, ctx: Context) -> int:
        counter = ctx.params["counter"]
        for i in range(counter):
            if i and ctx.sleep(ctx.params["sleep_time"]):
                # Cancelled: a code of 0 would read as success in status and logs.
                return int(ExitCode.INTERRUPTED)
            ctx.write(f"Hello world! {i}\n")
            ctx.progress(i + 1, counter, "lines")
        return 0


@command(SEND)
def send(**values: Any) -> int:
    """Send a hello-world petition: prints 'Hello world! 0' .. 'Hello world! N-1'.

    With --kind NAME, send a petition of that runtime kind instead.
    """
    from orcha.cli.petition import attach

    kind, params = submission(SEND, values)
    return attach(kind, petition_id(values), params, values["priority"], values["detach"])


class HelloPlugin(FirstPartyPlugin):
    name = "hello"
    help = "Hello world! from orcha: the 'send' command and the 'hello' kind"

    def commands(self) -> list[click.Command]:
        return [send]

    def kinds(self) -> list[Kind]:
        return [HelloKind()]
