"""``orcha.Client``: the public Python client of an orcha service.

Everything the ``orcha`` commands do to a service, a Python program can do with a
:class:`Client`: submit petitions and stream their output, list, cancel and wait for
petitions, watch events, and manage groups, pauses, runtime kinds and plugins' state.
The commands themselves are built on it. What travels on the socket is the business of
:mod:`orcha.client.operations` alone.
"""

from __future__ import annotations

import os

from orcha.client import operations
from orcha.client.handles import Following, PetitionHandle, exit_code
from orcha.client.requests import (
    changes_of,
    environment_of,
    host_name,
    one_id,
    params_of,
    schedule_of,
    user_name,
    working_directory,
)
from orcha.client.requests import ids_of as _ids
from orcha.client.session import Connections, Session
from orcha.defaults import STATUS_PAGE, STATUS_TEXT_PAGE
from orcha.errors import InvalidPetitionError, NoPetitionError, PetitionError
from orcha.protocol.ids import check_name
from orcha.protocol.messages import SubmitRequest, check_id

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from collections.abc import Generator, Iterable, Iterator, Sequence
    from types import TracebackType
    from typing import Any

    from orcha.protocol.arrays import ArrayRequest
    from orcha.settings import Settings

__all__ = ["Client", "Following", "PetitionHandle", "exit_code"]


