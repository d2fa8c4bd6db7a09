"""How the ``orcha`` command ends on an error: one line on stderr and an exit code."""

from __future__ import annotations

import sys


def report(error: BaseException, args: list[str]) -> int:
    """Print ``error`` as one line on stderr and return its exit code (no traceback).
    The line shows control characters escaped (:func:`orcha.text.printable`): a
    message may quote what a petition holds, and must not drive the terminal."""
    from orcha.errors import ExitCode, OrchaError

    if isinstance(error, SystemExit):
        return error.code if isinstance(error.code, int) else 0
    if isinstance(error, KeyboardInterrupt):
        message, code = "interrupted", int(ExitCode.INTERRUPTED)
    elif isinstance(error, BrokenPipeError):
        return int(ExitCode.BROKEN_PIPE)  # exit as if killed by SIGPIPE, quietly
    elif isinstance(error, OrchaError):
        message, code = error.message, int(error.exit_code)
    elif _output_failed(error):
        message = f"cannot write the output: {error.strerror}"  # type: ignore[attr-defined]
        code = int(ExitCode.FAILED)
    else:
        if any(a in ("-v", "-vv", "--verbose") for a in args):
            import traceback

            traceback.print_exception(error)
        message = (
            f"internal error: {type(error).__name__}: {error} "
            "(run with -v for details, and please report it)"
        )
        code = int(ExitCode.FAILED)
    from orcha.text import printable  # a message may quote a petition's argv

    try:
        sys.stderr.write(f"orcha: {printable(message)}\n")
        sys.stderr.flush()
    except OSError:
        pass
    return code


#: The errors of a stream that cannot take more output (a full disk or quota, a file too
#: large, a failing device), as opposed to a reader that went away (EPIPE, above).
_WRITE_ERRNOS = frozenset(("ENOSPC", "EDQUOT", "EFBIG", "EIO"))


def _output_failed(error: BaseException) -> bool:
    """Whether ``error`` is stdout refusing the output (``orcha logs X > /dev/full``): an
    ordinary condition to report in one line, not a bug. The client writes no file but
    stdout and stderr (the errors of files it reads or creates name the file), so such an
    error without a file name is stdout's. Then stdout is pointed at /dev/null, so that
    the output it still holds is dropped rather than failing again at exit."""
    import errno
    import os

    if not isinstance(error, OSError) or error.filename is not None:
        return False
    if errno.errorcode.get(error.errno or 0) not in _WRITE_ERRNOS:
        return False
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # no stdout to quiet: the message is still right
    return True
