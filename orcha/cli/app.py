"""The click application: core commands, plugin commands, global options."""

from __future__ import annotations

import re
import sys
from typing import Any

import click

from orcha.cli.build import Refused
from orcha.cli.options import global_options, globals_of

#: The core commands: name -> (module, attribute). Each module is imported when one of
#: its commands is needed (click's lazy-group pattern): importing them all cost every
#: click command about 8 ms of start-up.
CORE_COMMANDS: dict[str, tuple[str, str]] = {
    **{name: ("orcha.cli.jobs", name)
       for name in ("status", "cancel", "clean", "wait", "logs", "follow", "watch")},
    **{name: ("orcha.cli.admission", name) for name in ("group", "pause", "resume")},
    **{name: ("orcha.cli.changes", name) for name in ("release", "edit", "restart")},
    "serve": ("orcha.cli.serve", "serve"),
    "ls": ("orcha.cli.ls", "ls"),
    "describe": ("orcha.cli.describe", "describe"),
    "health": ("orcha.cli.health", "health"),
    "shutdown": ("orcha.cli.shutdown", "shutdown"),
    "config": ("orcha.cli.config_command", "config"),
    "state": ("orcha.cli.state", "state"),
    "kinds": ("orcha.cli.kinds", "kinds"),
    "completion": ("orcha.cli.completion", "completion"),
    "top": ("orcha.cli.top", "top"),
    "workers": ("orcha.cli.workers", "workers"),
}  # fmt: skip


