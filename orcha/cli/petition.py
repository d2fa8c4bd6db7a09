"""What a plugin's command calls to run a petition in the foreground: :func:`attach`.

It reads the invocation's click context (global and petition options); streaming the
petition is the client's part (:func:`orcha.client.attach.run_in_foreground`).
"""

from __future__ import annotations

from typing import Any

import click

from orcha.cli.build import Refused


def attach(
    kind: str,
    petition_id: str | None,
    params: dict[str, Any],
    priority: int | None,
    detach: bool = False,
    stdin: bool = False,
) -> int:
    """Submit a petition of ``kind`` with the client's cwd and environment, stream its
    output and return the exit code the client should end with.

    What the command's :func:`~orcha.cli.petition_options.petition_options` were given
    (resources, group, dependencies, timeout, retries, environment, directory) goes with it.

    With ``stdin``, the client's stdin goes to the petition's first process when it is
    piped or redirected (not a terminal) and ``detach`` is not given.

    Call it from a plugin's click command, or from an argparse plugin's ``handle()``
    (orcha runs that inside a click command too, so the global options apply; the
    petition options do not, as the argparse parser has none).

    Without ``petition_id`` (None), the service names the petition by its record
    number. Raises OrchaError subclasses (no service, wrong key, refused, lost service),
    and click.BadParameter for an invalid ID (nothing is sent).
    """
    from orcha.cli.grammar import check_start
    from orcha.cli.options import settings_from
    from orcha.cli.petition_options import chosen
    from orcha.cli.verbose import report
    from orcha.client.attach import run_in_foreground
    from orcha.protocol.ids import check_id, check_name
    from orcha.protocol.schedule import Schedule

    try:
        petition_id = None if petition_id is None else check_name(check_id(petition_id))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'ID'") from e
    ctx = click.get_current_context()
    params = _checked(ctx, kind, params)
    options = chosen(ctx)
    try:
        schedule = Schedule.from_wire(check_start(options.schedule))
    except ValueError as e:
        raise Refused(str(e)) from e
    as_json = bool(ctx.params.get("as_json"))
    if as_json and not detach:
        raise Refused("--json goes with --detach (attached, stdout is the petition's own output)")
    settings = settings_from(ctx)
    report(settings)
    return run_in_foreground(
        settings, kind, petition_id, params, priority, detach,
        schedule=schedule, env=options.env, cwd=options.cwd, as_json=as_json, stdin=stdin,
    )  # fmt: skip


def _checked(ctx: click.Context, kind_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters checked against the kind's schema here, for a fast error (the
    service checks again); unchanged if this client does not have the kind."""
    from orcha.errors import InvalidPetitionError

    plugins = getattr(ctx.find_root().command, "plugins", None)
    for entry in plugins() if callable(plugins) else ():
        kind = entry.kinds.get(kind_name)
        if kind is not None:
            try:
                return dict(kind.check(dict(params)))
            except InvalidPetitionError as e:
                raise Refused(e.message) from None
    return params
