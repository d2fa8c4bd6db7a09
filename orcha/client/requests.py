"""What :class:`orcha.Client`'s methods send as requests: keyword requests (``cpus``,
``mem``, ``timeout``...) as the wire's schedule fields, IDs, parameters and environment
checked (TypeError before anything is sent, as for any misuse of the client), and who
submits from where (and in which directory)."""

from __future__ import annotations

import os

from orcha.errors import ConfigError, InvalidPetitionError

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import Any

    from orcha.protocol.schedule import Schedule


def ids_of(ids: Any, name: str = "ids") -> list[str]:
    """A list of IDs: ``ids`` is one ID (a string), several (any iterable of strings),
    or None (none). TypeError naming ``name`` otherwise."""
    if ids is None:
        return []
    if isinstance(ids, str):
        return [ids]
    try:
        listed = list(ids)
    except TypeError:
        listed = [ids]
    for item in listed:
        if not isinstance(item, str):
            raise TypeError(
                f"{name} must be an ID (a string) or a list of IDs (strings), but holds "
                f"{item!r} ({type(item).__name__})"
            )
    return listed


def one_id(petition_id: Any, method: str, several: str) -> str:
    """``petition_id`` if it is one ID (a string); TypeError saying to use ``several``
    (the method taking a list) otherwise."""
    if not isinstance(petition_id, str):
        raise TypeError(
            f"{method}() takes one ID (a string), not {type(petition_id).__name__}; for "
            f"several, call {several}({petition_id!r})"
        )
    return petition_id


def params_of(params: Any) -> dict[str, Any]:
    """A kind's parameters as a dict of their own; TypeError unless a mapping with
    string keys (the kind checks the values)."""
    given = dict(params) if hasattr(params, "keys") else None
    if given is None or not all(isinstance(k, str) for k in given):
        raise TypeError(
            "params must be a dict of the kind's parameters by name (e.g. "
            f"{{'counter': 3}}), not {params!r}"
        )
    return given


def environment_of(env: Any) -> dict[str, str]:
    """This process's environment with ``env`` (None: nothing) added; TypeError unless
    ``env`` maps strings to strings."""
    environment = dict(os.environ)
    if env is None:
        return environment
    if not hasattr(env, "keys"):
        raise TypeError(f"env must be a dict of variables to add (e.g. {{'X': '1'}}), not {env!r}")
    for key, value in dict(env).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"env must map strings to strings, but holds {key!r}: {value!r}")
        environment[key] = value
    return environment


def requests_wire(requests: dict[str, Any]) -> dict[str, Any]:
    """Requests as the Client's methods take them, as the wire's schedule fields: sizes
    and durations as numbers or as text the options take (``"4G"``, ``"1h30m"``), one ID
    or several for ``after``/``after_any``/``notify``; None means not given. ValueError
    if a text cannot be read."""
    from orcha.units import parse_duration, parse_size

    wire: dict[str, Any] = {}
    for name, value in requests.items():
        if value is None:
            continue
        if name == "mem" and isinstance(value, str):
            value = parse_size(value)
        elif name in ("timeout", "retry_delay", "delay") and isinstance(value, str):
            value = parse_duration(value)
        elif name in ("after", "after_any", "notify"):
            try:
                value = [value] if isinstance(value, str) else list(value)
            except TypeError:  # a number, say: not "'int' object is not iterable"
                raise ValueError(
                    f"{name!r} must be a string or a list of them, not {value!r}"
                ) from None
        wire[name] = value
    return wire


def schedule_of(**given: Any) -> Schedule:
    """The Schedule of :meth:`Client.submit`'s requests; ValueError if one is invalid."""
    from orcha.protocol.schedule import Schedule

    return Schedule.from_wire(requests_wire(given))


def changes_of(requests: dict[str, Any]) -> dict[str, Any]:
    """Requests as :meth:`Client.edit` and :meth:`Client.restart` take them, as schedule
    fields; InvalidPetitionError (one line) if one cannot be read."""
    try:
        return requests_wire(requests)
    except ValueError as e:
        raise InvalidPetitionError(f"invalid request: {e}") from None


def working_directory(cwd: str | None = None) -> str:
    """Where a petition runs: ``cwd`` if given, else this process's working directory.
    ConfigError (exit 2, nothing sent) if that directory has been removed."""
    if cwd:
        return cwd
    try:
        return os.getcwd()
    except FileNotFoundError:
        raise ConfigError(
            "the current directory no longer exists; cd to one that does and try again"
        ) from None


def user_name() -> str:
    """The submitting user's name (its number if it has none)."""
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def host_name() -> str:
    """The submitting host's name."""
    import _socket  # the C module: socket's own module sets up enums (client start-up)

    return _socket.gethostname()
