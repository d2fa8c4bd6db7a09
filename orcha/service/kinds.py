"""The kinds one service serves, in one registry: plugin kinds and runtime kinds.

* Plugin kinds come from the loaded plugins (:mod:`orcha.plugins.discovery`); orcha's
  built-in ``shell`` and ``hello`` are plugin kinds too, registered through the same
  entry points as any third-party plugin.
* Runtime kinds (:class:`RuntimeKinds`) are reusable petition templates users define
  while the service runs. ``orcha kinds add build --from shell --set argv='["make",
  "-j8"]' --set cpus=8`` makes a kind ``build``: a ``shell`` petition with that command
  and 8 CPUs. It is kept in the service's database (so it survives restarts), usable at
  once (``orcha send ID --kind build``), and removed with ``orcha kinds rm build``. A
  template's settings are defaults: what a submission gives itself wins. If the plugin
  of its parent kind is not loaded (disabled, uninstalled), the template is hidden:
  listed as unavailable, refused on use.

:class:`KindRegistry` looks every one of them up by name, and refuses an unknown name
with the list of those that exist. :class:`KindManager` is the service's
:class:`orcha.lib.Manager` over a registry: it builds each petition of a kind and runs
it through :meth:`Kind.run <orcha.plugins.contract.Kind.run>`, and it asks the plugins'
predicates whether a petition may start.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orcha.errors import ExitCode, InvalidPetitionError, PetitionError, UnknownKindError
from orcha.model import ActionCallbackT, Message, Petition
from orcha.plugins.contract import Context, Kind, LegacyPredicate, Predicate
from orcha.plugins.predicates import as_predicate
from orcha.protocol.messages import SubmitRequest
from orcha.protocol.schedule import Schedule, check_group
from orcha.service.context import ServiceContext
from orcha.service.manager import Manager

if TYPE_CHECKING:
    import subprocess

    from orcha.service.store import Store

__all__ = ["KindManager", "KindPetition", "KindRegistry", "RuntimeKinds", "templates_of"]

#: The key under which a service keeps its templates (service_state table).
STATE_KEY = "kinds"

_SCHEDULE_KEYS = frozenset(Schedule.FIELDS)


class RuntimeKinds:
    """The templates of one service."""

    def __init__(
        self,
        kinds: Callable[[], dict[str, Kind]],
        store: Store | None = None,
        service: str = "",
    ) -> None:
        """``kinds()``: the kinds loaded plugins provide (parents must be among them)."""
        self._kinds = kinds
        self._store = store
        #: The key the templates are kept under in the database (the service's address).
        self.service = service
        self._lock = threading.Lock()
        self._defs: dict[str, dict[str, Any]] = {}

    def load(self, store: Store) -> None:
        self._store = store
        saved = store.get_value(self.service, STATE_KEY, {})
        with self._lock:
            self._defs = dict(saved) if isinstance(saved, dict) else {}

    def parent_of(self, name: str) -> str | None:
        """The parent kind of template ``name``; None if there is no such template."""
        with self._lock:
            definition = self._defs.get(name)
        return definition["from"] if definition is not None else None

    def _save(self) -> None:
        if self._store is not None:
            self._store.set_value(self.service, STATE_KEY, self._defs)

    def listing(self) -> list[dict[str, Any]]:
        """Every template: name, parent, params, schedule, and whether it is usable."""
        kinds = self._kinds()
        with self._lock:
            return [
                {"name": name, **d, "available": d["from"] in kinds}
                for name, d in sorted(self._defs.items())
            ]

    def add(self, name: str, parent: str, settings: dict[str, Any]) -> dict[str, Any]:
        """Define (or redefine) template ``name``. PetitionError if the name is taken by
        a plugin's kind, the parent is unknown, or the settings are invalid for it."""
        try:
            check_group(name)  # same rules: safe on command lines and in logs
        except ValueError as e:
            raise PetitionError(
                str(e).replace("group name", "kind name"), ExitCode.REFUSED
            ) from None
        kinds = self._kinds()
        if name in kinds:
            raise PetitionError(
                f"kind {name!r} is provided by a plugin; choose another name", ExitCode.REFUSED
            )
        kind = kinds.get(parent)
        if kind is None:
            with self._lock:
                parent_def = self._defs.get(parent)
            if parent_def is not None:
                raise PetitionError(
                    f"{parent!r} is itself a runtime kind; use its parent "
                    f"{parent_def['from']!r} with --from",
                    ExitCode.REFUSED,
                )
            raise PetitionError(
                f"no loaded plugin provides kind {parent!r} (loaded kinds: "
                f"{', '.join(sorted(kinds)) or 'none'})",
                ExitCode.UNKNOWN,
            )
        schedule = {k: v for k, v in settings.items() if k in _SCHEDULE_KEYS}
        params = {k: v for k, v in settings.items() if k not in _SCHEDULE_KEYS}
        try:
            schedule = Schedule.from_wire(schedule).to_wire()
            params = _template_params(kind, params)
        except ValueError as e:
            raise PetitionError(
                f"invalid settings for kind {name!r}: {e}", ExitCode.REFUSED
            ) from None
        definition = {"from": parent, "params": params, "schedule": schedule}
        with self._lock:
            self._defs[name] = definition
            self._save()
        return {"name": name, **definition, "available": True}

    def remove(self, name: str) -> bool:
        with self._lock:
            if self._defs.pop(name, None) is None:
                return False
            self._save()
            return True

    def resolve(self, request: SubmitRequest) -> SubmitRequest:
        """``request`` itself if its kind is not a template; else a request of the
        parent kind with the template's params and schedule under the request's own.
        PetitionError if the template's parent is not loaded."""
        with self._lock:
            definition = self._defs.get(request.kind)
        if definition is None or request.kind in self._kinds():
            return request
        parent = definition["from"]
        if parent not in self._kinds():
            raise PetitionError(
                f"kind {request.kind!r} is a template of {parent!r}, which no loaded plugin "
                "provides now; enable its plugin or remove the template with "
                f"'orcha kinds rm {request.kind}'",
                ExitCode.UNKNOWN,
            )
        own = request.schedule.to_wire(given=True) if request.schedule is not None else {}
        try:
            schedule = Schedule.from_wire({**definition["schedule"], **own})
        except ValueError as e:
            raise PetitionError(f"invalid petition: {e}", ExitCode.REFUSED) from None
        return SubmitRequest(
            parent, request.id, {**definition["params"], **request.params}, request.priority,
            request.cwd, request.env, request.attach, request.user, request.host, schedule,
            request.stdin,
        )  # fmt: skip


