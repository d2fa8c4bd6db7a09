"""Options of every command that submits a petition: resources, group, order, lifecycle.

They are declared once in :mod:`orcha.cli.grammar` (``PETITION_OPTIONS``).
``@petition_options`` adds them to a plugin's click command; :func:`orcha.cli.petition.attach`
picks up what the user gave, so a plugin command gets all of them by adding one line.
:func:`command` builds a plugin's whole click command from its declaration
(:class:`orcha.cli.grammar.Command`), the same one the fast path reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from orcha.cli.build import Refused, click_option
from orcha.cli.grammar import (
    FLAG,
    PETITION_OPTIONS,
    Argument,
    Command,
    Option,
    assign,
    petition_id_of,
)
from orcha.cli.options import global_options

F = TypeVar("F", bound=Callable[..., Any])

_META = "orcha.petition_options"


class Chosen:
    """What the petition options of one invocation asked for."""

    def __init__(self) -> None:
        self.schedule: dict[str, Any] = {}
        self.env: dict[str, str] = {}
        self.cwd: str | None = None


def chosen(ctx: click.Context | None = None) -> Chosen:
    """The petition options given to the current command (empty if it has none)."""
    ctx = ctx or click.get_current_context(silent=True)
    if ctx is None:
        return Chosen()
    value = ctx.meta.get(_META)
    if not isinstance(value, Chosen):
        value = ctx.meta[_META] = Chosen()
    return value


def _store(option: Option) -> Callable[[click.Context, click.Parameter, Any], None]:
    """Put the (checked) value of ``option`` where :func:`orcha.cli.grammar.petition_request`
    puts it on the fast path."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is None or value == () or (option.action == FLAG and value is False):
            return  # not given (a flag left out reads False): the fast path sends nothing
        target = chosen(ctx)
        if option.into == "env":
            target.env.update(value)
        elif option.into == "cwd":
            target.cwd = value
        else:
            target.schedule[option.dest] = value

    return callback


def petition_options(f: F) -> F:
    """Add ``--cpus --mem --gpus --group --after --after-any --timeout --retries
    --retry-delay --notify --env --cwd`` to a command that submits a petition."""
    for option in reversed(PETITION_OPTIONS):
        f = click_option(option, _store(option))(f)
    return f


def command(spec: Command) -> Callable[[Callable[..., Any]], click.Command]:
    """Make a function taking the values of ``spec`` (as keyword arguments) into its
    click command: its own parameters, then the petition options, then the global ones.
    The function's docstring is the command's help."""

    def decorate(f: Callable[..., Any]) -> click.Command:
        decorators: list[Callable[[Any], Any]] = []
        for param in spec.params:
            if isinstance(param, Argument):
                if param.rest:
                    # Checked by _Command: the words after '--' are the rest.
                    decorators.append(click.argument(
                        param.dest, nargs=-1, required=False, type=click.UNPROCESSED,
                        metavar=param.metavar,
                    ))  # fmt: skip
                else:
                    metavar = f"[{param.metavar}]" if param.optional else param.metavar
                    decorators.append(click.argument(
                        param.dest, metavar=metavar, required=not param.optional
                    ))  # fmt: skip
            else:
                decorators.append(click_option(param))
        if spec.petition:
            decorators.append(petition_options)
        decorators.append(global_options)
        for decorator in reversed(decorators):
            f = decorator(f)
        cmd = click.command(spec.name, cls=_Command)(f)
        cmd.orcha_spec = spec  # type: ignore[attr-defined]  # read by orcha.cli.fast_commands
        return cmd

    return decorate


class _Command(click.Command):
    """A command built from a declaration: its positional words are given to its
    arguments as :func:`orcha.cli.grammar.assign` says (the words after ``--`` are the
    command, those before it the ID), exactly as the fast path reads them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # click does not say where '--' was: the words after the first one are the last
        # positional words (the fast path leaves a line with '--' as a value to click).
        after = len(args) - args.index("--") - 1 if "--" in args else None
        rest = super().parse_args(ctx, args)
        spec: Command = self.orcha_spec  # type: ignore[attr-defined]
        arguments = [p for p in spec.params if isinstance(p, Argument)]
        words: list[str] = []
        for argument in arguments:
            value = ctx.params.get(argument.dest)
            if argument.rest:
                words.extend(value or ())
            elif value is not None:
                words.append(value)
        split = None if after is None else len(words) - after
        try:
            ctx.params.update(assign(arguments, words, split))
        except ValueError as e:
            raise click.UsageError(str(e), ctx) from None
        return rest


def petition_id(values: dict[str, Any]) -> str | None:
    """The ID the command line gave (ID argument or ``--id``), None for none; a usage
    error (exit 2) for both, or for a name a new petition may not take."""
    try:
        return petition_id_of(values)
    except ValueError as e:
        raise Refused(str(e)) from None


def submission(spec: Command, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``spec.submission(values)``, its ValueError a usage error (exit 2)."""
    try:
        return spec.submission(values)
    except ValueError as e:
        raise Refused(str(e)) from None
