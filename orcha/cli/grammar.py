"""One declaration of the options of orcha's commands, and the fast parser built from it.

Every option of the commands that submit a petition is declared here (or, for a plugin's
own command, in that plugin's command module) once, as plain data: its names, whether it
takes a value, its type and range, its default, and the function from
:mod:`orcha.cli.values` that checks it. :mod:`orcha.cli.build` turns these declarations
into click options and commands; :func:`parse` reads a command line by the same
declarations without click. What :func:`parse` accepts, click accepts and means the same
by (``tests/unit/test_fast.py`` checks it over many command lines); anything it is not
sure of (help, an unknown or repeated option, a bad value, an option marked ``fast=False``)
makes it return None, so that click answers with its own message and exit code 2.

Cheap to import (no click, typing or re): the ``orcha`` command's fast path reads it.
"""

from __future__ import annotations

import os

from orcha.cli import values as _values
from orcha.defaults import MAX_PRIORITY

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

#: What an option does when given: takes a value, is a flag (True), or counts.
VALUE, FLAG, COUNT = "value", "flag", "count"


class Option:
    """One option: ``names`` as typed (``-v``, ``--verbose``); ``dest`` the name of its
    value (default: the longest name without dashes, ``-`` as ``_``); ``action`` one of
    VALUE, FLAG, COUNT; ``type`` ``"str"``, ``"int"``, ``"float"`` or ``"dir"`` (an
    existing directory) with inclusive bounds ``min``/``max``; ``multiple`` to collect
    repeats into a tuple; ``check`` a function of the typed value that returns the value
    used or raises ValueError; ``into`` where the value goes: ``""`` (a parameter of the
    command), ``"globals"``, ``"schedule"``, ``"env"`` or ``"cwd"``; ``fast=False`` to
    leave every command line that gives it to click; ``eager`` to run before the others
    (``--version``)."""

    __slots__ = ("action", "check", "default", "dest", "eager", "fast", "help", "into",
                 "max", "metavar", "min", "multiple", "names", "show_default", "type")  # fmt: skip

    def __init__(
        self,
        *names: str,
        dest: str = "",
        action: str = VALUE,
        type: str = "str",
        min: float | None = None,
        max: float | None = None,
        default: Any = None,
        multiple: bool = False,
        check: Callable[[Any], Any] | None = None,
        into: str = "",
        metavar: str | None = None,
        help: str = "",
        show_default: bool = False,
        fast: bool = True,
        eager: bool = False,
    ) -> None:
        self.names = names
        self.dest = dest or max_name(names).lstrip("-").replace("-", "_")
        self.action, self.type, self.min, self.max = action, type, min, max
        self.default, self.multiple, self.check, self.into = default, multiple, check, into
        self.metavar, self.help, self.show_default = metavar, help, show_default
        self.fast, self.eager = fast, eager

    @property
    def hint(self) -> str:
        """How click names the option in a usage error: ``'--after-any'``."""
        return f"'{max_name(self.names)}'"

    def __repr__(self) -> str:
        return f"Option({'/'.join(self.names)})"


def max_name(names: Sequence[str]) -> str:
    return sorted(names, key=len)[-1]


class Argument:
    """A positional argument: ``dest`` its name; ``rest`` for one that takes all the
    remaining words (at least one, taken as they are: ``-- CMD [ARG]...``); ``optional``
    for one that may be left out (its value is then None). An optional argument before
    a ``rest`` one is given only before ``--``: ``orcha run [ID] -- CMD``, so that
    ``orcha run -- echo x`` runs ``echo x`` and ``orcha run echo x`` too."""

    __slots__ = ("dest", "metavar", "optional", "rest")

    def __init__(self, dest: str, metavar: str, rest: bool = False, optional: bool = False) -> None:
        self.dest, self.metavar, self.rest, self.optional = dest, metavar, rest, optional


def assign(arguments: Sequence[Argument], words: list[str], split: int | None) -> dict[str, Any]:
    """The values of ``arguments`` from the positional ``words`` (``split``: how many
    came before ``--``; None without one); ValueError saying what is wrong.

    Without a ``rest`` argument, the words fill the arguments in order. With one, the
    words after ``--`` (all of them without ``--``) are the rest, and those before fill
    the other arguments."""
    values: dict[str, Any] = {}
    rest = arguments[-1] if arguments and arguments[-1].rest else None
    if rest is not None:
        head = words[:split] if split is not None else []
        tail = words[split:] if split is not None else words
        if not tail:
            raise ValueError(f"Missing argument '{rest.metavar}'.")
        values[rest.dest] = tuple(tail)
        before = arguments[:-1]
    else:
        head, before = list(words), list(arguments)
    for argument in before:
        if head:
            values[argument.dest] = head.pop(0)
        elif argument.optional:
            values[argument.dest] = None
        else:
            raise ValueError(f"Missing argument '{argument.metavar}'.")
    if head:
        where = " before '--'" if rest is not None else ""
        raise ValueError(f"Got unexpected extra argument{where} ({' '.join(head)})")
    return values


