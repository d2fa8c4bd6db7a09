"""``orcha``: the entry point.

Kept free of heavy imports: ``orcha run`` and ``orcha send`` in their documented form are
parsed by :mod:`orcha.cli.fast` and never load click or discover plugins; everything else
(and any form the fast parser does not fully understand, such as ``--help`` or a bad
value) goes to the click application, which gives the full help and usage errors.
"""

from __future__ import annotations

import sys


def report(error: BaseException, args: list[str]) -> int:
    """Print ``error`` as one line on stderr and return its exit code (no traceback)."""
    from orcha.errors import ExitCode, OrchaError

    if isinstance(error, SystemExit):
        return error.code if isinstance(error.code, int) else 0
    if isinstance(error, KeyboardInterrupt):
        message, code = "interrupted", int(ExitCode.INTERRUPTED)
    elif isinstance(error, BrokenPipeError):
        return 128 + 13  # our reader went away: exit as if killed by SIGPIPE, quietly
    elif isinstance(error, OrchaError):
        message, code = error.message, int(error.exit_code)
    else:
        if any(a in ("-v", "-vv", "--verbose") for a in args):
            import traceback

            traceback.print_exception(error)
        message = (
            f"internal error: {type(error).__name__}: {error} "
            "(run with -v for details, and please report it)"
        )
        code = int(ExitCode.FAILED)
    try:
        sys.stderr.write(f"orcha: {message}\n")
        sys.stderr.flush()
    except OSError:
        pass
    return code


def main(argv: list[str] | None = None) -> None:
    """Run orcha with ``argv`` (default: the command line) and exit with its code."""
    args = sys.argv[1:] if argv is None else list(argv)
    from orcha.cli import take_back_sigint

    try:
        if take_back_sigint():
            raise KeyboardInterrupt  # Ctrl+C while the command was being imported
        from orcha.cli.fast import try_fast

        code = try_fast(args)
        if code is None:
            from orcha.cli.app import run

            code = run(args)
    except KeyboardInterrupt as e:  # before a command's own handling takes over
        code = report(e, args)
    sys.exit(code)
