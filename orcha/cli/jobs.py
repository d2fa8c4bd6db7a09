"""Job control from any shell: ``status``, ``cancel``, ``clean``."""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import click

from orcha.cli.options import global_options, settings_from
from orcha.errors import ExitCode, OrchaError
from orcha.states import State

_STATES = [s.value for s in State]
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _request(ctx: click.Context, obj: dict[str, Any]) -> dict[str, Any]:
    from orcha.client.session import Session

    session = Session.open(settings_from(ctx))
    try:
        return session.request(obj)
    finally:
        session.close()


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w`` -> seconds; ValueError otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not m:
        raise ValueError(f"{text!r} is not a duration (e.g. 90s, 15m, 12h, 7d)")
    return float(m.group(1)) * _UNITS.get(m.group(2) or "s", 1)


def _when(stamp: float | None) -> str:
    if not stamp:
        return "-"
    t = time.localtime(stamp)
    return time.strftime("%H:%M:%S" if t[:3] == time.localtime()[:3] else "%m-%d %H:%M", t)


def _runtime(row: dict[str, Any]) -> str:
    if not row.get("started"):
        return "-"
    seconds = (row.get("ended") or time.time()) - row["started"]
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _note(row: dict[str, Any]) -> str:
    return str(row.get("waiting") or row.get("message") or "")


class NoPetitionError(OrchaError):
    exit_code = ExitCode.NO_PETITION


@click.command("status")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--state", "states", multiple=True, metavar="STATE",
              type=click.Choice(_STATES, case_sensitive=False),
              help="Only petitions in this state (repeatable).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@global_options
@click.pass_context
def status(ctx: click.Context, ids: tuple[str, ...], states: tuple[str, ...], as_json: bool) -> int:
    """Show petitions: queued, running and ended (all, or those with the given IDs).

    For a waiting petition it says why it waits.
    """
    answer = _request(
        ctx, {"op": "status", "ids": list(ids), "states": [s.upper() for s in states]}
    )
    rows, missing = answer["petitions"], answer["missing"]
    if as_json:
        click.echo(json.dumps({"petitions": rows, "missing": missing}, indent=2))
    else:
        header = ["ID", "KIND", "STATE", "PRIO", "SUBMITTED", "RUNTIME", "CODE", "NOTE"]
        table = [
            [r["id"], r["kind"] or "-", r["state"], str(r["priority"]), _when(r["submitted"]),
             _runtime(r), "-" if r["code"] is None else str(r["code"]), _note(r)]
            for r in rows
        ]  # fmt: skip
        if sys.stdout.isatty():
            from rich.console import Console
            from rich.table import Table

            t = Table(*header, box=None, header_style="bold")
            colours = {"RUNNING": "cyan", "SUCCEEDED": "green", "FAILED": "red",
                       "CANCELLED": "yellow", "INTERRUPTED": "magenta"}  # fmt: skip
            for line in table:
                t.add_row(*line, style=colours.get(line[2]))
            Console(highlight=False).print(t)
        elif table:
            widths = [max(len(h), *(len(line[i]) for line in table)) for i, h in enumerate(header)]
            for line in [header, *table]:
                cells = (c.ljust(w) for c, w in zip(line, widths, strict=True))
                click.echo("  ".join(cells).rstrip())
    if missing:
        raise NoPetitionError(
            f"no petition has ID {', '.join(map(repr, missing))}; see 'orcha status' for all"
        )
    return 0


@click.command("cancel")
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.option("--force", is_flag=True, help="SIGKILL the processes at once (no grace period).")
@global_options
@click.pass_context
def cancel(ctx: click.Context, ids: tuple[str, ...], force: bool) -> int:
    """Cancel queued or running petitions (their whole process trees are stopped)."""
    answer = _request(ctx, {"op": "cancel", "ids": list(ids), "force": force})
    failures = [(i, r) for i, r in answer["results"].items() if r != "cancelled"]
    for petition_id, result in answer["results"].items():
        if result == "cancelled":
            click.echo(f"orcha: cancelled {petition_id}", err=True)
    for _, reason in failures[:-1]:
        click.echo(f"orcha: {reason}; nothing to cancel", err=True)
    if failures:
        raise NoPetitionError(f"{failures[-1][1]}; nothing to cancel")
    return 0


@click.command("clean")
@click.option(
    "--older-than",
    metavar="DURATION",
    help="Only petitions that ended more than DURATION ago (90s, 15m, 12h, 7d).",
)
@global_options
@click.pass_context
def clean(ctx: click.Context, older_than: str | None) -> int:
    """Forget ended petitions: drop their records and output logs."""
    seconds = None
    if older_than is not None:
        try:
            seconds = parse_duration(older_than)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'--older-than'") from e
    answer = _request(ctx, {"op": "clean", "older_than": seconds})
    click.echo(f"orcha: removed {answer['removed']} ended petition(s)", err=True)
    return 0
