"""Runtime kinds: reusable petition templates users define while the service runs.

``orcha kinds add build --from shell --set argv='["make", "-j8"]' --set cpus=8`` makes a
kind ``build``: a ``shell`` petition with that command and 8 CPUs. It is kept in the
service's database (so it survives restarts), usable at once (``orcha send ID --kind
build``), and removed with ``orcha kinds rm build``. A template's settings are defaults:
what a submission gives itself wins. If the plugin of its parent kind is not loaded
(disabled, uninstalled), the template is hidden: listed as unavailable, refused on use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orcha.errors import ExitCode, PetitionError
from orcha.protocol.schedule import Schedule, check_group

if TYPE_CHECKING:
    from orcha.kinds import Kind
    from orcha.protocol.messages import SubmitRequest
    from orcha.service.store import Store

#: The key under which a service keeps its templates (service_state table).
STATE_KEY = "kinds"

_SCHEDULE_KEYS = frozenset(Schedule.__slots__)


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
        self._service = service
        self._lock = threading.Lock()
        self._defs: dict[str, dict[str, Any]] = {}

    def load(self, store: Store) -> None:
        self._store = store
        saved = store.get_value(self._service, STATE_KEY, {})
        with self._lock:
            self._defs = dict(saved) if isinstance(saved, dict) else {}

    def _save(self) -> None:
        if self._store is not None:
            self._store.set_value(self._service, STATE_KEY, self._defs)

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
            params = kind.check(params)
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
        from orcha.protocol.messages import SubmitRequest

        own = request.schedule.to_wire() if request.schedule is not None else {}
        try:
            schedule = Schedule.from_wire({**definition["schedule"], **own})
        except ValueError as e:
            raise PetitionError(f"invalid petition: {e}", ExitCode.REFUSED) from None
        return SubmitRequest(
            parent, request.id, {**definition["params"], **request.params}, request.priority,
            request.cwd, request.env, request.attach, request.user, request.host, schedule,
        )  # fmt: skip
