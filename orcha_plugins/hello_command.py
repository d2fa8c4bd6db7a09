"""``orcha send [ID] [--counter N] [--sleep-time T]``: the hello plugin's command, declared
as plain data.

Cheap to import (no click): ``orcha``'s fast path reads this declaration, and
:mod:`orcha_plugins.hello` builds the click command from it.
"""

from __future__ import annotations

from orcha.cli.grammar import DETACH, ID, JSON, PRIORITY, Argument, Command, Option
from orcha.cli.values import finite

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: The kind of petition ``orcha send`` sends (without ``--kind``).
KIND = "hello"


def _submission(values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if values.get("kind_name") is not None:
        return values["kind_name"], {}
    return KIND, {"counter": values["counter"], "sleep_time": values["sleep_time"]}


SEND = Command(
    "send",
    module=__name__,
    params=(
        Argument("petition_id", "ID", optional=True),
        ID,
        Option("--counter", type="int", min=0, default=1, show_default=True, metavar="N",
               help="How many lines to print."),
        Option("--sleep-time", type="float", min=0, default=0.0, show_default=True,
               metavar="T", check=finite, help="Seconds between lines."),
        PRIORITY,
        DETACH,
        JSON,
        # Another kind's parameters are that kind's to check: the fast path leaves it.
        Option("--kind", dest="kind_name", metavar="NAME", fast=False,
               help="Send a petition of runtime kind NAME instead (see 'orcha kinds'): its "
               "template's parameters and resources apply (--cpus, --timeout... given "
               "here override them); --counter and --sleep-time are not sent."),
    ),
    submission=_submission,
)  # fmt: skip
