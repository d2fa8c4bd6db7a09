"""countdown: an argparse plugin, in the style of the original Orcha.

``orcha countdown ID [--from N] [--pause SECONDS] [--detach]`` (or ``orcha liftoff ...``)
sends a petition of the ``countdown`` kind, which this plugin provides too. The kind
counts down itself, then runs ``echo Liftoff!`` as a process of the petition.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from orcha.kinds import Kind
from orcha.plugins import BasePlugin

if TYPE_CHECKING:
    from orcha.service.context import Context  # what run() gets


class CountdownKind(Kind):
    name = "countdown"
    help = "Count down from START to 1, PAUSE seconds apart, then print 'Liftoff!'."
    schema = {
        "type": "object",
        "properties": {
            "start": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 3},
            "pause": {"type": "number", "minimum": 0, "maximum": 60, "default": 0.1},
        },
        "additionalProperties": False,
    }

    def run(self, ctx: Context) -> int:
        for n in range(ctx.params["start"], 0, -1):
            ctx.write(f"{n}...\n")
            if ctx.sleep(ctx.params["pause"]):  # True at once when cancelled
                return 130
        proc = ctx.spawn(["echo", "Liftoff!"])  # a process the service can find and stop
        return ctx.pump(proc)  # streams its output; its exit code is the petition's


class CountdownPlugin(BasePlugin):
    name = "countdown"  # also the command: orcha countdown
    aliases = ("liftoff",)  # orcha liftoff does the same
    help = "Count down to liftoff (an argparse plugin)"

    def create_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("id", metavar="ID", help="the petition's ID")
        parser.add_argument("--from", dest="start", type=int, default=3, metavar="N",
                            help="where to start (default 3)")  # fmt: skip
        parser.add_argument("--pause", type=float, default=0.1, metavar="SECONDS",
                            help="seconds between two numbers (default 0.1)")  # fmt: skip
        parser.add_argument("--detach", action="store_true",
                            help="print the ID once queued and return")  # fmt: skip

    def handle(self, namespace: argparse.Namespace) -> int:
        from orcha.cli.petition import attach

        params = {"start": namespace.start, "pause": namespace.pause}
        return attach(CountdownKind.name, namespace.id, params, None, namespace.detach)

    @staticmethod
    def version() -> str:
        return "countdown - 1.0.0"

    def kinds(self) -> list[Kind]:
        return [CountdownKind()]


plugin = CountdownPlugin
