"""click options built from the declarations in :mod:`orcha.cli.grammar`.

The click commands and the fast path read the same declarations and check values with
the same functions (:mod:`orcha.cli.values`); here those checks become click's usage
errors (exit 2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from orcha.cli.grammar import COUNT, FLAG, Option

F = TypeVar("F", bound=Callable[..., Any])


class Refused(click.UsageError):
    """What the command line gave is refused (a value, or options that disagree), where
    the shape of the command line is fine: :func:`orcha.cli.app.run` prints it as one
    line, as a refused value (exit 2). click's own errors about the shape (a missing
    argument, an unknown option) are one line too (:func:`orcha.cli.app.usage_line`)."""

    def __init__(self, message: str, ctx: click.Context | None = None) -> None:
        super().__init__(message, ctx or click.get_current_context(silent=True))


Callback = Callable[[click.Context, click.Parameter, Any], Any]


def click_type(option: Option) -> click.ParamType | None:
    """The click type that accepts what :func:`orcha.cli.grammar.typed` accepts."""
    bounded = option.min is not None or option.max is not None
    if option.type == "int":
        low, high = (None if b is None else int(b) for b in (option.min, option.max))
        return click.IntRange(low, high) if bounded else click.INT
    if option.type == "float":
        return click.FloatRange(option.min, option.max) if bounded else click.FLOAT
    if option.type == "dir":
        return click.Path(exists=True, file_okay=False)
    return None


def checked(option: Option) -> Callable[[Any], Any]:
    """The option's check as click sees it: ValueError becomes a usage error (exit 2);
    absent values (None, or no repeat of a multiple option) pass unchecked."""

    def check(value: Any) -> Any:
        if value is None or value == () or option.check is None:
            return value
        try:
            return option.check(value)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint=option.hint) from e

    return check


def click_option(option: Option, callback: Callback | None = None) -> Callable[[F], F]:
    """A click option decorator for ``option``. With ``callback`` (which gets the checked
    value) the value is not passed to the command function; without, it is, as ``dest``."""
    check = checked(option)
    kw: dict[str, Any] = {"help": option.help}
    if option.action == FLAG:
        kw["is_flag"] = True
    elif option.action == COUNT:
        kw["count"] = True
    else:
        kw.update(metavar=option.metavar, multiple=option.multiple, type=click_type(option))
    if option.default is not None:
        kw.update(default=option.default, show_default=option.show_default)
    if option.eager:
        kw["is_eager"] = True
    if callback is None:

        def plain(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
            return check(value)

        kw["callback"] = plain
    else:
        given = callback

        def passed(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
            return given(ctx, param, check(value))

        kw.update(callback=passed, expose_value=False)
    return click.option(*option.names, option.dest, **kw)