def petition_id_of(values: dict[str, Any]) -> str | None:
    """The ID a command line gave (as its ID argument or with ``--id``), or None (the
    service names the petition); ValueError if it gave both, or a name a new petition
    may not take (see :func:`orcha.protocol.ids.check_name`)."""
    from orcha.protocol.ids import check_id, check_name

    given = values.get("petition_id")
    option = values.get("id_option")
    if given is not None and option is not None:
        raise ValueError("give the ID once: as the ID argument or with --id, not both")
    name = option if option is not None else given
    return None if name is None else check_name(check_id(name))


class Command:
    """A command that submits a petition, declared by the plugin that supplies it.

    ``params``: its own arguments and options in the order ``--help`` lists them; the
    petition options (:data:`PETITION_OPTIONS`, unless ``petition`` is false) and the
    global options follow. ``submission(values)`` turns the values (dest -> value,
    defaults filled in) into ``(kind, params)`` for the service, or raises ValueError
    for values the command refuses (all that the kind's own check would refuse: the fast
    path does not load the kind). ``module``: the module that declares it, importable
    without click, so that the fast path can find it by name (``module=__name__``).
    Its values have ``petition_id`` (None if left out) and may have ``id_option``
    (``--id``), ``priority`` and ``detach``: :func:`petition_id_of` gives the ID.
    """

    __slots__ = ("module", "name", "params", "petition", "submission")

    def __init__(
        self,
        name: str,
        *,
        module: str,
        params: Sequence[Option | Argument],
        submission: Callable[[dict[str, Any]], tuple[str, dict[str, Any]]],
        petition: bool = True,
    ) -> None:
        arguments = [p for p in params if isinstance(p, Argument)]
        if any(a.rest for a in arguments[:-1]):
            raise ValueError(f"command {name}: only the last argument may take the rest")
        self.name, self.module, self.params = name, module, tuple(params)
        self.submission, self.petition = submission, petition

    def options(self) -> list[Option]:
        """Every option the command accepts, its own first."""
        own = [p for p in self.params if isinstance(p, Option)]
        return own + list(PETITION_OPTIONS if self.petition else ()) + list(GLOBAL_OPTIONS)


GLOBAL_OPTIONS = (
    Option("--address", metavar="ADDR", into="globals",
           help="Service address: a socket path, or HOST:PORT for TCP (default: a socket "
           "in the user's runtime directory; env ORCHA_ADDRESS)."),
    Option("--key", metavar="KEY", into="globals",
           help="Authentication key (default: the key file in the user's state "
           "directory; env ORCHA_KEY)."),
    # The fast path reads the default configuration file only: another one is click's.
    Option("--config", metavar="PATH", into="globals", fast=False,
           help="Configuration file (default: config.yaml in the user's config "
           "directory; env ORCHA_CONFIG)."),
    Option("-v", "--verbose", action=COUNT, into="globals",
           help="Say on stderr what the client resolved: the address and where it came "
           "from, the key file, the configuration file; -vv also the time to connect "
           "and each operation called. For 'orcha serve': info logging, -vv debug."),
    Option("--color", metavar="WHEN", check=_values.color, into="globals",
           help="Colour the output: auto (on a terminal, unless NO_COLOR is set; "
           "FORCE_COLOR forces it), always or never."),
    Option("--version", action=FLAG, into="globals", eager=True, fast=False,
           help="Print orcha's version and exit."),
)  # fmt: skip

