"""The CLI's output conventions: ``--json`` and ``--color``, one place for every command.

* ``--json``: a command that acts or reports adds :func:`json_option` and prints its
  document with :func:`print_json`: indented (2 spaces) when stdout is a terminal, one
  line when it is piped or redirected, so ``orcha X --json | jq`` and a person at a
  terminal both read it well. What each command prints is documented, field by field,
  in ``docs/json-output.rst`` (a test checks the documented fields are there).
* ``--color auto|always|never`` (a global option, :data:`orcha.cli.grammar.GLOBAL_OPTIONS`)
  with the usual environment: ``NO_COLOR`` (any non-empty value) turns colour off and
  ``FORCE_COLOR`` turns it on, unless ``--color`` says otherwise; ``auto`` colours only
  a terminal. :func:`use_color` is the one answer every command asks.

Cheap to import (no click at module level, no rich): status and the other commands
import it on their way to printing.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TextIO, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])

#: The help of every ``--json`` option (the behaviour is the same everywhere).
JSON_HELP = (
    "Print JSON for scripts (documented in the docs' 'Machine-readable output' page): "
    "indented on a terminal, one line when piped."
)

#: The values ``--color`` takes.
COLOR_CHOICES = ("auto", "always", "never")

#: ``--color`` as given on this command line (None: not given). Set by the global
#: option's callback, or by the fast path, before anything is printed.
_color_choice: str | None = None


def json_option(f: F) -> F:
    """Add ``--json`` (value ``as_json``, a flag) to a click command: the one declaration
    of the option every command that acts or reports shares."""
    import click

    return click.option("--json", "as_json", is_flag=True, help=JSON_HELP)(f)


def dumps(doc: Any, stream: TextIO | None = None) -> str:
    """``doc`` as JSON: indented if ``stream`` (default stdout) is a terminal, else on
    one line (compact, as scripts read it)."""
    out = sys.stdout if stream is None else stream
    try:
        tty = out.isatty()
    except (AttributeError, ValueError):
        tty = False
    import json  # here: commands that print no JSON do not pay for its import

    return json.dumps(doc, indent=2 if tty else None)


def print_json(doc: Any) -> None:
    """Print ``doc`` on stdout as JSON (see :func:`dumps`), followed by a newline."""
    sys.stdout.write(dumps(doc) + "\n")
    sys.stdout.flush()


def set_color(choice: str | None) -> None:
    """Note ``--color CHOICE`` for this process (None leaves the environment to decide)."""
    global _color_choice
    if choice is not None and choice not in COLOR_CHOICES:
        raise ValueError(f"{choice!r} is not one of {', '.join(COLOR_CHOICES)}")
    _color_choice = choice


def use_color(stream: TextIO | None = None, choice: str | None = None) -> bool:
    """Whether to colour what goes to ``stream`` (default stdout): ``--color always`` or
    ``never`` decide; otherwise (``auto``) ``NO_COLOR`` turns it off, ``FORCE_COLOR``
    on, and else only a terminal (not ``TERM=dumb``) is coloured."""
    choice = choice or _color_choice or "auto"
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    out = sys.stdout if stream is None else stream
    try:
        return out.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def rich_console(stderr: bool = False) -> Any:
    """A rich Console that colours as :func:`use_color` says (imports rich)."""
    from rich.console import Console

    color = use_color(sys.stderr if stderr else sys.stdout)
    return Console(
        stderr=stderr,
        highlight=False,
        no_color=not color,
        force_terminal=True if color else None,
    )


#: ANSI styles :func:`paint` knows (SGR codes).
_STYLES = {
    "bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34",
    "magenta": "35", "cyan": "36",
}  # fmt: skip


def paint(text: str, style: str | None, color: bool) -> str:
    """``text`` in ``style`` (a name of :data:`_STYLES`) when ``color``, else as it is."""
    if not color or not style or not text:
        return text
    return f"\x1b[{_STYLES[style]}m{text}\x1b[0m"
