"""The extension contract: everything a plugin may implement or receive, as documented stubs.

This module is the one place that says what orcha asks of a plugin and what it gives it
(pluggy-style hook specifications: each hook a method whose docstring states the
contract). It imports nothing of orcha's CLI or service, so a plugin, a test or a tool
can import it without starting either; discovery (:mod:`orcha.plugins.discovery`), the
CLI (:mod:`orcha.cli.bridge`) and the service (:mod:`orcha.service.kinds`) are written
against it.

* :class:`BasePlugin`: what a plugin supplies: CLI commands (click, or an argparse parser
  as in the original Orcha), petition kinds, predicates, event sinks; its service-side
  lifecycle (load, start, stop, health) and its version line.
* :class:`Kind`: a petition kind: checks the plain-data parameters a client sends and
  runs the petition in the service.
* :class:`Context`: what a kind's :meth:`Kind.run` receives; with it a kind may submit
  child petitions of other kinds and wait for them (:meth:`Context.submit`,
  :class:`Child`).
* :class:`Predicate`: ``(petition, machine) -> None`` if the petition may start there,
  else the reason it waits. Plain ``(petition) -> bool`` callables, the shape of earlier
  releases, are accepted and adapted (:func:`orcha.plugins.predicates.as_predicate`).
* :data:`EventSink`: ``(envelope) -> None``, handed every event the service emits.
* :class:`PluginServiceSpec` and :class:`PluginStateSpec`: what the ``start`` hook receives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    import argparse
    import logging
    import subprocess
    import threading

    import click

__all__ = [
    "BasePlugin",
    "Child",
    "Context",
    "EventSink",
    "Kind",
    "LegacyPredicate",
    "PluginServiceSpec",
    "PluginStateSpec",
    "Predicate",
]

#: A callable the service hands every event envelope to: ``{"event": NAME, "petition":
#: ID, "kind": KIND, "timestamp": SECONDS, "data": {...}}`` (state changes, custom
#: events of kinds, output and progress too). Sinks run in a delivery thread of their
#: own, one envelope after another: a slow or failing sink delays and harms nothing
#: else; an exception is logged and ignored. Each sink gets its own copy of the envelope.
EventSink = Callable[[dict[str, Any]], None]

#: The predicate shape of earlier releases: ``(petition) -> bool``, True if it may start.
LegacyPredicate = Callable[[Any], bool]


class Predicate(Protocol):
    """A condition every petition of an orcha kind must meet to start.

    ``predicate(petition, machine)`` returns None if ``petition`` may start on
    ``machine`` now, else a short reason why it waits (``orcha status`` shows it, e.g.
    ``"waiting for the licence server"``). ``petition`` carries the petition's ``id``,
    ``kind``, ``params``, ``cwd`` and ``env``; ``machine`` is where the scheduler means to
    run it (today always the local host; None when the caller has no machine in mind).

    Predicates run in the service, under its scheduler's lock, each time the scheduler
    looks at a waiting petition: they must be quick, must not block, and must not change
    the petition. All predicates must hold (besides the petition's own requests: CPUs,
    memory, GPUs, group, dependencies); the first that says no gives the reason. One
    that raises counts as "not now" and is logged once per petition.
    """

    def __call__(self, petition: Any, machine: Any) -> str | None: ...


class PluginStateSpec(Protocol):
    """A plugin's persistent key-value store (JSON values), kept by the service across
    restarts; users reach it with ``orcha state``. Thread-safe."""

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default``."""
        ...

    def set(self, key: str, value: Any) -> None:
        """Keep ``value`` (JSON data) under ``key``; ValueError if it is not JSON data."""
        ...

    def delete(self, key: str) -> bool:
        """Forget ``key``; False if it was not there."""
        ...

    def items(self) -> dict[str, Any]:
        """Every key and value."""
        ...


class PluginServiceSpec(Protocol):
    """What a plugin's :meth:`BasePlugin.start` receives from the service."""

    @property
    def name(self) -> str:
        """The plugin's name."""
        ...

    @property
    def config(self) -> dict[str, Any]:
        """Its validated settings (``plugins: {NAME: {config: ...}}``), defaults filled in."""
        ...

    @property
    def log(self) -> logging.Logger:
        """A logger of its own (``orcha.plugin.NAME``), into the service's log."""
        ...

    @property
    def state(self) -> PluginStateSpec | None:
        """Its persistent state; None when the service runs without a database."""
        ...