PETITION_OPTIONS = (
    Option("--cpus", type="int", min=1, metavar="N", into="schedule",
           help="CPU slots it occupies while running (default 1)."),
    Option("--mem", metavar="SIZE", check=_values.size, into="schedule",
           help="Memory it needs, e.g. 512M, 4G: it starts only when that much "
           "is available and not reserved by running petitions, and is stopped "
           "(exit 211) if its processes use more."),
    Option("--gpus", type="int", min=0, metavar="N", into="schedule",
           help="GPUs it gets to itself (CUDA_VISIBLE_DEVICES and ORCHA_GPUS)."),
    Option("--group", metavar="NAME", check=_values.group, into="schedule",
           help="Group whose own limit and pause apply (default 'default')."),
    Option("--on", metavar="HOST", check=_values.machine, into="schedule",
           help="Run it only there: a Dask worker's name, host or address ('orcha "
           "workers'), or 'local' for the service's own host."),
    Option("--after", metavar="ID[,ID]", multiple=True, check=_values.ids, into="schedule",
           help="Start after these succeed; if one fails or is cancelled, this "
           "fails too (exit 210). Repeatable."),
    Option("--after-any", metavar="ID[,ID]", multiple=True, check=_values.ids,
           into="schedule", help="Start after these end, however they end. Repeatable."),
    Option("--timeout", metavar="DURATION", check=_values.timeout, into="schedule",
           help="Stop an attempt that runs longer (e.g. 90s, 1h30m, 1:30:00, "
           "2-00:00:00): it fails with exit code 124."),
    Option("--retries", type="int", min=0, max=1000, metavar="N", into="schedule",
           help="Run again up to N times after a non-zero exit."),
    Option("--retry-delay", metavar="DURATION", check=_values.duration, into="schedule",
           help="Wait this long before each new attempt (default 0)."),
    Option("--notify", metavar="URL", multiple=True, check=_values.urls, into="schedule",
           help="POST its state changes as JSON to this URL. Repeatable."),
    Option("--env", metavar="NAME=VALUE", multiple=True, check=_values.environment,
           into="env", help="Set an environment variable. Repeatable."),
    Option("--cwd", type="dir", metavar="DIR", check=_values.absolute, into="cwd",
           help="Working directory (default: the current one)."),
    Option("--hold", action=FLAG, into="schedule",
           help="Queue it but start it only once released ('orcha release ID'); as "
           "pueue's --stashed and Slurm's --hold."),
    Option("--ordered", action=FLAG, into="schedule",
           help="Keep the order between its stdout and stderr in the log (logs, follow): "
           "each write is captured with a kernel timestamp. A single write larger than "
           "the system's socket buffer limit (net.core.wmem_max, doubled: 8 MiB "
           "usually) then fails in the petition, hence not the default; without it the "
           "two streams are kept in the order read (or use 2>&1). Local petitions only: one "
           "that runs on a Dask worker keeps the order its worker read them in."),
    Option("--delay", metavar="DURATION", check=_values.duration, into="schedule",
           help="Start it no sooner than DURATION from now (e.g. 90s, 1h30m, 2:00:00)."),
    Option("--at", metavar="TIME", dest="begin", check=_values.start_time, into="schedule",
           help="Start it no sooner than TIME: HH:MM[:SS] (the next one: a time already "
           "past today means tomorrow) or ISO 8601 (2026-12-10T09:00, with an optional "
           "UTC offset), in local time."),
)  # fmt: skip

#: Options most commands that submit a petition have.
ID = Option(
    "--id",
    dest="id_option",
    metavar="ID",
    help="The petition's ID (instead of the ID argument; the way to give one that "
    "starts with '-'). Without any, the service numbers it. A name may not be all "
    "digits nor end in '~N': those name records.",
)
PRIORITY = Option(
    "--priority",
    type="int",
    min=-MAX_PRIORITY,
    max=MAX_PRIORITY,
    metavar="P",
    help="Lower runs first; equal priorities run in arrival order (default 0).",
)
JSON = Option(
    "--json",
    dest="as_json",
    action=FLAG,
    default=False,
    help='With --detach: print {"id", "state"} as JSON (one line when piped).',
)
DETACH = Option(
    "--detach",
    action=FLAG,
    default=False,
    help="Print the ID once queued and return; it runs on its own.",
)
NO_STDIN = Option(
    "--no-stdin",
    action=FLAG,
    default=False,
    help="Do not send this command's stdin to the petition (it reads /dev/null). By "
    "default a piped or redirected stdin is sent; a terminal never is, nor with --detach.",
)


def typed(option: Option, text: str) -> Any:
    """``text`` as the option's type, within its bounds; ValueError otherwise. (What
    click's INT, FLOAT, IntRange, FloatRange and Path(exists, not a file) accept.)"""
    if option.type == "dir":
        import stat

        try:
            mode = os.stat(text).st_mode
        except (OSError, ValueError) as e:
            raise ValueError(f"{text!r} does not exist") from e
        if stat.S_ISREG(mode) or not os.access(text, os.R_OK):
            raise ValueError(f"{text!r} is not a readable directory")
        return text
    if option.type not in ("int", "float"):
        return text
    number = int(text) if option.type == "int" else float(text)
    if (option.min is not None and number < option.min) or (
        option.max is not None and number > option.max
    ):
        raise ValueError(f"{number} is out of range")
    return number


