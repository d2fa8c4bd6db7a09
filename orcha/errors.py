"""One exception hierarchy and one table of exit codes, used by every command.

Each error's message says what happened and what to do; the CLI prints it as one line
and exits with the error's code. Users never see a traceback.

orcha's own outcomes use codes 200-213 so that they never collide with what ``orcha run``
passes through from the command it ran (0-125 the command's own, 126 cannot execute,
127 not found, 128+N killed by signal N).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from collections.abc import Iterator
    from enum import IntEnum as _IntEnum
else:

    class _IntEnumType(type):
        """What :class:`ExitCode` needs of ``enum.IntEnum``, at a fraction of its cost:
        every orcha command imports this module, and importing ``enum`` and building an
        IntEnum costs a client about 6 ms of start-up (more than its whole round trip).
        Each public int attribute of the class body becomes a member: an instance (an
        int) with ``name`` and ``value``. The class iterates over its members in order,
        ``Cls(value)`` finds one (ValueError otherwise), ``Cls[name]`` too (KeyError),
        members pickle by value and cannot be reassigned. (Type checkers see IntEnum.)"""

        def __new__(mcls, name: str, bases: tuple[type, ...], namespace: dict[str, object]):
            values = {k: v for k, v in namespace.items()
                      if not k.startswith("_") and type(v) is int}  # fmt: skip
            body = {k: v for k, v in namespace.items() if k not in values}
            cls = super().__new__(mcls, name, bases, body)
            members = {}
            for key, value in values.items():
                member = int.__new__(cls, value)
                member._name_ = key
                members[key] = member
                type.__setattr__(cls, key, member)
            type.__setattr__(cls, "_member_map_", members)
            type.__setattr__(cls, "_by_value_", {int(m): m for m in members.values()})
            return cls

        def __call__(cls, value: object) -> _IntEnum:
            try:
                return cls._by_value_[value]
            except (KeyError, TypeError):
                raise ValueError(f"{value!r} is not a valid {cls.__name__}") from None

        def __getitem__(cls, name: str) -> _IntEnum:
            return cls._member_map_[name]

        def __iter__(cls) -> Iterator[_IntEnum]:
            return iter(cls._member_map_.values())

        def __len__(cls) -> int:
            return len(cls._member_map_)

        def __contains__(cls, member: object) -> bool:
            return isinstance(member, cls) and member in cls._by_value_

        def __setattr__(cls, name: str, value: object) -> None:
            if name in cls.__dict__.get("_member_map_", ()):
                raise AttributeError(f"cannot reassign member {name!r}")
            type.__setattr__(cls, name, value)

        @property
        def __members__(cls) -> dict[str, _IntEnum]:
            return dict(cls._member_map_)

    class _IntEnum(int, metaclass=_IntEnumType):
        """The members' behaviour: an int that knows its name (str and format as the
        number, as IntEnum's do since Python 3.11)."""

        _name_: str

        @property
        def name(self) -> str:
            return self._name_

        @property
        def value(self) -> int:
            return int(self)

        def __repr__(self) -> str:
            return f"<{type(self).__name__}.{self._name_}: {int(self)}>"

        __str__ = int.__repr__
        __format__ = int.__format__

        def __reduce__(self) -> tuple[type, tuple[int]]:
            return type(self), (int(self),)

        def __copy__(self) -> _IntEnum:
            return self

        def __deepcopy__(self, memo: object) -> _IntEnum:
            return self


