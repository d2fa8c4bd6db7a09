"""``orcha workers``: the hosts petitions run on (the workers of a Dask cluster)."""

from __future__ import annotations

import time
from typing import Any

import click

from orcha.cli.connect import client
from orcha.cli.options import global_options
from orcha.cli.output import json_option, print_json


@click.command("workers")
@json_option
@global_options
@click.pass_context
def workers(ctx: click.Context, as_json: bool) -> int:
    """List the Dask workers petitions run on ('orcha serve --dask').

    For each: its name, host, address, CPUs in use/total, memory available/total, GPUs
    in use/total, running petitions, state (ok; closing: Dask is closing or has paused
    it; lost; unreachable: the scheduler is; version mismatch) and when it last
    reported.

    A service without Dask runs petitions on its own host only, and says so.
    """
    service = client(ctx)
    with service:
        answer: dict[str, Any] = service.workers()
    if as_json:
        print_json(answer)
        return 0
    if answer["executor"] != "dask":
        click.echo("this service runs petitions on its own host only (no Dask cluster)")
        return 0
    rows = answer["workers"]
    click.echo(
        f"Dask scheduler {answer.get('scheduler')}; {sum(r['state'] == 'ok' for r in rows)} "
        f"worker(s) connected; dashboard {answer.get('dashboard') or '-'}"
    )
    if answer.get("trouble"):
        click.echo(answer["trouble"])
    if not rows:
        click.echo("no worker connected (start one: dask worker SCHEDULER)")
        return 0
    from orcha.cli.tables import render

    now = time.time()
    header = ["NAME", "HOST", "ADDRESS", "CPUS", "MEMORY", "GPUS", "RUNNING", "STATE", "SEEN"]
    body = [
        [
            r["name"], r["host"], r["address"], f"{r['cpus_used']}/{r['cpus']}",
            f"{_gib(r['mem_available'])}/{_gib(r['mem_total'])}",
            (f"{len(r['gpus']) - len(r['gpus_free'])}/{len(r['gpus'])}" if r["gpus"] else "-"),
            ",".join(r["running"]) or "-", r["state"],
            f"{max(0.0, now - r['last_seen']):.0f}s ago",
        ]
        for r in rows
    ]  # fmt: skip
    for line in render(header, body):
        click.echo(line)
    return 0


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f}G"
