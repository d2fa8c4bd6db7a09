"""The ``orcha`` command line.

Imported first by the ``orcha`` script, before the modules that take time to import. A
Ctrl+C in that time would otherwise end in a KeyboardInterrupt traceback from the middle
of an import; so, in the ``orcha`` command only (never in a program that imports orcha
as a library), SIGINT just sets a flag until :func:`orcha.cli.main.main` takes over and
reports it as an interruption.
"""

import _signal  # the builtin behind signal: importing it costs nothing
import sys

#: Set when Ctrl+C came while the command was still being imported.
interrupted_early = False


def _note_interrupt(signum: int, frame: object) -> None:
    global interrupted_early
    interrupted_early = True


def take_back_sigint() -> bool:
    """Give SIGINT back to Python's default handler; whether it came meanwhile."""
    if _signal.getsignal(_signal.SIGINT) is _note_interrupt:
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    return interrupted_early


if (
    sys.argv
    and sys.argv[0].rsplit("/", 1)[-1] == "orcha"
    and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler
):
    _signal.signal(_signal.SIGINT, _note_interrupt)