def _template_params(kind: Kind, params: dict[str, Any]) -> dict[str, Any]:
    """A template's parameters, checked as ``kind`` checks a petition's. A template may
    leave out parameters the kind requires (``orcha kinds add gpu --from shell --set
    gpus=1``: each ``orcha run --kind gpu -- CMD`` gives its command): then those it
    gives are checked against the schema, and the whole at each submission."""
    schema = kind.schema or {}
    if all(key in params for key in schema.get("required", ())):
        return kind.check(params)
    return kind.check_schema(params, required=False)


class KindRegistry:
    """Every petition kind of one service, by name: the plugins' kinds and the runtime
    kinds (templates, :attr:`templates`) over them."""

    def __init__(self, kinds: Mapping[str, Kind] | Iterable[Kind] = (), service: str = "") -> None:
        """``kinds``: the loaded plugins' kinds (by name, or a list); ``service``: the key
        the templates are kept under in the service's database."""
        if isinstance(kinds, Mapping):
            self._kinds = dict(kinds)
        else:
            self._kinds = {kind.name: kind for kind in kinds}
        self.templates = RuntimeKinds(self.kinds, service=service)

    def kinds(self) -> dict[str, Kind]:
        """The plugins' kinds by name (a copy)."""
        return dict(self._kinds)

    def plugin_kind(self, name: str) -> Kind | None:
        """The plugin kind ``name``, or None (templates are not looked at)."""
        return self._kinds.get(name)

    def names(self) -> list[str]:
        """Every name a client may send: plugin kinds and usable templates, sorted."""
        usable = (t["name"] for t in self.templates.listing() if t["available"])
        return sorted({*self._kinds, *usable})

    def get(self, name: str) -> Kind:
        """The plugin kind ``name``; for a template, the kind that runs it (its parent).
        UnknownKindError listing every kind there is otherwise."""
        kind = self._kinds.get(name)
        if kind is None:
            parent = self.templates.parent_of(name)
            kind = self._kinds.get(parent) if parent is not None else None
        if kind is None:
            raise UnknownKindError(name, self.names())
        return kind

    def resolve(self, request: SubmitRequest) -> tuple[SubmitRequest, Kind]:
        """The request to run (a template's turned into one of its parent kind, the
        template's settings under the request's own) and the kind that runs it.
        UnknownKindError or PetitionError if there is none."""
        resolved = self.templates.resolve(request)
        kind = self._kinds.get(resolved.kind)
        if kind is None:
            raise UnknownKindError(request.kind, self.names())
        return resolved, kind


