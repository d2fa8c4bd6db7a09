"""``orcha run [ID] -- CMD [ARG]...``: the shell plugin's command, declared as plain data.

Cheap to import (no click): ``orcha``'s fast path reads this declaration, and
:mod:`orcha_plugins.shell` builds the click command from it.
"""

from __future__ import annotations

from orcha.cli.grammar import DETACH, ID, JSON, NO_STDIN, PRIORITY, Argument, Command, Option

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
    # --kind NAME: a runtime kind of 'shell' (a template) gives its resources and
    # settings; the command given here is its argv, and options given here win.
    command = list(values["command"])
    if not command or not command[0]:  # 'orcha run -- ""': the API's wording says argv
        raise ValueError("the command is empty: give the program to run after '--'")
    return values.get("kind_name") or KIND, {"argv": check_argv(command)}


RUN = Command(
    "run",
    module=__name__,
    params=(
        Argument("petition_id", "ID", optional=True),
        ID,
        PRIORITY,
        Argument("command", "-- CMD [ARG]...", rest=True),
        DETACH,
        # --array and --at-once with --detach take the fast path (orcha.cli.fast_arrays);
        # attached arrays and --each are left to click (orcha.cli.arrays).
        Option(
            "--array",
            metavar="SPEC",
            help="Run an array: one petition ID_INDEX per index of SPEC (Slurm's "
            "syntax: 1-100, 1,3,5-9, 0-20:5; '%N' at the end: at most N at once). "
            "'{}' in the command and ORCHA_ARRAY_INDEX give the index.",
        ),
        Option(
            "--each",
            metavar="FILE",
            fast=False,
            help="Run one petition ID_N per line of FILE ('-': stdin; blank lines "
            "skipped), as GNU parallel's '::::': '{}' in the command is the line "
            "(appended if there is no '{}'), ORCHA_ARRAY_INDEX its number N.",
        ),
        Option(
            "--at-once",
            type="int",
            min=1,
            metavar="N",
            help="With --array or --each: at most N of its petitions run at once (as '%N').",
        ),
        JSON,
        # A template's settings are the service's to merge: the fast path leaves it.
        Option(
            "--kind",
            dest="kind_name",
            metavar="NAME",
            fast=False,
            help="Run it as a petition of runtime kind NAME, a template of 'shell' "
            "(see 'orcha kinds'): the template's resources and settings apply, this "
            "command and the options given here override them.",
        ),
        NO_STDIN,
    ),
    submission=_submission,
)
