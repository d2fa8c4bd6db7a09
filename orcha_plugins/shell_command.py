"""``orcha run ID -- CMD [ARG]...``: the shell plugin's command, declared as plain data.

Cheap to import (no click): ``orcha``'s fast path reads this declaration, and
:mod:`orcha_plugins.shell` builds the click command from it.
"""

from __future__ import annotations

from orcha.cli.grammar import DETACH, NO_STDIN, PRIORITY, Argument, Command

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: The kind of petition ``orcha run`` sends.
KIND = "shell"


def check_argv(argv: object) -> list[str]:
    """``argv`` if it is a non-empty list of strings with a non-empty first; ValueError
    otherwise."""
    if (
        not isinstance(argv, list)
        or not argv
        or not all(isinstance(a, str) for a in argv)
        or not argv[0]
    ):
        raise ValueError("argv must be a non-empty list of strings")
    return argv


def _submission(values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return KIND, {"argv": check_argv(list(values["command"]))}


RUN = Command(
    "run",
    module=__name__,
    params=(
        Argument("petition_id", "ID"),
        PRIORITY,
        Argument("command", "-- CMD [ARG]...", rest=True),
        DETACH,
        NO_STDIN,
    ),
    submission=_submission,
)