def convert(option: Option, given: Any) -> Any:
    """The value of an option given on the command line (the raw texts of a VALUE
    option, the count of a COUNT one), checked; ValueError if click would refuse it."""
    if option.action == FLAG:
        return True
    if option.action == COUNT:
        return given
    items = [typed(option, text) for text in given]
    value = tuple(items) if option.multiple else items[0]
    return option.check(value) if option.check is not None else value


def check_start(schedule: dict[str, Any]) -> dict[str, Any]:
    """``schedule`` (the schedule fields the command line gave); ValueError if it gives
    both ``--delay`` and ``--at``: each says when to start, and one would be dropped."""
    if schedule.get("delay") is not None and schedule.get("begin") is not None:
        raise ValueError(
            "--delay and --at both say when to start: give one (--delay counts from now, "
            "--at names a time)"
        )
    return schedule


def petition_request(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], str | None]:
    """(schedule fields, environment, working directory) from the petition options in
    ``values`` (only those given); ValueError as :func:`check_start` says."""
    schedule: dict[str, Any] = {}
    env: dict[str, str] = {}
    cwd: str | None = None
    for option in PETITION_OPTIONS:
        if option.dest not in values:
            continue
        value = values[option.dest]
        if option.into == "env":
            env.update(value)
        elif option.into == "cwd":
            cwd = value
        else:
            schedule[option.dest] = value
    return check_start(schedule), env, cwd


class _Reader:
    """Reads option words into ``given`` (dest -> raw texts, count or True)."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.given: dict[str, Any] = {}
        self.options: dict[str, Option] = {}

    def use(self, options: Sequence[Option]) -> None:
        self.options = {name: option for option in options for name in option.names}

    def _note(self, option: Option, text: str | None) -> bool:
        if not option.fast:
            return False
        seen = self.given.get(option.dest)
        if option.action == COUNT:
            self.given[option.dest] = (seen or 0) + 1
        elif seen is not None and not option.multiple:
            return False  # repeated: which one wins is click's to say
        elif option.action == FLAG:
            self.given[option.dest] = True
        else:
            self.given[option.dest] = [*(seen or []), text]
        return True

    def option(self, i: int) -> int | None:
        """Read the option at ``args[i]``; the index after it, or None to give up."""
        arg = self.args[i]
        if arg[:2] == "--":
            name, eq, text = arg.partition("=")
            option = self.options.get(name)
            if option is None:
                return None
            if option.action != VALUE:
                return i + 1 if not eq and self._note(option, None) else None
            if not eq:
                if i + 1 >= len(self.args):
                    return None
                i, text = i + 1, self.args[i + 1]
            return i + 1 if self._note(option, text) else None
        for char in arg[1:]:  # -vv: a cluster of short flags
            option = self.options.get("-" + char)
            if option is None or option.action == VALUE or not self._note(option, None):
                return None
        return i + 1


class Parsed:
    """A command line the fast path may run: the command and its values (dest ->
    value; the command's own options with their defaults, others only if given)."""

    __slots__ = ("command", "values")

    def __init__(self, command: Command, values: dict[str, Any]) -> None:
        self.command, self.values = command, values


def parse(args: list[str], find: Callable[[str], Command | None]) -> Parsed | None:
    """Read ``orcha [GLOBAL]... NAME ...`` where ``find(NAME)`` gives the command's
    declaration; None unless click would accept the line and mean the same by it."""
    reader = _Reader(args)
    reader.use(GLOBAL_OPTIONS)
    i, n = 0, len(args)
    while i < n and args[i][:1] == "-" and args[i] not in ("-", "--"):
        after = reader.option(i)
        if after is None:
            return None
        i = after
    command = find(args[i]) if i < n and args[i][:1] != "-" else None
    if command is None:
        return None
    options = command.options()
    reader.use(options)
    words: list[str] = []
    split: int | None = None  # how many words came before '--'
    i += 1
    while i < n:
        arg = args[i]
        if arg == "--":
            split = len(words)
            words += args[i + 1 :]
            break
        if arg[:1] == "-" and arg != "-":
            after = reader.option(i)
            if after is None:
                return None
            i = after
        else:
            words.append(arg)
            i += 1
    if any(text == "--" for given in reader.given.values() if isinstance(given, list)
           for text in given):  # fmt: skip
        return None  # '--' as an option's value: where the command starts is click's
    try:
        values = assign([p for p in command.params if isinstance(p, Argument)], words, split)
    except ValueError:
        return None  # click explains
    try:
        for option in options:
            if option.dest in reader.given:
                values[option.dest] = convert(option, reader.given[option.dest])
            elif option.into == "" and option.action != COUNT:
                values[option.dest] = option.default
    except ValueError:
        return None
    return Parsed(command, values)
