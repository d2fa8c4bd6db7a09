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
        from orcha.cli.report import report

        code = report(e, args)
    sys.exit(code)
