"""Options of every command that submits a petition: resources, group, order, lifecycle.

``@petition_options`` adds them to a plugin's click command; :func:`orcha.client.submit.attach`
picks up what the user gave, so a plugin command gets all of them by adding one line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

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


def _parsed(
    name: str, parse: Callable[[Any], Any], hint: str
) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is None or value == ():
            return
        try:
            chosen(ctx).schedule[name] = parse(value)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint=hint) from e

    return callback


def _ids(values: tuple[str, ...]) -> list[str]:
    from orcha.protocol.messages import check_id

    out: list[str] = []
    for value in values:
        for item in value.split(","):
            petition_id = check_id(item.strip())
            if petition_id not in out:
                out.append(petition_id)
    return out


def _urls(values: tuple[str, ...]) -> list[str]:
    from orcha.protocol.schedule import check_url

    return [check_url(v) for v in values]


def _duration(text: str) -> float:
    from orcha.settings import parse_duration

    return parse_duration(text)


def _timeout(text: str) -> float:
    seconds = _duration(text)
    if seconds <= 0:
        raise ValueError("the timeout must be more than 0 seconds")
    return seconds


def _size(text: str) -> int:
    from orcha.settings import parse_size

    return parse_size(text)


def _group(text: str) -> str:
    from orcha.protocol.schedule import check_group

    return check_group(text)


def _env(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> None:
    for item in values:
        name, eq, value = item.partition("=")
        if not eq or not name or "\0" in item:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="'--env'")
        chosen(ctx).env[name] = value


def _cwd(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        chosen(ctx).cwd = os.path.abspath(value)


def petition_options(f: F) -> F:
    """Add ``--cpus --mem --gpus --group --after --after-any --timeout --retries
    --retry-delay --notify --env --cwd`` to a command that submits a petition."""
    decorators = [
        click.option("--cpus", type=click.IntRange(min=1), metavar="N", expose_value=False,
                     callback=_parsed("cpus", int, "'--cpus'"),
                     help="CPU slots it occupies while running (default 1)."),
        click.option("--mem", metavar="SIZE", expose_value=False,
                     callback=_parsed("mem", _size, "'--mem'"),
                     help="Memory it needs, e.g. 512M, 4G: it starts only when that much "
                     "is available and not reserved by running petitions."),
        click.option("--gpus", type=click.IntRange(min=0), metavar="N", expose_value=False,
                     callback=_parsed("gpus", int, "'--gpus'"),
                     help="GPUs it gets to itself (CUDA_VISIBLE_DEVICES and ORCHA_GPUS)."),
        click.option("--group", metavar="NAME", expose_value=False,
                     callback=_parsed("group", _group, "'--group'"),
                     help="Group whose own limit and pause apply (default 'default')."),
        click.option("--after", metavar="ID[,ID]", multiple=True, expose_value=False,
                     callback=_parsed("after", _ids, "'--after'"),
                     help="Start after these succeed; if one fails or is cancelled, this "
                     "fails too (exit 210). Repeatable."),
        click.option("--after-any", metavar="ID[,ID]", multiple=True, expose_value=False,
                     callback=_parsed("after_any", _ids, "'--after-any'"),
                     help="Start after these end, however they end. Repeatable."),
        click.option("--timeout", metavar="DURATION", expose_value=False,
                     callback=_parsed("timeout", _timeout, "'--timeout'"),
                     help="Stop an attempt that runs longer (e.g. 90s, 2h): it fails with "
                     "exit code 124."),
        click.option("--retries", type=click.IntRange(0, 1000), metavar="N",
                     expose_value=False, callback=_parsed("retries", int, "'--retries'"),
                     help="Run again up to N times after a non-zero exit."),
        click.option("--retry-delay", metavar="DURATION", expose_value=False,
                     callback=_parsed("retry_delay", _duration, "'--retry-delay'"),
                     help="Wait this long before each new attempt (default 0)."),
        click.option("--notify", metavar="URL", multiple=True, expose_value=False,
                     callback=_parsed("notify", _urls, "'--notify'"),
                     help="POST its state changes as JSON to this URL. Repeatable."),
        click.option("--env", metavar="NAME=VALUE", multiple=True, expose_value=False,
                     callback=_env, help="Set an environment variable. Repeatable."),
        click.option("--cwd", metavar="DIR", expose_value=False, callback=_cwd,
                     type=click.Path(exists=True, file_okay=False),
                     help="Working directory (default: the current one)."),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        f = decorator(f)
    return f