class Child(Protocol):
    """A child petition, as the running petition that submitted it sees it
    (:meth:`Context.submit`).

    A child is a petition like any other: it has a record (``orcha status`` shows it
    under its parent), waits in the same queue for the same predicates, and may be
    followed, waited for or cancelled by any client. It belongs to its parent: it is
    cancelled when its parent is cancelled (first), and when its parent's ``run``
    returns while it has not ended. Its failure does not fail the parent: the parent's
    kind decides from the codes.

    Its output comes to the parent (through :meth:`output`), never to the parent's
    client, unless the parent writes it there itself. Reading is not required: output
    nobody reads is dropped by :meth:`wait` and kept in the child's log (``orcha logs
    ID``), but a child whose unread output fills its buffer waits until the parent
    reads or waits.

    While its parent is blocked in :meth:`wait` or :meth:`output`, the parent lends its
    resources to its own children (see docs/scheduling.rst), so parents waiting on
    children never deadlock the queue.
    """

    #: The child's petition ID.
    id: str

    @property
    def state(self) -> str:
        """Its state now: ``QUEUED``, ``RUNNING``, ``SUCCEEDED``, ``FAILED``,
        ``CANCELLED`` or ``INTERRUPTED``."""
        ...

    @property
    def outcome(self) -> Any:
        """The outcome (JSON data) its kind recorded, or None (so far)."""
        ...

    def output(self) -> Iterator[tuple[str, bytes]]:
        """Its output as it comes, ``(stream, data)`` with ``stream`` ``"stdout"`` or
        ``"stderr"``, until it ends (then the iteration stops; :meth:`wait` returns its
        code at once). Blocks while the child is quiet."""
        ...

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code once it has ended: the code ``orcha run`` would end with (the
        command's code; 124 timed out; 207 cancelled...). Output not yet read through
        :meth:`output` is dropped. TimeoutError if ``timeout`` seconds pass first."""
        ...

    def cancel(self) -> None:
        """Cancel it (dropped if waiting, its tree stopped if running); nothing if it has
        ended. :meth:`wait` then returns the code of a cancelled petition (207)."""
        ...


class Context(Protocol):
    """What a running petition's :meth:`Kind.run` (and :meth:`Kind.close`) receives.

    The attributes describe the petition; the methods are everything it may do. The
    service's implementation is :class:`orcha.service.context.ServiceContext`; tests may
    pass any object of this shape.
    """

    #: The petition's ID.
    id: str
    #: Its parameters, checked against the kind's schema, defaults filled in.
    params: dict[str, Any]
    #: The submitting client's working directory and environment.
    cwd: str
    env: dict[str, str]
    #: Which attempt this is (1, then 2... with ``--retries``).
    attempt: int
    #: The GPU indices the petition was given (empty without ``--gpus``).
    gpus: tuple[str, ...]
    #: Set when the petition is cancelled or its attempt reaches its ``--timeout``.
    cancelled: threading.Event
    #: Whether its processes run on the service's host (False on a Dask worker: paths
    #: such as ``cwd`` are the worker's, so a check of them on the service host says
    #: nothing; :meth:`spawn` raises NotADirectoryError if ``cwd`` is missing there).
    local: bool

    def write(self, data: str | bytes) -> None:
        """Send ``data`` to the client's stdout (and the petition's log)."""
        ...

    def write_err(self, data: str | bytes) -> None:
        """Send ``data`` to the client's stderr (and the petition's log)."""
        ...

    def progress(
        self, value: float | None = None, target: float | None = None, unit: str = ""
    ) -> None:
        """Report how far the petition has come: ``value`` of ``target`` ``unit``; no
        value means "working, amount unknown". ValueError if a number is not finite."""
        ...

    def event(self, name: str, data: dict[str, Any] | None = None) -> None:
        """Emit the custom event ``KIND.NAME`` to watchers, webhooks and event sinks.
        ValueError if ``name`` is not a short word or ``data`` not JSON data."""
        ...

    def set_outcome(self, value: Any) -> None:
        """Record the petition's outcome (JSON data): the client prints it when the
        petition ends, ``orcha status`` shows it. ValueError if not JSON data."""
        ...

    def fail(self, message: str) -> None:
        """Record why the petition failed; the client prints it as one line."""
        ...

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; True (at once) if the petition was cancelled meanwhile."""
        ...

    def spawn(self, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start ``argv`` in the petition's cwd and environment, so that cancellation
        finds it and every process it starts. Its stdout and stderr are pipes (for a
        petition submitted with ``--ordered``, sockets: read them with :meth:`pump`,
        which keeps their order). Its stdin is the input the attached client sends
        (``orcha run`` with piped input), for the first process a petition spawns only;
        /dev/null otherwise. The service writes it: ``proc.stdin`` is None either way."""
        ...

    def pump(self, proc: subprocess.Popen[bytes]) -> int:
        """Stream ``proc``'s output to the client until it has exited (and what it wrote
        until then: a process it left running may hold its pipes open for at most a
        second more); return its exit code (128+N if signal N killed it)."""
        ...

    def submit(
        self,
        kind: str,
        params: dict[str, Any] | None = None,
        *,
        id: str | None = None,
        **requests: Any,
    ) -> Child:
        """Submit a child petition of ``kind`` (any kind the service serves, runtime kinds
        too) with ``params``; return its :class:`Child` at once (it is queued, not run).

        ``id``: its petition ID, by default ``PARENT-ID.N`` (N counting from 1 for each
        parent). ``requests`` are those of ``orcha run``: ``priority`` (int), ``cpus``,
        ``gpus``, ``retries`` (ints), ``mem`` (bytes, or a size such as ``"2G"``),
        ``timeout`` (seconds, or a duration such as ``"5m"``), ``group`` (str),
        ``after`` (an ID or a list of IDs), ``cwd`` and ``env`` (default: the
        parent's). The child goes through the same checks as any petition:
        :class:`orcha.errors.PetitionError` (unknown kind, invalid parameters or
        requests, an ID in use, the parent cancelled) if it is refused.
        """
        ...


class Kind:
    """Base class of petition kinds.

    Contract:

    * ``name`` is unique among installed kinds (the client sends it; the service looks it
      up in its own registry and refuses unknown names); ``help`` is one line for people;
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
      the petition's exit code (0 = success; a code outside 0-255 fails the petition
      with code 1 and the message "exit code N is out of range 0-255"; what is no int,
      None included, fails it with code 1 too). An exception
      (any, KeyboardInterrupt and SystemExit too) fails the petition, never the
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
        return self.validate(self.check_schema(params))

    def check_schema(self, params: dict[str, Any], required: bool = True) -> dict[str, Any]:
        """The schema check alone (``required=False``: the parameters it requires may be
        missing, as in a runtime kind's template): the parameters with defaults filled
        in, or InvalidPetitionError naming the bad one."""
        if self.schema is None:
            return params
        from orcha.errors import InvalidPetitionError
        from orcha.schema import SchemaError, validate

        schema = self.schema if required else {**self.schema, "required": []}
        try:
            return validate(schema, params, "params")
        except SchemaError as e:
            raise InvalidPetitionError(
                f"invalid parameters for kind {self.name!r}: {e}; see 'orcha describe {self.name}'"
            ) from None

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        """The normalised parameters (a new dict), or InvalidPetitionError."""
        return dict(params)

    def run(self, ctx: Context) -> int:
        """Do the petition's work (see the class's contract); return its exit code. By
        default, for a kind that defines :meth:`start`: its process, pumped to the end."""
        started = self.start(ctx)
        return started if isinstance(started, int) else ctx.pump(started)

    def start(self, ctx: Context) -> subprocess.Popen[bytes] | int:
        """Optional, for a kind whose work is one process streamed to its end: start it
        (``ctx.spawn``) and return it, without pumping it; or return an exit code if it
        could not start (after ``ctx.fail``). The service then pumps it and takes its
        exit code as the petition's, without a thread of its own per petition (see
        :attr:`startable`): it must not block. Define either this or :meth:`run`."""
        raise NotImplementedError

    @property
    def startable(self) -> bool:
        """Whether this kind defines :meth:`start` and leaves :meth:`run` to it."""
        cls = type(self)
        return cls.start is not Kind.start and cls.run is Kind.run

    def close(self, ctx: Context) -> Any:
        """Bring a running petition to an orderly end; return its outcome (JSON) or None.
        Not defined by default: cancelling then goes straight to the process tree."""
        raise NotImplementedError

    @property
    def closable(self) -> bool:
        """Whether this kind defines :meth:`close`."""
        return type(self).close is not Kind.close