def templates_of(manager: Manager, service: str) -> RuntimeKinds:
    """The runtime kinds of the service serving ``manager``: its registry's when it has
    one (a :class:`KindManager`), else templates over whatever kinds it serves."""
    registry = getattr(manager, "registry", None)
    if isinstance(registry, KindRegistry):
        registry.templates.service = service
        return registry.templates
    return RuntimeKinds(manager.kinds, service=service)


def _run_by_its_kind(register: ActionCallbackT, petition: Any) -> None:
    raise RuntimeError(f"petition {petition.id} is run by its kind, not by an action")


def _always(petition: Any) -> bool:
    """The condition of a petition of a kind: what it waits for is the scheduler's
    predicates' business (resources, holds, the plugins' predicates)."""
    return True


@dataclass(order=True)
class KindPetition(Petition):
    """A petition of a plugin kind: plain-data parameters plus the client's cwd and env.
    Its kind runs it (:meth:`KindManager.run`), not an ``action``; the scheduler's
    predicates say when, not a ``condition`` (except for one the original API sent)."""

    action: Callable[[ActionCallbackT, Any], None] = field(
        default=_run_by_its_kind, compare=False, repr=False
    )
    condition: Callable[[Any], bool] = field(default=_always, compare=False, repr=False)
    kind: str = field(compare=False, default="")
    params: dict[str, Any] = field(compare=False, default_factory=dict, repr=False)
    cwd: str = field(compare=False, default="/", repr=False)
    env: dict[str, str] = field(compare=False, default_factory=dict, repr=False)