class Client:
    """A client of the orcha service at ``address`` (a socket path or ``HOST:PORT``)
    with ``key``; both are resolved as the ``orcha`` commands resolve them: the value
    given, else ``ORCHA_ADDRESS``/``ORCHA_KEY``, else the configuration file and the
    defaults (the socket in the user's runtime directory, the key file in the state
    directory). ``settings`` (resolved :class:`orcha.settings.Settings`) replaces both.
    ``timeout``: seconds to wait at most for each answer of the service (LostServiceError
    past it); the default waits as long as it takes.

    It connects when first used; use it as a context manager, or call :meth:`close`:
    closing it cancels the attached petitions it submitted that have not ended. Threads
    may share a client: each call, stream and attached petition has a connection of its
    own while in use. A handle's output, a :meth:`follow` or a :meth:`watch` is read
    from one thread at a time (ConcurrentUseError otherwise); a handle's
    :meth:`~PetitionHandle.cancel` may come from any thread. Every method raises the
    errors of
    :mod:`orcha.errors`, each with its ``exit_code``:
    :class:`~orcha.errors.NoServiceError` (200), :class:`~orcha.errors.AuthError` (201),
    :class:`~orcha.errors.PetitionError` (refused: 202 duplicate ID, 203 unknown kind,
    204 invalid...), :class:`~orcha.errors.NoPetitionError` (209),
    :class:`~orcha.errors.LostServiceError` (206).
    """

    def __init__(
        self, address: str | None = None, key: str | None = None, *,
        settings: Settings | None = None, timeout: float | None = None,
    ) -> None:  # fmt: skip
        if settings is None:
            from orcha import settings as configuration

            settings = configuration.resolve(address=address, key=key)
        if timeout is not None and not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
        self.settings, self.timeout = settings, timeout
        self._connections = Connections(settings, timeout)

    # -- connections ----------------------------------------------------------------------
    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()

    def close(self) -> None:
        """Close every connection (attached petitions not yet ended are cancelled)."""
        self._connections.close()

    def _open(self) -> Session:
        """A new connection of its own (output streams and attached petitions)."""
        return self._connections.open()

    def _forget(self, session: Session) -> None:
        self._connections.forget(session)

    def _call(self, operation: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a request-reply operation on an idle connection (closed if it broke)."""
        session = self._connections.borrow()
        try:
            result = operation(session, *args, **kwargs)
        except (PetitionError, NoPetitionError):  # answered: the connection is sound
            self._connections.give_back(session)
            raise
        except BaseException:  # broken, or an answer left unread (Ctrl+C): not reused
            self._forget(session)
            raise
        self._connections.give_back(session)
        return result

    # -- petitions ------------------------------------------------------------------------
    def submit(
        self,
        id: str | None = None,
        argv: Sequence[str] | None = None,
        *,
        kind: str = "shell",
        params: dict[str, Any] | None = None,
        detach: bool = False,
        priority: int | None = None,
        cpus: int | None = None,
        mem: int | str | None = None,
        gpus: int | None = None,
        group: str | None = None,
        after: str | Iterable[str] | None = None,
        after_any: str | Iterable[str] | None = None,
        timeout: float | str | None = None,
        retries: int | None = None,
        retry_delay: float | str | None = None,
        notify: str | Iterable[str] | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        hold: bool = False,
        delay: float | str | None = None,
        begin: float | None = None,
    ) -> PetitionHandle:
        """Submit petition ``id``: the command ``argv`` (a ``shell`` petition, as
        ``orcha run ID -- ARGV`` does), or a petition of ``kind`` with ``params``.
        Without ``id`` (None) the service names it by its record number; the handle's
        :attr:`~PetitionHandle.id` is the ID it got either way. A name may not be all
        digits nor end in ``~`` and digits: those name records (see the docs' concepts).

        The other arguments are ``orcha run``'s options: ``priority`` (lower runs first),
        ``cpus``, ``mem`` (bytes, or ``"4G"``), ``gpus``, ``group``, ``after`` and
        ``after_any`` (IDs), ``timeout`` and ``retry_delay`` (seconds, or ``"90s"``),
        ``retries``, ``notify`` (webhook URLs); ``cwd`` (default: the current directory)
        and ``env`` (added to this process's environment, which the petition gets);
        ``hold`` (start only once released), ``delay`` (seconds, or ``"1h30m"``) and
        ``begin`` (seconds since the epoch): not before then.

        Without ``detach``, the petition is tied to this client as to ``orcha run``: its
        output streams here, and closing the client (or the handle) cancels it. Read it
        (:meth:`PetitionHandle.output` or :meth:`~PetitionHandle.wait`): as for a
        terminal, a petition whose output nobody reads is held up once the buffers are
        full. With ``detach``, it runs whether or not this client stays.

        Invalid options raise InvalidPetitionError before anything is sent.
        """
        if argv is not None:
            if params is not None or kind != "shell":
                raise TypeError("give either argv (a shell petition) or kind= and params=")
            if isinstance(argv, (str, bytes)):  # each character would be an argument
                raise TypeError(f"argv is one string: give a list, e.g. {argv.split()!r}")
            params = {"argv": [str(a) for a in argv]}
        elif params is None:
            raise TypeError("give argv (a shell petition) or kind= and params=")
        params = params_of(params)
        environment = environment_of(env)
        try:
            petition_id = None if id is None else check_name(check_id(id))
            schedule = schedule_of(
                cpus=cpus, mem=mem, gpus=gpus, group=group, after=after, after_any=after_any,
                timeout=timeout, retries=retries, retry_delay=retry_delay, notify=notify,
                hold=hold or None, delay=delay, begin=begin,
            )  # fmt: skip
        except ValueError as e:
            raise InvalidPetitionError(f"invalid petition: {e}") from None
        request = SubmitRequest(
            kind, petition_id, params, priority, os.path.abspath(working_directory(cwd)),
            environment, attach=not detach, user=user_name(), host=host_name(), schedule=schedule,
        )  # fmt: skip
        if detach:
            reply = self._call(operations.submit, request)
            return PetitionHandle(self, reply["id"], None)
        session = self._open()
        try:
            reply = operations.submit(session, request)
        except BaseException:
            self._forget(session)
            raise
        return PetitionHandle(self, reply["id"], session, reply["queue"])

    def status(
        self, ids: str | Iterable[str] | None = None, states: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        """The records of petitions (all, or these IDs; only in ``states`` if given), as
        ``orcha status --json`` prints them. NoPetitionError if an ID is unknown."""
        report = self.status_report(ids, states)
        if report["missing"]:
            raise operations.no_petition(report["missing"])
        records: list[dict[str, Any]] = report["petitions"]
        return records

    def status_report(
        self, ids: str | Iterable[str] | None = None, states: Iterable[str] = (),
        groups: Iterable[str] = (), last: int | None = None, ended: int | None = None,
        queued: int | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """``orcha status --json``'s document: ``{"petitions": [...], "missing": [...],
        "hidden": N}``. ``groups`` narrows to those groups, ``last`` keeps the N last
        submitted, ``ended`` every queued or running petition and the N last ended
        (``hidden``: how many ended ones that left out); ``queued``, of the queued
        ones, the N first submitted (``"hidden_queued"``: how many it left out)."""
        wanted = [s.upper() for s in states]
        result: dict[str, Any] = self._call(
            operations.status, _ids(ids), wanted, list(groups), last, ended, queued
        )
        return result

    def status_pages(
        self, states: Iterable[str] = (), groups: Iterable[str] = (), page: int | None = None,
        text: bool = False,
    ) -> Iterator[Any]:  # fmt: skip
        """Every petition's record (only in ``states`` and ``groups`` if given), oldest
        first, as ``orcha status --json`` prints them, ``page`` records at a time: a long
        listing is never held whole, by the service or here. With ``text``, each page as
        the JSON text the service encoded: its records' ``json.dumps`` joined by ``", "``."""
        session = self._connections.borrow()
        read = operations.status_texts if text else operations.status_pages
        try:
            yield from read(session, [s.upper() for s in states], list(groups),
                            page or (STATUS_TEXT_PAGE if text else STATUS_PAGE))  # fmt: skip
        except BaseException:
            self._forget(session)  # a listing not read to its end: answers may be due
            raise
        self._connections.give_back(session)

    def cancel(self, id: str, force: bool = False) -> None:
        """Cancel a queued or running petition (``force``: SIGKILL its processes at once,
        without the grace period). NoPetitionError if none has that ID."""
        reason = self.cancel_each([one_id(id, "cancel", "cancel_each")], force)[id]
        if reason != "cancelled":
            raise NoPetitionError(f"{reason}; nothing to cancel")

    def cancel_each(
        self, ids: Iterable[str], force: bool = False, *, groups: Iterable[str] = (),
        states: Iterable[str] = (), everything: bool = False, signal: int | None = None,
    ) -> dict[str, str]:  # fmt: skip
        """Cancel petitions (``ids``; an array's name: its members not ended yet), the
        queued or running ones of ``groups`` in ``states`` (QUEUED, RUNNING), or all;
        with ``signal`` (a number), send it to their running trees instead: for each
        ID, ``"cancelled"`` (``"signalled"``) or why it was not."""
        results: dict[str, str] = self._call(
            operations.cancel, _ids(ids), force, list(groups), [s.upper() for s in states],
            everything, signal,
        )  # fmt: skip
        return results

    def clean(self, older_than: float | None = None) -> int:
        """Forget ended petitions (those that ended over ``older_than`` seconds ago):
        drop their records and logs. How many were removed."""
        removed: int = self._call(operations.clean, older_than)["removed"]
        return removed

    def clean_each(
        self, ids: Iterable[str] = (), *, states: Iterable[str] = (),
        groups: Iterable[str] = (), older_than: float | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Forget ended petitions: ``ids`` (all if none; an array's name: its members),
        only in ``states``, of ``groups``, that ended over ``older_than`` seconds ago.
        ``{"removed": how many, "results": {ID: why it was not cleaned}}``."""
        reply: dict[str, Any] = self._call(
            operations.clean, older_than, _ids(ids), [s.upper() for s in states], list(groups)
        )
        return reply

    def wait(self, ids: str | Iterable[str]) -> dict[str, int]:
        """Block until these petitions have ended: ID -> exit code (as :func:`exit_code`
        says). NoPetitionError if an ID is unknown."""
        return {i: exit_code(s) for i, s in self.wait_summaries(ids).items()}

    def wait_summaries(self, ids: str | Iterable[str]) -> dict[str, dict[str, Any]]:
        """Block until these petitions have ended: ID (or the reference given, ``a~1``)
        -> ``{"id", "state", "code", "message"}``. NoPetitionError if one is unknown."""
        session = self._open()
        try:
            return {s.get("ref", s["id"]): s for s in operations.wait(session, _ids(ids))}
        finally:
            self._forget(session)

    def wait_report(self, ids: str | Iterable[str], timeout: float | None = None) -> dict[str, Any]:
        """Block until these petitions (an array's name: its members) have ended, or
        for ``timeout`` seconds at most: ``{"ended": {ID: summary}, "ids": [every ID
        waited for], "arrays": {name: [member IDs]}, "timed_out": bool}``.
        NoPetitionError if an ID is unknown."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        asked: dict[str, Any] = {"ids": [], "arrays": {}}
        ended: dict[str, dict[str, Any]] = {}
        session = self._open()
        try:
            for summary in operations.wait(session, _ids(ids), deadline, asked):
                ended[summary.get("ref", summary["id"])] = summary  # a~1 apart from a
        except TimeoutError:
            return {"ended": ended, **asked, "timed_out": True}
        finally:
            self._forget(session)
        return {"ended": ended, **asked, "timed_out": False}

    def submit_array(self, request: ArrayRequest) -> dict[str, Any]:
        """Queue every member of an array in one request, all or none (see
        :mod:`orcha.protocol.arrays`): ``{"name", "ids"}``. Members of an attached
        array (``request.submit.attach``) are cancelled when this client closes; follow
        their output with :meth:`follow` (the array's name stands for its members)."""
        reply: dict[str, Any] = self._call(operations.submit_array, request)
        return reply

    def logs(self, id: str, tail: int | None = None) -> Generator[tuple[str, bytes], None, Any]:
        """The stored output of a petition (running or ended) as ``(stream, data)``
        chunks (its last ``tail`` lines if given), returning its ``{"state", "code"}``
        as it is now (``None`` code: running). PetitionError (209) if none."""
        session = self._open()
        try:
            return (yield from operations.logs(session, id, tail))
        finally:
            self._forget(session)

    def follow(self, ids: str | Iterable[str], lines: int | None = None) -> Following:
        """Follow petitions' output from the start (from their last ``lines`` lines, if
        given), live (see :class:`Following`)."""
        return Following(self, self._open(), list(dict.fromkeys(_ids(ids))), lines)

    def watch(
        self, ids: str | Iterable[str] | None = None
    ) -> Generator[dict[str, Any], None, None]:
        """Events as they happen, as ``orcha watch --json`` prints them: ``{"event",
        "petition", "kind", "timestamp", "data"}``, the current state of each petition
        first (``state``), then ``submitted``, ``started``, ``output``, ``finished``...
        Of all petitions, endless; or of ``ids``, until each has finished."""
        session = self._open()
        try:
            yield from operations.watch(session, _ids(ids))
        finally:
            self._forget(session)

    def watch_usage(
        self, interval: float, ids: str | Iterable[str] | None = None
    ) -> tuple[list[dict[str, Any]], Generator[dict[str, Any], None, None]]:
        """What ``orcha top`` reads: (the last ended records, newest first; the events
        of every petition, or of ``ids``, with a ``usage`` event every ``interval``
        seconds and no ``output``). The events are endless; closing them (or the client)
        ends the watch."""
        session = self._open()
        try:
            recent, events = operations.watch_usage(session, interval, _ids(ids))
        except BaseException:
            self._forget(session)
            raise

        def stream() -> Generator[dict[str, Any], None, None]:
            try:
                yield from events
            finally:
                self._forget(session)

        return recent, stream()

    # -- admission ------------------------------------------------------------------------
    def groups(self) -> list[dict[str, Any]]:
        """Every group: ``{"name", "max_running", "running", "queued", "paused"}``."""
        listing: list[dict[str, Any]] = self._call(operations.group)
        return listing

    def set_group(self, name: str, max_running: int | None) -> list[dict[str, Any]]:
        """Limit how many petitions of group ``name`` run at once (None: no limit of its
        own); the groups afterwards."""
        listing: list[dict[str, Any]] = self._call(operations.group, name, max_running)
        return listing

    def pause(
        self, ids: Iterable[str] = (), groups: Iterable[str] = (), everything: bool = False,
        running: bool = False,
    ) -> dict[str, str]:  # fmt: skip
        """Stop starting these petitions, groups, or everything (``running``: also stop
        the processes of running ones). For each ID, ``"paused"`` or why not."""
        results: dict[str, str] = self._call(
            operations.pause, _ids(ids), list(groups), everything, running
        )
        return results

    def resume(
        self, ids: Iterable[str] = (), groups: Iterable[str] = (), everything: bool = False
    ) -> dict[str, str]:
        """Undo :meth:`pause`. For each ID, ``"resumed"`` or why not."""
        results: dict[str, str] = self._call(operations.resume, _ids(ids), list(groups), everything)
        return results

    # -- the service, plugins' state and runtime kinds ------------------------------------
    def health(self) -> dict[str, Any]:
        """``orcha health --json``'s fields (but ``reachable``)."""
        return dict(self._call(operations.health))

    def workers(self) -> dict[str, Any]:
        """Where petitions run: ``orcha workers --json``'s fields."""
        return dict(self._call(operations.workers))

    def info(self) -> dict[str, Any]:
        """The service's own account of itself (its petitions, sessions, served objects)."""
        return dict(self._call(operations.info))

    def reload_config(self) -> dict[str, Any]:
        """Have the service read its configuration file again (as SIGHUP does): ``{"path",
        "changed", "restart", "warnings"}``. PetitionError (REFUSED) if the file is
        invalid: the service keeps the configuration it had."""
        return dict(self._call(operations.reload))

    def shutdown(self, force: bool = False) -> dict[str, Any]:
        """Stop the service, as SIGTERM does (``force``: as a second one, killing every
        running tree at once): ``{"pid", "running", "queued", "stopping"}`` (running
        ones are cancelled, queued ones kept for its next start)."""
        return dict(self._call(operations.shutdown, force))

    def state(self, plugin: str) -> dict[str, Any]:
        """Every key of a plugin's persistent state with its value."""
        return dict(self._call(operations.state, "ls", plugin)["state"])

    def state_get(self, plugin: str, key: str) -> Any:
        """The value of ``key`` in a plugin's state (NoPetitionError if it has none)."""
        return self._call(operations.state, "get", plugin, key=key)["value"]

    def state_set(self, plugin: str, key: str, value: Any) -> None:
        """Set ``key`` in a plugin's state to ``value`` (JSON data)."""
        self._call(operations.state, "set", plugin, key=key, value=value)

    def state_rm(self, plugin: str, key: str) -> bool:
        """Remove ``key`` from a plugin's state; whether it was there."""
        return bool(self._call(operations.state, "rm", plugin, key=key)["removed"])

    # -- changes after submission ------------------------------------------------------------
    def release(self, ids: str | Iterable[str]) -> dict[str, str]:
        """Let held or delayed petitions start: for each ID, ``"released"`` or why not."""
        results: dict[str, str] = self._call(operations.release, _ids(ids))
        return results

    def edit(self, id: str, priority: int | None = None, **requests: Any) -> dict[str, Any]:
        """Change a queued petition's ``priority`` and ``requests`` (as :meth:`submit`
        takes them: ``cpus``, ``mem``, ``gpus``, ``group``, ``after``, ``after_any``,
        ``timeout``, ``retries``, ``retry_delay``, ``notify``, ``hold``, ``delay``,
        ``begin``): ``{"id", "priority", "schedule"}`` as they are now (an array's name:
        its queued members, listed in ``"edited"``). PetitionError if it is not queued
        (it has started or ended) or the change is refused."""
        result: dict[str, Any] = self._call(operations.edit, id, priority, changes_of(requests))
        return result

    def restart(
        self,
        ids: str | Iterable[str] | None = None,
        *,
        failed: bool = False,
        group: str | None = None,
        priority: int | None = None,
        **requests: Any,
    ) -> dict[str, Any]:
        """Run ended petitions again, detached, each as a new record linked to its old
        one: ``ids``, or (without) the failed ones (of ``group``). ``priority`` and
        ``requests`` (as for :meth:`edit`) override theirs. ``{"results": {ID:
        "restarted" or why not}, "restarted": [{"id", "seq", "restart_of"}]}``; with
        one ID, its refusal raises PetitionError."""
        result: dict[str, Any] = self._call(
            operations.restart, _ids(ids), failed, group, priority, changes_of(requests)
        )
        return result

    def kinds(self) -> list[dict[str, Any]]:
        """The runtime kinds: ``{"name", "from", "params", "schedule", "available"}``."""
        listing: list[dict[str, Any]] = self._call(operations.kinds)["kinds"]
        return listing

    def add_kind(self, name: str, parent: str, settings: dict[str, Any]) -> dict[str, Any]:
        """Define runtime kind ``name`` from kind ``parent`` with fixed ``settings``
        (parameters, and cpus, mem, gpus, group, timeout...); the kind as defined."""
        kind: dict[str, Any] = self._call(
            operations.kinds, "add", name=name, **{"from": parent, "set": settings}
        )["kind"]
        return kind

    def remove_kind(self, name: str) -> bool:
        """Remove runtime kind ``name``; whether there was one."""
        return bool(self._call(operations.kinds, "rm", name=name)["removed"])
