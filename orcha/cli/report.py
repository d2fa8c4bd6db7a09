"""How the ``orcha`` command ends on an error: one line on stderr and an exit code."""

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
        return int(ExitCode.BROKEN_PIPE)  # exit as if killed by SIGPIPE, quietly
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
