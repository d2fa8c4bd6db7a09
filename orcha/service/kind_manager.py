"""The manager of ``orcha serve``: serves every petition kind the installed plugins provide."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orcha.errors import InvalidPetitionError, UnknownKindError
from orcha.interfaces import ActionCallbackT, Message, Petition
from orcha.kinds import Kind
from orcha.lib import Manager
from orcha.protocol.messages import SubmitRequest
from orcha.service.context import Context
from orcha.service.procs import ProcessControl


@dataclass(order=True)
class KindPetition(Petition):
    """A petition of a plugin kind: plain-data parameters plus the client's cwd and env."""

    kind: str = field(compare=False, default="")
    params: dict[str, Any] = field(compare=False, default_factory=dict, repr=False)
    cwd: str = field(compare=False, default="/", repr=False)
    env: dict[str, str] = field(compare=False, default_factory=dict, repr=False)


class KindManager(Manager):
    """Builds petitions for the kinds in ``kinds`` and runs them through ``Kind.run``."""

    def __init__(
        self,
        kinds: dict[str, Kind],
        procs: ProcessControl | None = None,
        predicates: list[Callable[[Any], bool]] | None = None,
    ) -> None:
        """``predicates``: what plugins add to the scheduler's resource checks (all must
        hold for a petition to start)."""
        super().__init__()
        self._kinds = dict(kinds)
        self.procs = procs or ProcessControl()
        self.predicates = list(predicates or [])
        # One action and one condition shared by every petition (not one each).
        self._actions = {name: self._action(kind) for name, kind in self._kinds.items()}
        self._condition = self._all_predicates

    def kinds(self) -> dict[str, Kind]:
        return dict(self._kinds)

    def _all_predicates(self, petition: Petition) -> bool:
        """The condition of every petition of a kind: the plugins' predicates. (CPU slots,
        memory and GPUs are the scheduler's own checks.)"""
        return all(predicate(petition) for predicate in self.predicates)

    def petition_from_request(self, request: SubmitRequest, queue: Any) -> Petition:
        kind = self._kinds.get(request.kind)
        if kind is None:
            raise UnknownKindError(request.kind, list(self._kinds))
        try:
            params = kind.check(dict(request.params))
        except InvalidPetitionError:
            raise
        except Exception as e:  # a kind's validator must not take the request path down
            raise InvalidPetitionError(f"invalid parameters for kind {kind.name!r}: {e}") from e
        petition = KindPetition(
            id=request.id,
            queue=queue,
            action=self._actions[kind.name],
            condition=self._condition,
            kind=kind.name,
            params=params,
            cwd=request.cwd,
            env=request.env,
        )
        if request.priority is not None:
            petition.priority = request.priority
        return petition

    def convert_to_petition(self, m: Message) -> Petition | None:
        """Messages of the original API may name a kind in ``extras["kind"]``."""
        extras = m.extras or {}
        if "kind" not in extras or "queue" not in extras:
            return None
        request = SubmitRequest.from_wire(
            {
                "kind": extras["kind"],
                "id": m.id,
                "params": extras.get("params", {}),
                "priority": extras.get("priority"),
                "cwd": extras.get("cwd", "/"),
                "env": extras.get("env", {}),
            }
        )
        return self.petition_from_request(request, extras["queue"])

    def _action(self, kind: Kind) -> Any:
        procs = self.procs

        def action(cb: ActionCallbackT, petition: Any) -> None:
            job = petition._orcha_job
            ctx = Context(job, cb, procs)
            if kind.closable:
                job.closer = lambda: kind.close(ctx)
            code = kind.run(ctx)
            petition.finish(int(code) if code is not None else 0)

        return action
