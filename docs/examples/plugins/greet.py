"""greet: a click-native orcha plugin.

It adds the command ``orcha greet ID NAME`` and the petition kind ``greet``, which
writes "Hello, NAME!" a few times, a short pause apart, reporting its progress.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from orcha.cli.options import global_options
from orcha.cli.petition_options import petition_options
from orcha.kinds import Kind
from orcha.plugins import BasePlugin

if TYPE_CHECKING:
    from orcha.service.context import Context  # what run() and close() get


class GreetKind(Kind):
    """The work: it runs in the service, in a thread of its own, once admitted."""

    name = "greet"
    help = "Greet NAME, TIMES times, PAUSE seconds apart."
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "description": "Who to greet."},
            "times": {
                "type": "integer",
                "minimum": 1,
                "maximum": 100,
                "default": 3,
                "description": "How many greetings.",
            },
            "pause": {
                "type": "number",
                "minimum": 0,
                "maximum": 60,
                "default": 0.1,
                "description": "Seconds between two greetings.",
            },
        },
        "required": ["name"],
        "additionalProperties": False,
    }

    def run(self, ctx: Context) -> int:
        name, times = ctx.params["name"], ctx.params["times"]  # checked, defaults filled in
        for i in range(1, times + 1):
            ctx.write(f"Hello, {name}! ({i}/{times})\n")  # to the client's stdout
            ctx.progress(i, times, "greetings")  # a bar on the client's terminal
            if i < times and ctx.sleep(ctx.params["pause"]):  # True: cancelled
                return 130
        ctx.set_outcome({"greeted": name, "times": times})  # printed by the client
        return 0

    def close(self, ctx: Context) -> Any:
        """Ctrl+C or 'orcha cancel': end in order; the returned outcome is kept."""
        return {"greeted": ctx.params["name"], "interrupted": True}


@click.command("greet")
@click.argument("petition_id", metavar="ID")
@click.argument("name")
@click.option("--times", type=int, metavar="N", help="How many greetings (1-100, default 3).")
@click.option(
    "--pause", type=float, metavar="SECONDS", help="Seconds between greetings (default 0.1)."
)
@click.option("--priority", type=int, metavar="P", help="Lower runs first (default 0).")
@click.option("--detach", is_flag=True, help="Print the ID once queued and return.")
@petition_options  # --cpus --mem --gpus --group --after --timeout --retries ...
@global_options  # --address --key --config -v --version
def greet(
    petition_id: str,
    name: str,
    times: int | None,
    pause: float | None,
    priority: int | None,
    detach: bool,
) -> int:
    """Greet NAME from the service: 'Hello, NAME!' TIMES times."""
    from orcha.cli.petition import attach  # imported when used: clients start fast

    params: dict[str, Any] = {"name": name}
    if times is not None:
        params["times"] = times
    if pause is not None:
        params["pause"] = pause
    return attach(GreetKind.name, petition_id, params, priority, detach)


class GreetPlugin(BasePlugin):
    name = "greet"
    help = "Greetings from the service: the 'greet' command and kind"

    @staticmethod
    def version() -> str:
        return "greet - 1.0.0"

    def commands(self) -> list[click.Command]:
        return [greet]

    def kinds(self) -> list[Kind]:
        return [GreetKind()]


plugin = GreetPlugin