class KindManager(Manager):
    """Builds petitions of the kinds in its registry and runs them through ``Kind.run``."""

    def __init__(
        self,
        kinds: Mapping[str, Kind] | KindRegistry,
        predicates: Iterable[Predicate | LegacyPredicate] | None = None,
    ) -> None:
        """``kinds``: a registry, or the plugins' kinds by name; ``predicates``: what
        plugins add to the scheduler's resource checks (all must hold for a petition to
        start), in either shape (:func:`orcha.plugins.predicates.as_predicate`). The
        scheduler asks them itself (each petition of a kind waits with the reason of the
        first that says no); a petition sent through the original API's ``send`` has them
        as its ``condition``, as such petitions always did. A running petition's context
        spawns on the machine the petition was admitted onto."""
        super().__init__()
        self.registry = kinds if isinstance(kinds, KindRegistry) else KindRegistry(kinds)
        self.predicates: list[Predicate] = [as_predicate(p) for p in predicates or ()]

    def kinds(self) -> dict[str, Kind]:
        return self.registry.kinds()

    def why_not(self, petition: Petition, machine: Any = None) -> str | None:
        """None if every plugin predicate lets ``petition`` start on ``machine``, else
        the first one's reason. A predicate's exception propagates (the scheduler logs
        it once and counts it as "not now")."""
        for predicate in self.predicates:
            reason = predicate(petition, machine)
            if reason is not None:
                return reason
        return None

    def _all_predicates(self, petition: Petition) -> bool:
        """The condition of every petition of a kind: the plugins' predicates. (CPU slots,
        memory and GPUs are the scheduler's own checks.)"""
        return self.why_not(petition) is None

    def petition_from_request(
        self,
        request: SubmitRequest,
        queue: Any,
        condition: Any = None,
        *,
        checked: dict[str, Any] | None = None,
    ) -> Petition:
        """The petition of ``request``'s kind (a plugin kind: templates are resolved
        before). UnknownKindError or InvalidPetitionError if there is none. ``checked``:
        what its kind's check returned for these very parameters before (a restart
        checks identical parameters once): used instead of checking them again."""
        kind = self.registry.plugin_kind(request.kind)
        if kind is None:
            raise UnknownKindError(request.kind, self.registry.names())
        try:
            params = dict(checked) if checked is not None else kind.check(dict(request.params))
        except InvalidPetitionError:
            raise
        except Exception as e:  # a kind's validator must not take the request path down
            raise InvalidPetitionError(f"invalid parameters for kind {kind.name!r}: {e}") from e
        petition = KindPetition(
            id=request.id or "",  # "": the service numbers it
            queue=queue,
            condition=condition or _always,
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
        if "kind" not in extras and "queue" in extras:
            # A message of a plugin that brings its own service (the tutorial's
            # 'orcha hello-world send'): this service cannot run it; say which can.
            raise InvalidPetitionError(
                f"this service ('orcha serve') runs petitions of kinds "
                f"{', '.join(self.registry.names()) or 'none'}; message {m.id!r} names no "
                "kind: it comes from a plugin's client that needs that plugin's own service "
                "(e.g. 'orcha hello-world serve'; 'orcha ls' says which plugins have one). "
                "Start it at another address to keep this one ('orcha --address PATH ...')"
            )
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
        return self.petition_from_request(request, extras["queue"], self._all_predicates)

    def run(self, petition: Petition, register: ActionCallbackT) -> None:
        """Run one attempt: a petition of a kind through ``Kind.run`` with its context
        (processes spawned on the machine it was admitted onto); any other petition
        (the original API's) through its ``action``."""
        if not isinstance(petition, KindPetition):
            super().run(petition, register)
            return
        kind, ctx = self._context(petition, register)
        if not (kind.startable and isinstance(ctx, ServiceContext)):
            self.end(petition, kind.run(ctx))
            return
        # Kind.run's own way (start, then pump), where the attempt is that one process.
        started = kind.start(ctx)
        if started is None or isinstance(started, int):
            self.end(petition, started, "start")
            return
        self.end(petition, ctx.pump_attempt(started))

    def startable(self, petition: Petition) -> bool:
        """Whether an attempt of ``petition`` can be run by :meth:`start` (its kind
        defines ``Kind.start``)."""
        if not isinstance(petition, KindPetition):
            return False
        kind = self.registry.plugin_kind(petition.kind)
        return kind is not None and kind.startable

    def start(
        self, petition: Petition, register: ActionCallbackT
    ) -> subprocess.Popen[bytes] | None:
        """Start one attempt of a :meth:`startable` petition without waiting for it: the
        process to pump, whose exit code goes to :meth:`end`; None if it did not start
        (its code is set). Raises what the kind raised."""
        assert isinstance(petition, KindPetition)
        kind, ctx = self._context(petition, register)
        started = kind.start(ctx)
        if started is None or isinstance(started, int):
            # An exit code (it could not start); None fails it, saying what it must return.
            self.end(petition, started, "start")
            return None
        return started

    def end(self, petition: Petition, code: int | None, by: str = "run") -> None:
        """The attempt's action (``by``: ``run``, or ``start`` that started nothing)
        returned ``code``: an int. Anything else fails the petition, its message saying
        what was returned and what must be: None too (a ``run`` that forgot its
        ``return`` on some path must not pass for a success), unless it was cancelled
        (then no code is known)."""
        job = petition.record
        if code is None and job.cancel_requested:
            job.finish_called(None)
            return
        try:
            code = operator.index(code)  # type: ignore[arg-type]  # an int, or its equal
        except TypeError:
            shown = repr(code) if len(repr(code)) <= 40 else repr(code)[:37] + "..."
            must = (
                "the exit code, an int in 0-255 (0: success)" if by == "run" else
                "the process it started (ctx.spawn) or an exit code, an int in 0-255"
            )  # fmt: skip
            job.message = job.message or (
                f"kind {getattr(petition, 'kind', '')!r}: {by} returned {shown} "
                f"({type(code).__name__}); it must return {must}"
            )
            code = int(ExitCode.FAILED)
        # finish_called fails a code outside 0-255 (see the contract of Kind.run), so a
        # negative or huge one reaches neither the client nor the database as it is.
        job.finish_called(code)

    def _context(self, petition: KindPetition, register: ActionCallbackT) -> tuple[Kind, Context]:
        kind = self.registry.plugin_kind(petition.kind)
        if kind is None:  # its plugin was there when it was queued: not again
            raise UnknownKindError(petition.kind, self.registry.names())
        job = petition.record
        ctx: Context = ServiceContext(job, register, job.placed)
        if kind.closable:
            job.closer = lambda: kind.close(ctx)
        return kind, ctx