class BasePlugin:
    """Base class of orcha plugins. Every hook has a default: implement only those you need.

    Names as in the original Orcha:

    * ``name``: the plugin's name (required); for argparse plugins also the command's name;
    * ``aliases``: other names for that command; ``help``: one line for ``--help``;
    * :meth:`create_parser` and :meth:`handle`: an argparse CLI, bridged into a command;
    * :meth:`version`: the line ``orcha ls`` prints, e.g. ``"my-plugin - 1.0.0"``.

    orcha's own hooks: :meth:`commands`, :meth:`kinds`, :meth:`predicates`,
    :meth:`event_sinks`, and the service-side lifecycle. ``orcha serve`` calls
    :meth:`load`, :meth:`start`, :meth:`stop` and :meth:`health` in its own process, each
    within a time limit: an exception or a hook that overruns is logged and the service
    goes on (a plugin whose load or start failed is reported unhealthy).

    Discovery calls :meth:`commands`, :meth:`kinds`, :meth:`predicates` and
    :meth:`event_sinks` once, right after instantiating the plugin: one that raises, or
    returns something of the wrong shape, leaves the plugin out with its error (``orcha
    ls`` shows it); so does claiming a command or kind name another plugin has.
    """

    name: str = ""
    aliases: tuple[str, ...] = ()
    help: str = ""
    #: The schema (:mod:`orcha.schema`) of the plugin's settings in the configuration
    #: file (``plugins: {NAME: {config: ...}}``), with defaults; None: it takes none.
    config_schema: dict[str, Any] | None = None

    # -- the original Orcha API ---------------------------------------------------------
    def create_parser(self, parser: argparse.ArgumentParser) -> None:
        """Add this plugin's arguments (or subparsers) to ``parser``. Overriding it makes
        this an argparse plugin: ``orcha NAME ARGS`` parses ARGS with ``parser``."""

    def handle(self, namespace: argparse.Namespace) -> int:
        """Run the command parsed by :meth:`create_parser`; return its exit code."""
        return 0

    @staticmethod
    def version() -> str:
        """The line ``orcha ls`` prints for the plugin: ``"NAME - VERSION"``, or just the
        version (see :func:`orcha.utils.version`)."""
        return "unknown"

    # -- what the plugin supplies -------------------------------------------------------
    def commands(self) -> list[click.Command]:
        """click commands added to ``orcha`` (each with a name no one else has)."""
        return []

    def kinds(self) -> list[Kind]:
        """Petition kinds (instances of :class:`Kind`) that ``orcha serve`` runs."""
        return []

    def predicates(self) -> list[Predicate | LegacyPredicate]:
        """Conditions every petition of an orcha kind must meet to start: callables of
        the :class:`Predicate` shape, or ``(petition) -> bool`` as in earlier releases
        (False then reads "waiting for a plugin's predicate to hold")."""
        return []

    def event_sinks(self) -> list[EventSink]:
        """Callables handed every event envelope (see :data:`EventSink`)."""
        return []

    # -- service-side lifecycle ---------------------------------------------------------
    def load(self, config: dict[str, Any]) -> None:
        """Receive the plugin's validated settings, defaults filled in, once at start."""

    def start(self, service: PluginServiceSpec) -> None:
        """The service is about to accept clients; ``service`` gives the plugin's name,
        settings, logger and persistent state."""

    def stop(self) -> None:
        """The service is stopping (plugins are stopped in reverse order)."""

    def health(self) -> tuple[bool, dict[str, Any]]:
        """``(healthy, details)`` for ``orcha health``: quick, JSON details for people."""
        return True, {}

    @property
    def is_argparse(self) -> bool:
        """Whether the plugin brings an argparse CLI (it overrides create_parser)."""
        return type(self).create_parser is not BasePlugin.create_parser
