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
    * ``schema`` (optional) describes the parameters in the JSON Schema subset of
      :mod:`orcha.schema`: ``orcha describe KIND`` prints it, ``orcha ls --json`` lists
      it, and parameters are checked against it (with defaults filled in) by the client
      for a fast error and by the service, because clients can lie;
    * :meth:`validate` runs before the petition is queued, after the schema check (in
      the client of a plugin command for a fast error, and in the service): it returns
      the normalised parameters or raises :class:`orcha.errors.InvalidPetitionError`
      with a message that names the bad parameter and the legal values;
    * :meth:`run` runs in a service thread once the petition is admitted. It writes output
      with ``ctx.write``/``ctx.write_err``, starts processes only through ``ctx.spawn`` (so
      cancellation finds them), returns promptly once ``ctx.cancelled`` is set, and returns
      the petition's exit code (0 = success). An exception fails the petition, never the
      service. It may record a JSON ``outcome`` with ``ctx.set_outcome(value)``: the
      client prints it and ``orcha status`` shows it;
    * :meth:`close` (optional) is what Ctrl+C and ``orcha cancel`` call first: it should
      bring the work to an orderly end (save, release, tell a remote system) and may
      return an outcome. The service then gives ``run`` the grace period to return
      before it stops the process tree (SIGTERM, grace, SIGKILL).
    """

    name: ClassVar[str]
    help: ClassVar[str] = ""
    schema: ClassVar[dict[str, Any] | None] = None

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        """The schema check then :meth:`validate`: what clients and the service call.
        InvalidPetitionError naming the bad parameter otherwise."""
        from orcha.errors import InvalidPetitionError

        if self.schema is not None:
            from orcha.schema import SchemaError, validate

            try:
                params = validate(self.schema, params, "params")
            except SchemaError as e:
                raise InvalidPetitionError(
                    f"invalid parameters for kind {self.name!r}: {e}; "
                    f"see 'orcha describe {self.name}'"
                ) from None
        return self.validate(params)

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        return dict(params)

    def run(self, ctx: Context) -> int:
        raise NotImplementedError

    def close(self, ctx: Context) -> Any:
        """Bring a running petition to an orderly end; return its outcome (JSON) or None.
        Not defined by default: cancelling then goes straight to the process tree."""
        raise NotImplementedError

    @property
    def closable(self) -> bool:
        """Whether this kind defines :meth:`close`."""
        return type(self).close is not Kind.close
