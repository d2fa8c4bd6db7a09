"""Petition kinds: the extension point through which plugins give ``orcha serve`` work to do.

A kind validates the plain-data parameters a client sends and runs the petition in the
service. Clients import this module to declare commands, so it imports nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from orcha.service.context import Context

__all__ = ["Kind"]


class Kind:
    """Base class of petition kinds.

    Contract:

    * ``name`` is unique among installed kinds (the client sends it; the service looks it
      up in its own registry and refuses unknown names);
    * :meth:`validate` runs in the service before the petition is queued: it returns the
      normalised parameters or raises :class:`orcha.errors.InvalidPetitionError` with a
      message that names the bad parameter and the legal values;
    * :meth:`run` runs in a service thread once the petition is admitted. It writes output
      with ``ctx.write``/``ctx.write_err``, starts processes only through ``ctx.spawn`` (so
      cancellation finds them), returns promptly once ``ctx.cancelled`` is set, and returns
      the petition's exit code (0 = success). An exception fails the petition, never the
      service.
    """

    name: ClassVar[str]
    help: ClassVar[str] = ""

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        return dict(params)

    def run(self, ctx: Context) -> int:
        raise NotImplementedError
