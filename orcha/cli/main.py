"""``orcha``: the entry point.

Kept free of heavy imports: a command line that a plugin's declared command
(:mod:`orcha.cli.grammar`) fully covers, such as ``orcha run ID -- CMD``, is run by
:mod:`orcha.cli.fast` without loading click or discovering plugins; everything else
(and any form the fast parser is not sure of, such as ``--help`` or a bad value) goes to
the click application, which gives the full help and usage errors.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Run orcha with ``argv`` (default: the command line) and exit with its code."""
    args = sys.argv[1:] if argv is None else list(argv)
    if sys.stdout is None or sys.stderr is None or sys.stdin is None:
        _open_closed_standard_fds()  # Python found one of fds 0-2 closed
    from orcha.cli import take_back_sigint

    fast = False
    try:
        if take_back_sigint():
            raise KeyboardInterrupt  # Ctrl+C while the command was being imported
        from orcha.cli.fast import try_fast

        code = try_fast(args)
        if code is None:
            from orcha.cli.app import run

            code = run(args)
        else:
            fast = argv is None  # the command line of this process, not a caller's
    except KeyboardInterrupt as e:  # before a command's own handling takes over
        from orcha.cli.report import report

        code = report(e, args)
    if fast:
        exit_now(code)
    sys.exit(code)


def _open_closed_standard_fds() -> None:
    """Open the null device on whichever of fds 0-2 the caller left closed (``orcha run
    x -- echo hi >&-``), and make it that stream. Else the connection to the service
    takes the lowest free fd, 1 say, and what orcha writes to its stdout goes into that
    connection: garbage to the service, a client that hangs. What had nowhere to go is
    dropped, as a shell drops it."""
    import os

    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)  # the lowest free fd: this one
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)
        setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115 (for the process's life)


def exit_now(code: int) -> None:
    """End this process with ``code`` once its output is out, without tearing the
    interpreter down: freeing every module and object costs a short ``orcha run`` a few
    milliseconds of its start-up budget for nothing (the fast path holds no other
    buffered file, registers no atexit handler and starts no thread). If the output
    cannot be flushed (a reader that went away), returns: ``sys.exit`` then reports it
    as it always has."""
    import os

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(code)
