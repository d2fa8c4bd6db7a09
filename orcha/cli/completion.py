"""``orcha completion bash|zsh|fish``: the shell completion script (click's mechanism).

Install, e.g. for bash:
``orcha completion bash > ~/.local/share/bash-completion/completions/orcha``.
Commands that take petition IDs (``status``, ``cancel``, ``follow``, ``logs``, ``wait``,
``watch``, ``pause``, ``resume``) complete them from the service when it answers within a
second, and quietly offer nothing when it does not.
"""

from __future__ import annotations

from typing import Any

import click

from orcha.cli.options import global_options

#: The environment variable click's completion uses for ``orcha``.
COMPLETE_VAR = "_ORCHA_COMPLETE"


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@global_options
@click.pass_context
def completion(ctx: click.Context, shell: str) -> int:
    """Print the completion script for SHELL (source it, or save it where SHELL looks)."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # the choice above only allows shells click knows
    root = ctx.find_root().command
    click.echo(cls(root, {}, "orcha", COMPLETE_VAR).source())
    return 0


def petition_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Petition IDs starting with ``incomplete``, newest last, from the service."""
    from click.shell_completion import CompletionItem

    try:
        from orcha import settings
        from orcha.client.api import Client

        with Client(settings=settings.resolve(), timeout=1.0) as service:
            rows = service.status()
    except Exception:
        return []  # no service, wrong key, too slow: complete nothing rather than fail
    newest = {r["id"]: r for r in rows}  # a name used again: once, with its newest state
    return [
        CompletionItem(i, help=r["state"]) for i, r in newest.items() if i.startswith(incomplete)
    ]
