"""What a plugin's click command calls to run a petition in the foreground."""

from __future__ import annotations

from typing import Any

import click


def attach(
    kind: str,
    petition_id: str,
    params: dict[str, Any],
    priority: int | None,
    detach: bool = False,
) -> int:
    """Submit a petition of ``kind`` with the client's cwd and environment, stream its
    output and return the exit code the client should end with.

    Raises OrchaError subclasses (no service, wrong key, refused, lost service), and
    click.BadParameter for an invalid ID (nothing is sent).
    """
    from orcha.cli.options import settings_from
    from orcha.client.attach import run_in_foreground
    from orcha.protocol.messages import check_id

    try:
        petition_id = check_id(petition_id)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'ID'") from e
    settings = settings_from(click.get_current_context())
    return run_in_foreground(settings, kind, petition_id, params, priority, detach)