class OrchaGroup(click.Group):
    """Core commands, loaded when needed, plus the commands of plugins, discovered only
    when needed. ``commands`` (click's mapping, read by sphinx-click and tests) holds
    every core command: reading it loads them all; orcha itself looks up one at a time."""

    _plugins: list[Any] | None = None
    _loaded: dict[str, click.Command]

    @property  # type: ignore[override]
    def commands(self) -> dict[str, click.Command]:
        for name in CORE_COMMANDS:
            self._core(name)
        return self._loaded

    @commands.setter
    def commands(self, value: dict[str, click.Command]) -> None:
        self._loaded = value

    def _core(self, name: str) -> click.Command | None:
        """The command ``name`` as added, or the core command ``name``, loaded now."""
        if name not in self._loaded and name in CORE_COMMANDS:
            import importlib

            module, attribute = CORE_COMMANDS[name]
            self._loaded[name] = getattr(importlib.import_module(module), attribute)
        return self._loaded.get(name)

    def plugins(self) -> list[Any]:
        if OrchaGroup._plugins is None:
            from orcha.cli import fast_commands
            from orcha.cli.bridge import discover

            disabled = fast_commands.disabled_plugins(_config())
            note_key = fast_commands.key(disabled)  # before discovery extends sys.path
            OrchaGroup._plugins = discover(disabled)
            _note_fast_commands(note_key, OrchaGroup._plugins)
            from orcha.cli import seen_commands

            seen_commands.remember(OrchaGroup._plugins)
        return OrchaGroup._plugins

    def _plugin_commands(self) -> dict[str, click.Command]:
        found: dict[str, click.Command] = {}
        for entry in self.plugins():
            found.update(entry.commands)
            for alias, target in entry.aliases.items():
                found[alias] = entry.commands[target]
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        plugin_names = [
            name
            for entry in self.plugins()
            for name in entry.commands  # no aliases
        ]
        return sorted({*self._loaded, *CORE_COMMANDS}) + sorted(plugin_names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self._core(cmd_name)
        if command is not None:
            return command
        return self._plugin_commands().get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        unknown = name and not name.startswith("-") and not ctx.resilient_parsing
        if unknown and self.get_command(ctx, name) is None:
            raise Refused(self._unknown(ctx, name), ctx)
        return super().resolve_command(ctx, args)

    def _unknown(self, ctx: click.Context, name: str) -> str:
        """What to say of a command no one provides: the names it may be a slip for, or
        the disabled plugins that may provide it. They are not imported to find out: a
        disabled plugin has the commands it had when last loaded (orcha.cli.seen_commands),
        and one never seen loaded may have any."""
        import difflib

        from orcha.cli import seen_commands

        if name == "help":
            return "no command 'help'; see 'orcha --help', or 'orcha COMMAND --help'"
        seen = seen_commands.read()
        off: dict[str, str] = {}  # a disabled plugin's command -> its plugin
        unseen: list[str] = []  # disabled plugins never seen loaded
        for entry in self.plugins():
            if entry.error == "disabled":
                had = seen.get(seen_commands.key(entry))
                if had is None:
                    unseen.append(entry.name)
                for command in had or ():
                    off.setdefault(command, entry.name)
        if name in off:
            return (
                f"no command {name!r}; disabled plugins may provide it "
                f"({', '.join(sorted({off[name], *unseen}))}; see 'orcha ls')"
            )
        known = {*self.list_commands(ctx), *self._plugin_commands(), *off}
        close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
        if close:
            said = f"no command {name!r}; did you mean {_either(close)}?"
            disabled = [c for c in close if c in off]
            if not disabled:
                return said
            owners = sorted({off[c] for c in disabled})
            plugins = f"plugin{'s' if len(owners) > 1 else ''} {', '.join(owners)}"
            return f"{said} ({_either(disabled)}: disabled with {plugins}; see 'orcha ls')"
        if unseen:
            return (
                f"no command {name!r}; disabled plugins may provide it "
                f"({', '.join(sorted(unseen))}; see 'orcha ls')"
            )
        return f"no command {name!r} (see 'orcha --help' for commands, 'orcha ls' for plugins)"


def _either(names: list[str]) -> str:
    """``'a'``, ``'a' or 'b'``, ``'a', 'b' or 'c'``."""
    named = [repr(n) for n in names]
    return ", ".join(named[:-1]) + " or " + named[-1] if len(named) > 1 else named[0]


def _config() -> Any:
    """The configuration file (``--config``, ``ORCHA_CONFIG`` or the default one) if
    there is one. An invalid file counts as none here (it disables no plugin): 'orcha
    config validate' and 'orcha serve' report it."""
    from orcha import config
    from orcha.errors import ConfigError

    ctx = click.get_current_context(silent=True)
    explicit = globals_of(ctx).config if ctx is not None else None
    path, named = config.config_path(explicit)
    if not named:
        import os

        if not os.path.exists(path):
            return None
    try:
        return config.load(explicit)
    except ConfigError:
        return None


def _note_fast_commands(note_key: str, plugins: list[Any]) -> None:
    """Note, for the fast path, the commands built from a declaration (orcha.cli.grammar)."""
    from orcha.cli import fast_commands

    entries = []
    for entry in plugins:
        names = {**{name: name for name in entry.commands}, **entry.aliases}
        for name, target in names.items():
            spec = getattr(entry.commands[target], "orcha_spec", None)
            if spec is not None:
                entries.append((name, entry.name, spec.module, spec.name))
    fast_commands.write(note_key, entries)


@click.group(cls=OrchaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@global_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """orcha: a local orchestrator for heavy jobs on a shared host.

    Start the service with 'orcha serve', then send it petitions from any shell:
    'orcha send ID --counter N' or 'orcha run ID -- CMD ARGS'. 'orcha ls' lists the
    installed plugins.
    """
    globals_of(ctx)


def bad_value(error: click.BadParameter | Refused) -> str:
    """One line for a value the user gave and click refused (``--priority 10**30``), or
    that orcha refused (:class:`~orcha.cli.build.Refused`): what is wrong and where the
    help is; not the usage block, which says nothing more."""
    path = error.ctx.command_path if error.ctx is not None else "orcha"
    text = " ".join(error.format_message().split())
    text = text[:1].lower() + text[1:]
    # click's range and type words, said plainly ("between A and B", "an integer").
    text = re.sub(r"is not in the range (\S+)<=x<=(\S+?)\.?$", r"is not between \1 and \2", text)
    text = re.sub(r"is not in the range x>=(\S+?)\.?$", r"is less than \1", text)
    text = re.sub(r"is not in the range x<=(\S+?)\.?$", r"is more than \1", text)
    text = text.replace("valid integer range", "valid integer")
    text = text.replace("valid float range", "valid number")
    text = text.rstrip(".")
    # A message that already says where to look needs no pointer to the help.
    return f"{path}: {text}" if "see '" in text else f"{path}: {text} (see '{path} --help')"


def usage_line(error: click.UsageError, args: list[str]) -> str:
    """One line for a command line of the wrong shape (an unknown option, a missing or
    an extra argument, an option without its value), as :func:`bad_value` says a refused
    value: what is wrong, what click suggests, where the help is; not click's usage
    block (``orcha restart: no such option '--detach' (did you mean '--delay'?); see
    'orcha restart --help'``)."""
    path = error.ctx.command_path if error.ctx is not None else _command_path(args)
    suggested = sorted(getattr(error, "possibilities", None) or ())
    # An unknown option or command: click's message without its own "Did you mean".
    text = error.message if hasattr(error, "possibilities") else error.format_message()
    text = " ".join(text.split()).rstrip(".")
    text = text[:1].lower() + text[1:]
    text = re.sub(
        r"^got unexpected extra (arguments?) \((.*)\)$", r"unexpected extra \1 '\2'", text
    )
    if suggested:
        return f"{path}: {text} (did you mean {_either(suggested)}?); see '{path} --help'"
    return f"{path}: {text} (see '{path} --help')"


def _command_path(args: list[str]) -> str:
    """The path of the command ``args`` run (``orcha config validate``), for an error
    click raised before it made that command's context (an option without its value):
    ``args`` read again leniently, as click's shell completion reads them."""
    path = "orcha"
    try:
        ctx = cli.make_context("orcha", list(args), resilient_parsing=True)
        while isinstance(ctx.command, click.Group):
            protected = getattr(ctx, "_protected_args", None)  # click < 8.2: protected_args
            rest = [*(ctx.protected_args if protected is None else protected), *ctx.args]
            name, command, rest = ctx.command.resolve_command(ctx, rest) if rest else ("", None, [])
            if command is None or name is None:
                break
            path = f"{ctx.command_path} {name}"
            ctx = command.make_context(name, rest, parent=ctx, resilient_parsing=True)
    except Exception:
        pass  # what was read so far
    return path


def run(args: list[str]) -> int:
    """Run the click application on ``args``; return the exit code (never raises)."""
    from orcha.cli.report import report

    stdout = sys.stdout
    try:
        rv = cli.main(args=args, prog_name="orcha", standalone_mode=False)
    except click.exceptions.Abort:
        return report(KeyboardInterrupt(), args)
    except click.UsageError as e:
        if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):
            e.show()  # 'orcha config' alone: its help (click >= 8.2; before, it exits 0)
        elif isinstance(e, Refused) or (
            isinstance(e, click.BadParameter) and not isinstance(e, click.MissingParameter)
        ):
            click.echo(bad_value(e), err=True)
        else:
            click.echo(usage_line(e, args), err=True)
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except SystemExit as e:
        if e.code == 1 and sys.stdout is not stdout:
            # click turns a reader gone (EPIPE) into exit 1, and only then replaces
            # stdout (with a wrapper that ignores the last flush): exit as the plain
            # forms do (orcha.cli.report), 128 + SIGPIPE, quietly.
            return report(BrokenPipeError(32, "Broken pipe"), args)
        return report(e, args)
    except BaseException as e:
        return report(e, args)
    return rv if isinstance(rv, int) else 0
