"""Admission control from any shell: ``group``, ``pause``, ``resume``."""

from __future__ import annotations

from typing import Any

import click

from orcha.cli import bulk
from orcha.cli.build import Refused
from orcha.cli.completion import petition_ids
from orcha.cli.connect import client
from orcha.cli.options import NumbersAsArguments, global_options
from orcha.cli.output import json_option
from orcha.errors import NoPetitionError


def _group_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from orcha.protocol.schedule import check_group

    if value is None:
        return None
    try:
        return check_group(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e


def _print_groups(groups: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        from orcha.cli.output import print_json

        print_json({"groups": groups})
        return
    header = ["GROUP", "MAX", "RUNNING", "QUEUED", "STATE"]
    rows = [
        [g["name"], str(g["max_running"] or "-"), str(g["running"]), str(g["queued"]),
         "paused" if g["paused"] else "admitting"]
        for g in groups
    ]  # fmt: skip
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for line in [header, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


@click.group("group", invoke_without_command=True)
@click.pass_context
def group(ctx: click.Context) -> int | None:
    """Named groups of petitions, each with its own limit of running petitions.

    A petition joins a group with --group NAME (else it is in 'default'); a group's
    limit counts its running petitions, within the service's CPU capacity. Alone,
    'orcha group' lists them, as 'orcha group ls' (pueue's 'group').
    """
    if ctx.invoked_subcommand is None:
        return int(ctx.invoke(group_ls))
    return None


@group.command("ls")
@json_option
@global_options
@click.pass_context
def group_ls(ctx: click.Context, as_json: bool) -> int:
    """List groups: limit, running and queued petitions, paused or not."""
    with client(ctx) as service:
        groups = service.groups()
    _print_groups(groups, as_json)
    return 0


@group.command("set", cls=NumbersAsArguments)
@click.argument("name", callback=_group_name)
@click.argument("limit", type=click.IntRange(min=1), required=False, metavar="[N]")
@click.option("--max-running", type=click.IntRange(min=1), metavar="N",
              help="Run at most N petitions of this group at once (the same as N).")  # fmt: skip
@json_option
@global_options
@click.pass_context
def group_set(
    ctx: click.Context, name: str, limit: int | None, max_running: int | None, as_json: bool
) -> int:
    """Limit how many petitions of group NAME run at once to N (kept across restarts):
    'orcha group set gpu 1', or 'orcha group set gpu --max-running 1'."""
    if limit is not None and max_running is not None and limit != max_running:
        raise Refused(f"give the limit once: {limit} or --max-running {max_running}")
    max_running = limit if limit is not None else max_running
    if max_running is None:
        raise Refused(f"say how many may run at once: 'orcha group set {name} N'")
    with client(ctx) as service:
        groups = service.set_group(name, max_running)
    mine = [g for g in groups if g["name"] == name]
    _print_groups(mine, as_json)
    for g in mine:
        if g.get("warning") and not as_json:  # with --json: its "warning" field only
            click.echo(f"orcha: warning: {g['warning']}", err=True)
    return 0


@group.command("rm")
@click.argument("name", callback=_group_name)
@json_option
@global_options
@click.pass_context
def group_rm(ctx: click.Context, name: str, as_json: bool) -> int:
    """Remove group NAME's own limit (its petitions then share the service's capacity)."""
    with client(ctx) as service:
        service.set_group(name, None)
    if as_json:
        from orcha.cli.output import print_json

        print_json({"name": name, "max_running": None})
        return 0
    click.echo(f"orcha: group {name} has no limit of its own now", err=True)
    return 0


def _group_names(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str | None, ...]:
    return tuple(_group_name(ctx, param, name) for name in values)


def _scope_options(f: Any) -> Any:
    f = click.option(
        "--all", "everything", is_flag=True,
        help="Every petition and group (the default without IDs or --group).",
    )(f)  # fmt: skip
    f = click.option(
        "--group", "groups", multiple=True, metavar="NAME", callback=_group_names,
        help="Every petition of this group, now and later. Repeatable.",
    )(f)  # fmt: skip
    return click.argument("ids", nargs=-1, metavar="[ID]...", shell_complete=petition_ids)(f)


def _unused(name: str, report: list[dict[str, Any]]) -> str:
    """A note for a group nobody uses (no petition, no limit of its own): a pause holds
    it for petitions to come, but it may be a slip for another group's name."""
    used = sorted(g["name"] for g in report if g["running"] or g["queued"] or g["max_running"])
    if name in used:
        return ""
    import difflib

    close = difflib.get_close_matches(name, used, n=1, cutoff=0.6)
    if close:
        return f" (no petition is in it yet; did you mean {close[0]!r}?)"
    return " (no petition is in it yet)"


def _pause_or_resume(
    ctx: click.Context, op: str, ids: tuple[str, ...], groups: tuple[str, ...],
    everything: bool, running: bool, as_json: bool = False,
) -> int:  # fmt: skip
    everything = everything or not (ids or groups)
    with client(ctx) as service:
        # Before: a resume may start a group's petitions, and they may end before a look
        # after it, leaving the group looking unused.
        report = service.groups() if groups and not as_json else []
        if op == "pause":
            results = service.pause(ids, groups, everything, running)
        else:
            results = service.resume(ids, groups, everything)
    done = "paused" if op == "pause" else "resumed"
    if as_json:
        from orcha.cli.output import print_json

        print_json({"all": everything, "groups": list(groups), "results": results})
        failures = [r for r in results.values() if r != done]
        if failures:
            raise NoPetitionError(f"{failures[-1]}; see 'orcha status'")
        return 0
    if everything:
        click.echo(f"orcha: {done} everything", err=True)
    for name in groups:
        click.echo(f"orcha: {done} group {name}{_unused(name, report)}", err=True)
    failures = [r for r in results.values() if r != done]
    bulk.say_done(done, [i for i, r in results.items() if r == done])
    bulk.say_each(failures[:-1])
    if failures:
        raise NoPetitionError(f"{failures[-1]}; see 'orcha status'")
    return 0


@click.command("pause")
@_scope_options
@click.option(
    "--running", is_flag=True,
    help="Also stop (SIGSTOP) the process trees of running petitions in scope.",
)  # fmt: skip
@json_option
@global_options
@click.pass_context
def pause(
    ctx: click.Context, ids: tuple[str, ...], groups: tuple[str, ...], everything: bool,
    running: bool, as_json: bool,
) -> int:  # fmt: skip
    """Stop starting petitions: these IDs, these groups, or all (kept across restarts).

    Running petitions go on unless --running is given, which stops their processes
    until 'orcha resume'. Timeouts keep counting while a petition is stopped.
    """
    return _pause_or_resume(ctx, "pause", ids, groups, everything, running, as_json)


@click.command("resume")
@_scope_options
@json_option
@global_options
@click.pass_context
def resume(
    ctx: click.Context, ids: tuple[str, ...], groups: tuple[str, ...], everything: bool,
    as_json: bool,
) -> int:  # fmt: skip
    """Undo 'orcha pause': admit these IDs, groups, or all again, and continue (SIGCONT)
    the stopped processes among them."""
    return _pause_or_resume(ctx, "resume", ids, groups, everything, False, as_json)