class ExitCode(_IntEnum):
    """The exit codes of every orcha command (documented in README.md)."""

    OK = 0
    FAILED = 1  # the petition ran and failed; or an unexpected internal error
    USAGE = 2  # bad option or value: nothing was sent
    TIMEOUT = 124  # the petition ran longer than its --timeout (as timeout(1) exits)
    CANNOT_EXECUTE = 126  # orcha run: the command exists but cannot be executed
    NOT_FOUND = 127  # orcha run: the command was not found
    INTERRUPTED = 130  # Ctrl+C in this client cancelled its petition
    BROKEN_PIPE = 141  # the reader of orcha's output went away (128 + SIGPIPE, quietly)
    NO_SERVICE = 200  # no service answers at the address
    AUTH = 201  # the service refused the key
    DUPLICATE = 202  # a petition with this ID is queued or running
    UNKNOWN = 203  # unknown petition kind or plugin
    REFUSED = 204  # the service refused the petition (bad request, shutting down)
    START_FAILED = 205  # the petition could not be started
    LOST_SERVICE = 206  # the service went away while the petition was in it
    CANCELLED = 207  # cancelled by someone else (another client, service shutdown)
    ALREADY_RUNNING = 208  # serve: a service already listens there or uses the state dir
    NO_PETITION = 209  # no petition has that ID (or not in the state the operation needs)
    DEPENDENCY_FAILED = 210  # a petition it runs --after failed or was cancelled
    MEMORY = 211  # the petition's tree used more memory than its --mem
    NOT_SAVED = 212  # the service cannot save its state now: the petition was not taken
    EXECUTOR = 213  # serve: the executor (Dask) cannot be used: extra missing, unreachable


#: What each exit code means to a user (the reference pages are generated from this).
EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "the petition succeeded ('serve': stopped cleanly)",
    ExitCode.FAILED: (
        "the petition failed ('wait --status success', or 'wait' on an array, '--group' "
        "or '--all', and an attached array: one of them did not succeed); 'serve': "
        "stopped by force (a second signal, 'shutdown --force'); the output could not be "
        "written ('orcha logs X > /dev/full': \"cannot write the output: ...\"); an "
        "internal error"
    ),
    ExitCode.USAGE: (
        "usage error: bad option or value, or an invalid configuration file (nothing was sent)"
    ),
    ExitCode.TIMEOUT: (
        "the petition ran longer than its '--timeout'; 'wait --timeout': some had not "
        "ended by then; 'shutdown --wait': the service had not exited"
    ),
    ExitCode.CANNOT_EXECUTE: "'orcha run': the command cannot be executed",
    ExitCode.NOT_FOUND: "'orcha run': the command was not found",
    ExitCode.INTERRUPTED: "Ctrl+C in this client cancelled its petition",
    ExitCode.BROKEN_PIPE: (
        "the reader of orcha's output went away ('orcha status | head -1'): quietly, as a"
        " program killed by SIGPIPE"
    ),
    ExitCode.NO_SERVICE: (
        "no service is running at the address (start one with 'orcha serve'); nothing "
        "answered there within 5 s (check '--address', 'ORCHA_ADDRESS' or the "
        "configuration's address); or it hung up before the handshake finished "
        "(overloaded: try again)"
    ),
    ExitCode.AUTH: (
        "the service refused the key ('--key', 'ORCHA_KEY', or the key file), or the "
        "socket belongs to another user's service (permission denied)"
    ),
    ExitCode.DUPLICATE: (
        "a petition with this ID is already queued or running ('restart' of one still "
        "queued or running)"
    ),
    ExitCode.UNKNOWN: (
        "no such petition kind or plugin ('describe', 'state', a runtime kind whose "
        "parent plugin is not loaded)"
    ),
    ExitCode.REFUSED: (
        "the service refused the petition (malformed request, a request that can never "
        "fit such as more '--cpus' than the service has, service stopping); 'config "
        "reload': the service found its file invalid (it keeps its configuration)"
    ),
    ExitCode.START_FAILED: (
        "the petition could not be started (e.g. the working directory is missing)"
    ),
    ExitCode.LOST_SERVICE: (
        "the connection to the service was lost while the petition was in it, or the "
        "service stopped and kept the petition queued for its next start; the petition "
        "was interrupted (INTERRUPTED: the service died while it ran, or its Dask worker "
        "was lost: the line says which)"
    ),
    ExitCode.CANCELLED: "the petition was cancelled by someone else (e.g. the service stopped)",
    ExitCode.ALREADY_RUNNING: (
        "'serve': another service already listens at that address, or uses the same state"
        " directory (its database); the line says how to stop it ('kill PID' when its "
        "socket was deleted)"
    ),
    ExitCode.NO_PETITION: (
        "no petition has that ID ('status', 'logs', 'follow', 'wait', 'watch', 'pause', "
        "'resume', '--after'), 'cancel' (or '--signal') of one that has ended, 'clean' of"
        " one still queued or running, 'release' or 'edit' of one not queued (or "
        "'release' of one neither held nor delayed), no such runtime kind ('kinds rm') or"
        " state key ('state get')"
    ),
    ExitCode.DEPENDENCY_FAILED: (
        "a petition it runs '--after' failed, was cancelled or was interrupted"
    ),
    ExitCode.MEMORY: (
        "the petition's processes used more memory than it asked for with '--mem', and were stopped"
    ),
    ExitCode.NOT_SAVED: (
        "the service cannot save its state (disk full, database locked or failing): the "
        "petition was not taken (or, queued before, was not started); see 'orcha health',"
        " then submit again; 'serve': its database cannot be used now (disk full or "
        "failing, locked by another process: free space or end that process, then start "
        "again); a database found damaged while the service runs (stop it, move the file "
        "aside or restore it)"
    ),
    ExitCode.EXECUTOR: (
        "'serve --dask': the Dask executor cannot be used: its extra is not installed "
        "('pip install 'orcha[dask]'') or the scheduler cannot be reached"
    ),
}

