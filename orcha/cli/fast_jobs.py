"""The fast path of ``orcha wait ID...``, ``orcha cancel ID...`` and ``orcha status
[ID...]``: without click.

Importing click and building a command's options costs several times Python's own
start-up, and scripts call ``wait``, ``cancel`` and ``status`` on single IDs in loops.
So the plain forms (the command name, then petition IDs, none starting with ``-``; for
``status``, no ID too) are run here, with the same client calls and the same reports
(:mod:`orcha.cli.bulk`, :mod:`orcha.cli.status_text`) as the click commands in
:mod:`orcha.cli.jobs`: the same output, byte for byte, and exit codes. Anything else (an
option, ``--``, ``--help``, no ID to wait for or cancel, shell completion, a stream
click would re-encode) returns None: click answers.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import TextIO

    from orcha.client.api import Client
    from orcha.config import Config

#: The commands served here.
COMMANDS = ("wait", "cancel", "status")


def plain_ids(args: list[str]) -> tuple[str, ...] | None:
    """The IDs of ``args`` (``[COMMAND, ID...]``) if it is a plain form this module
    serves; None otherwise."""
    if not args or args[0] not in COMMANDS or (len(args) < 2 and args[0] != "status"):
        return None
    ids = tuple(args[1:])
    if any(i.startswith("-") for i in ids):
        return None  # an option, "--" or "-h": click knows them all
    return ids


def try_jobs(args: list[str], config: Config | None) -> int | None:
    """Run ``args`` if it is a plain ``wait``/``cancel`` form (with ``config``, the
    configuration file if there is one); None to let click handle it."""
    import os
    import sys
    import time

    ids = plain_ids(args)
    if ids is None or "_ORCHA_COMPLETE" in os.environ:  # completion.COMPLETE_VAR: click's
        return None
    if args[0] == "status" and not (_plain_text(sys.stdout) and _plain_text(sys.stderr)):
        return None
    try:
        from orcha import settings
        from orcha.cli import bulk
        from orcha.client.api import Client

        resolved = settings.resolve(config=config)
        settings.configure(resolved)
        if args[0] == "status":
            return _status(Client(settings=resolved), ids)
        with Client(settings=resolved) as service:
            if args[0] == "cancel":
                began = time.monotonic()
                results = service.cancel_each(ids, False, groups=[], states=[],
                                              everything=False, signal=None)  # fmt: skip
                gave_up = bulk.abandoned(service, results, time.monotonic() - began)
            else:
                report = service.wait_report(list(ids), None)
        if args[0] == "cancel":
            return bulk.report_cancel(results, False, None, abandoned=gave_up)
        return bulk.report_wait(report, bool(report["arrays"]), "any", None)
    except BaseException as e:
        from orcha.cli.report import report as report_error

        return report_error(e, args)


def _plain_text(stream: TextIO | None) -> bool:
    """Whether click would write to ``stream`` as it is: a text stream whose encoding is
    not ASCII (click writes UTF-8 to a stream that says ASCII, with replacements)."""
    import codecs

    try:
        return codecs.lookup(stream.encoding or "ascii").name != "ascii"  # type: ignore[union-attr]
    except (AttributeError, LookupError):
        return False


def _status(client: Client, ids: tuple[str, ...]) -> int:
    """``orcha status [ID...]`` through ``client``, as :func:`orcha.cli.jobs.status`
    says it: without IDs the default view (the running, the first queued and the last
    ended petitions)."""
    from orcha.cli import status_text
    from orcha.defaults import STATUS_ENDED_SHOWN, STATUS_QUEUED_SHOWN

    limited = not ids
    with client as service:
        answer = service.status_report(
            ids, [], [], None, STATUS_ENDED_SHOWN if limited else None,
            STATUS_QUEUED_SHOWN if limited else None,
        )  # fmt: skip
    status_text.show(answer, ids, "submitted")
    return 0
