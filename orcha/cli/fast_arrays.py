"""The fast path of ``orcha run --detach --array SPEC [ID] -- CMD``: the array submitted
without click, as :func:`orcha.cli.arrays.run_array` submits it (same request, same
lines printed), so that queueing 1,000 petitions costs one Python start-up, not click's
too. Anything else about arrays (attached, ``--each``, ``--json``, a wrong SPEC) is left
to click, which reports a mistake with its usual message and exit code 2.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import Any

    from orcha.cli.fast import Request
    from orcha.settings import Settings


def members(spec: str, at_once: int | None, name: str | None) -> tuple[list[Any], int | None]:
    """The members and the limit of ``--array SPEC`` (with ``--at-once N``) of an array
    named ``name`` (None: the service names it); ValueError where click would refuse
    them (the fast path then leaves the command line to click)."""
    from orcha.protocol.arrays import check_member_ids, parse_spec

    indices, limit = parse_spec(spec)
    if limit is not None and at_once is not None and limit != at_once:
        raise ValueError(f"--array {spec} and --at-once {at_once} disagree")
    if name:
        check_member_ids(name, max(indices))
    return [(i, None) for i in indices], limit if limit is not None else at_once


def submit_detached(
    settings: Settings, request: Request, members: list[Any], limit: int | None
) -> int:
    """Queue the array (one ``submit_array`` request, all or none), say so on stderr as
    ``orcha run --array --detach`` does, print its name; 0. Raises OrchaError subclasses
    (no service, refused...), as :func:`orcha.client.attach.run_in_foreground`."""
    import os
    import sys

    from orcha.client.requests import host_name, user_name, working_directory
    from orcha.client.session import Session
    from orcha.protocol.arrays import ArrayRequest
    from orcha.protocol.messages import SubmitRequest

    environment = dict(os.environ)
    environment.update(request.env)
    template = SubmitRequest(
        request.kind, request.petition_id or "", request.params, request.priority,
        working_directory(request.cwd), environment, attach=False, user=user_name(),
        host=host_name(), schedule=request.schedule,
    )  # fmt: skip
    session = Session.open(settings)
    try:
        reply = session.call("submit_array", ArrayRequest(template, members, limit).to_wire())
    finally:
        session.close()
    name, ids = reply["name"], list(reply["ids"])
    at_once = f", at most {limit} at once" if limit else ""
    span = f"{ids[0]} to {ids[-1]}" if len(ids) > 1 else ids[0]
    sys.stderr.write(f"orcha: array {name}: {len(ids)} petition(s) queued ({span}){at_once}\n")
    sys.stdout.write(f"{name}\n")
    return 0
