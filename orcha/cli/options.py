"""Options every orcha command accepts: ``--address``, ``--key``, ``--config``, ``-v``,
``--color``, ``--version``, declared in :mod:`orcha.cli.grammar`; what they set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from orcha.cli.build import click_option
from orcha.cli.grammar import GLOBAL_OPTIONS

F = TypeVar("F", bound=Callable[..., Any])


class Globals:
    """What the global options set, wherever on the command line they were given."""

    def __init__(self) -> None:
        self.address: str | None = None
        self.key: str | None = None
        self.config: str | None = None
        self.verbose = 0
        self.color: str | None = None


def globals_of(ctx: click.Context) -> Globals:
    root = ctx.find_root()
    if not isinstance(root.obj, Globals):
        root.obj = Globals()
    return root.obj


def _set(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        g = globals_of(ctx)
        if name == "verbose":
            g.verbose += value or 0
        elif name == "color" and value is not None:
            from orcha.cli.output import set_color

            g.color = value
            set_color(value)
        elif value is not None:
            setattr(g, name, value)

    return callback


def _show_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from orcha import __version__

        click.echo(f"orcha {__version__}")
        ctx.exit(0)


def global_options(f: F) -> F:
    """Add the global options (:data:`orcha.cli.grammar.GLOBAL_OPTIONS`) to a command
    (they also work before the command name)."""
    for option in reversed(GLOBAL_OPTIONS):
        callback = _show_version if option.dest == "version" else _set(option.dest)
        f = click_option(option, callback)(f)
    return f


def settings_from(ctx: click.Context, **service_options: Any) -> Any:
    """Resolve and install the Settings for this invocation."""
    from orcha import settings

    g = globals_of(ctx)
    config = load_config(ctx) if g.config else None
    resolved = settings.resolve(
        address=g.address, key=g.key, verbose=g.verbose, config=config, **service_options
    )
    settings.configure(resolved)
    return resolved


def load_config(ctx: click.Context) -> Any:
    """The configuration file this invocation names (``--config``, ``ORCHA_CONFIG``) or
    the default one, loaded and validated. ConfigError if it is invalid."""
    from orcha import config

    return config.load(globals_of(ctx).config)


class NumbersAsArguments(click.Command):
    """A command whose arguments are numbers that may be negative ('orcha group set g
    -1'): such a word is its argument (refused by the argument's range, in one line, as
    0 is), not an unknown option '-1'. The value of an option stays the option's."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" not in args:
            valued = {name for p in self.params if isinstance(p, click.Option)
                      and not p.is_flag and not p.count for name in p.opts}  # fmt: skip
            kept: list[str] = []
            numbers: list[str] = []
            for word in args:
                negative = word[:1] == "-" and word[1:].isdigit() and word[1:].isascii()
                after_option = bool(kept) and kept[-1] in valued
                (numbers if negative and not after_option else kept).append(word)
            if numbers:
                args = [*kept, "--", *numbers]
        return super().parse_args(ctx, args)
