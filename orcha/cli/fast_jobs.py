"""The fast path of ``orcha wait ID...`` and ``orcha cancel ID...``: without click.

Importing click and building a command's options costs several times Python's own
start-up, and scripts call ``wait`` and ``cancel`` on single IDs in loops. So the plain
forms (the command name, then petition IDs, none starting with ``-``) are run here, with
the same client calls and the same reports (:mod:`orcha.cli.bulk`) as the click commands
in :mod:`orcha.cli.jobs`: the same output, byte for byte, and exit codes. Anything else
(an option, ``--``, ``--help``, no ID, shell completion) returns None: click answers.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from orcha.config import Config

#: The commands served here.
COMMANDS = ("wait", "cancel")


def plain_ids(args: list[str]) -> tuple[str, ...] | None:
    """The IDs of ``args`` (``[COMMAND, ID...]``) if it is a plain form this module
    serves; None otherwise."""
    if len(args) < 2 or args[0] not in COMMANDS:
        return None
    ids = tuple(args[1:])
    if any(i.startswith("-") for i in ids):
        return None  # an option, "--" or "-h": click knows them all
    return ids


def try_jobs(args: list[str], config: Config | None) -> int | None:
    """Run ``args`` if it is a plain ``wait``/``cancel`` form (with ``config``, the
    configuration file if there is one); None to let click handle it."""
    import os

    ids = plain_ids(args)
    if ids is None or "_ORCHA_COMPLETE" in os.environ:  # completion.COMPLETE_VAR: click's
        return None
    try:
        from orcha import settings
        from orcha.cli import bulk
        from orcha.client.api import Client

        resolved = settings.resolve(config=config)
        settings.configure(resolved)
        with Client(settings=resolved) as service:
            if args[0] == "cancel":
                results = service.cancel_each(ids, False, groups=(), states=(),
                                              everything=False, signal=None)  # fmt: skip
            else:
                report = service.wait_report(list(ids), None)
        if args[0] == "cancel":
            return bulk.report_cancel(results, False, None)
        return bulk.report_wait(report, bool(report["arrays"]), "any", None)
    except BaseException as e:
        from orcha.cli.report import report as report_error

        return report_error(e, args)