#: What `orcha run` passes through from its command (codes, not ExitCode members).
RUN_CODE_MEANINGS: dict[str, str] = {
    "0-255": "'orcha run': the command's own exit code",
    "128+N": "'orcha run': the command was killed by signal N",
}


class OrchaError(Exception):
    """Base of every error orcha reports to a user."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(OrchaError):
    """A setting (option, environment variable, file) is invalid."""

    exit_code = ExitCode.USAGE


class ExecutorError(OrchaError):
    """The configured executor (a Dask cluster) cannot be used: its extra is missing, or
    its scheduler cannot be reached."""

    exit_code = ExitCode.EXECUTOR


class SchemaError(ConfigError):
    """A value does not match its schema (orcha.schema); ``path`` says where
    (``plugins.greet.config.limit``, ``params.argv[2]``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


class NoServiceError(OrchaError):
    """Nothing answers at the address. ``advises_serve``: the advice is the default one,
    to start ``orcha serve``; a client that needs another service (a plugin's own) says
    which instead (:mod:`orcha.cli.bridge`)."""

    exit_code = ExitCode.NO_SERVICE
    advises_serve = False

    def __init__(self, address: str, reason: str = "", advice: str = "") -> None:
        self.address, self.reason, self.advises_serve = address, reason, not advice
        why = f" ({reason})" if reason else ""
        advice = advice or "start one with 'orcha serve'"
        super().__init__(f"no orcha service is running at {address}{why}; {advice}")


class DroppedError(NoServiceError):
    """The service hung up (or did not answer in time) before the handshake was done."""

    def __init__(self, address: str) -> None:
        OrchaError.__init__(
            self,
            f"the service at {address} hung up or stopped answering before authentication "
            "finished (too many clients connecting at once, or it is overloaded); try again",
        )


class NoAnswerError(NoServiceError):
    """Nothing answered in time: the connection did not open, or opened and no service
    greeted it (a firewall that drops packets, a wrong host, a proxy, a stuck service)."""

    def __init__(self, address: str, seconds: float) -> None:
        OrchaError.__init__(
            self,
            f"nothing answered at {address} within {seconds:g} s; check --address, "
            "ORCHA_ADDRESS or the configuration's address, and that a service runs there",
        )


class AuthError(OrchaError):
    """The service rejected our key, or the peer is not an orcha service."""

    exit_code = ExitCode.AUTH


class AlreadyRunningError(OrchaError):
    """``serve`` found another service at its address, or using its state directory."""

    exit_code = ExitCode.ALREADY_RUNNING


class LostServiceError(OrchaError):
    """The connection to the service broke while a petition was in it."""

    exit_code = ExitCode.LOST_SERVICE

    def __init__(self, detail: str = "", then: str | None = None) -> None:
        """``then``: what follows for the petition, if not the usual (it is kept)."""
        self.detail = detail
        extra = f" ({detail})" if detail else ""
        then = then or (
            "'orcha status' tells whether it still runs, 'orcha serve' starts it again "
            "(it keeps what was queued)"
        )
        super().__init__(f"lost the connection to the orcha service{extra}; {then}")


class PetitionError(OrchaError):
    """The service refused or failed a petition; ``exit_code`` says how."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.REFUSED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class DuplicateIdError(PetitionError):
    """``petition_id`` is taken: a petition (``array``: members of the array) of that
    name is queued or running."""

    def __init__(self, petition_id: str, array: bool = False) -> None:
        super().__init__(
            f"array {petition_id!r} has petitions queued or running; choose another ID "
            "or wait for them to finish"
            if array
            else f"a petition with ID {petition_id!r} is already queued or running; "
            "choose another ID or wait for it to finish",
            ExitCode.DUPLICATE,
        )


class UnknownKindError(PetitionError):
    """The service has no such kind. ``served_by``: the whole message instead, when the
    service is not one that serves kinds (a plugin's own service) and says so."""

    def __init__(self, kind: str, known: list[str], served_by: str | None = None) -> None:
        legal = ", ".join(sorted(known)) or "none"
        super().__init__(
            served_by
            or f"the service has no petition kind {kind!r} (it has: {legal}); "
            "install the plugin that provides it and restart 'orcha serve'",
            ExitCode.UNKNOWN,
        )


class InvalidPetitionError(PetitionError):
    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.REFUSED)


class NotSavedError(PetitionError):
    """The service could not save a change to its records (disk full, database locked or
    failing), so it did not take what it was asked (``what``: what was not done)."""

    def __init__(self, reason: str, what: str = "nothing was submitted") -> None:
        super().__init__(
            f"the service cannot save its state ({reason}); {what}. Free space in its state "
            "directory (or end what holds its database) and retry; 'orcha health' says when "
            "it saves again",
            ExitCode.NOT_SAVED,
        )
        self.reason = reason


class StateUnavailableError(OrchaError):
    """``serve``: its database cannot be used now (the disk is full or failing, another
    process holds it locked), though nothing says it is damaged: it is left as it is."""

    exit_code = ExitCode.NOT_SAVED


class NoPetitionError(OrchaError):
    """No petition (or other named thing: a runtime kind, a state key) has that name."""

    exit_code = ExitCode.NO_PETITION


class PluginError(OrchaError):
    """A plugin failed to load or broke its contract."""


class ConcurrentUseError(OrchaError):
    """A Python client's connection was used by two threads at once in a way it cannot
    serve (two threads reading one petition's output): nothing was read."""


#: Error names on the wire (service -> client) mapped to exit codes; the service sends the
#: name, the client rebuilds a PetitionError with the right code.
WIRE_ERRORS: dict[str, ExitCode] = {
    "no_petition": ExitCode.NO_PETITION,
    "duplicate": ExitCode.DUPLICATE,
    "unknown": ExitCode.UNKNOWN,
    "refused": ExitCode.REFUSED,
    "start_failed": ExitCode.START_FAILED,
    "not_saved": ExitCode.NOT_SAVED,
}


def wire_name(code: ExitCode) -> str:
    """The wire name of a petition error's exit code (``refused`` when it has none)."""
    for name, value in WIRE_ERRORS.items():
        if value == code:
            return name
    return "refused"
