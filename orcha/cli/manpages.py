"""Man pages, generated from the click commands: ``orcha(1)`` and one per command.

``python -m orcha.cli.manpages --write`` regenerates the pages shipped with orcha
(``man/man1/`` in the source tree, installed as ``share/man/man1``) from orcha's own
commands and those of its own plugins (``run``, ``send``), the same set the CLI
reference in the docs shows; a test fails when they are not up to date, so run it after
changing a command. ``python -m orcha.cli.manpages --out DIR`` writes the pages of every
command installed here, third-party plugins' included (not those disabled by
``ORCHA_DISABLE_PLUGINS`` or the configuration file), into ``DIR/man1`` (then ``man -M
DIR orcha-mycommand``).

A page is named after its command path (``orcha-config-reload.1``); a group's page lists
its subcommands. Pages hold no date or version, so regenerating them changes them only
when a command changed. Plain roff (the ``man`` macros): ``man -l PAGE`` shows one.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from collections.abc import Iterator

import click

#: Where the shipped pages live in the source tree, relative to its root.
SHIPPED = os.path.join("man", "man1")

#: Options every command takes (orcha.cli.grammar.GLOBAL_OPTIONS, and --help).
_GLOBAL = frozenset({"address", "key", "config", "verbose", "version", "help"})

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


Entry = tuple[list[str], click.Command, click.Context]


def commands(embedded_only: bool = True) -> list[Entry]:
    """Every command as (path, command, its context), the root ``orcha`` first, each
    group before its subcommands. ``embedded_only``: orcha's own plugins only (the
    shipped set), not whatever else is installed. The CLI's plugins are as before after.

    The plugins are found as the CLI finds them (argparse plugins' commands bridged, so
    their aliases have a command to name); every installed command means every one the
    CLI offers here, so plugins disabled (ORCHA_DISABLE_PLUGINS, the configuration file)
    are left out, except from the shipped set, which is the same everywhere."""
    from orcha.cli import fast_commands
    from orcha.cli.app import OrchaGroup, _config, cli
    from orcha.cli.bridge import discover

    before = OrchaGroup._plugins
    if embedded_only:
        OrchaGroup._plugins = [p for p in discover() if p.embedded]
    else:
        OrchaGroup._plugins = discover(fast_commands.disabled_plugins(_config()))
    try:
        root = click.Context(cli, info_name="orcha", **cli.context_settings)  # -h too
        return list(_walk(cli, root, ["orcha"]))
    finally:
        OrchaGroup._plugins = before


def _walk(command: click.Command, ctx: click.Context, path: list[str]) -> Iterator[Entry]:
    yield path, command, ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, click.Context(sub, info_name=name, parent=ctx), [*path, name])


def page_name(path: list[str]) -> str:
    """``orcha-config-reload.1`` for ``["orcha", "config", "reload"]``."""
    return "-".join(path) + ".1"


def _escape(text: str) -> str:
    """Text safe in roff: backslashes kept, every ``-`` an ASCII hyphen-minus (so options
    copied from the page work), no line taken for a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = [("\\&" + line) if line[:1] in (".", "'") else line for line in text.split("\n")]
    return "\n".join(lines)


def _paragraphs(help_text: str) -> list[str]:
    """The help text as roff paragraphs; click's ``\\b`` blocks stay as written."""
    out: list[str] = []
    for block in inspect.cleandoc(help_text).split("\n\n"):
        if block.startswith("\b\n"):
            out.append(".PP\n.nf\n" + _escape(block[2:]) + "\n.fi")
        else:
            out.append(".PP\n" + _escape(" ".join(block.split())))
    return out


def render(path: list[str], command: click.Command, ctx: click.Context) -> str:
    """The man page of ``command`` (at ``path``) as roff text."""
    title = "-".join(path)
    short = command.get_short_help_str(limit=200).rstrip(".").removeprefix("orcha: ")
    lines = [
        f'.TH "{title.upper()}" "1" "" "orcha" "orcha manual"',
        # No hyphenation (a word split at a line's end gets a Unicode hyphen, and
        # options must stay copyable) and no justification.
        ".nh",
        ".ad l",
        ".SH NAME",
        f"{_escape(title)} \\- {_escape(short)}",
        ".SH SYNOPSIS",
        f".B {_escape(' '.join(path))}",
        _escape(" ".join(command.collect_usage_pieces(ctx))),
    ]
    if command.help:
        lines.append(".SH DESCRIPTION")
        lines += _paragraphs(command.help)
    # The global options are described once, on orcha(1).
    own = [
        p for p in command.get_params(ctx)
        if len(path) == 1 or not (p.name in _GLOBAL or "--help" in p.opts)
    ]  # fmt: skip
    records = []
    for param in own:
        record = param.get_help_record(ctx)
        if record and (record[1] or not isinstance(param, click.Argument)):
            records.append(record)
    if records or len(path) > 1:
        lines.append(".SH OPTIONS")
        for opts, help_text in records:
            lines += [".TP", f".B {_escape(opts)}", _escape(" ".join(help_text.split()))]
    if len(path) > 1:
        lines += [".PP", "The global options \\-\\-address, \\-\\-key, \\-\\-config, "
                  "\\-v and \\-\\-help work here too: see", ".BR orcha (1)."]  # fmt: skip
    see_also: list[str] = []
    if isinstance(command, click.Group):
        subs = [(n, command.get_command(ctx, n)) for n in command.list_commands(ctx)]
        shown = [(n, c) for n, c in subs if c is not None and not c.hidden]
        if shown:
            lines.append(".SH COMMANDS")
            for name, sub in shown:
                ref = "-".join([*path, name])
                lines += [".TP", f".BR {_escape(ref)} (1)",
                          _escape(sub.get_short_help_str(limit=200))]  # fmt: skip
                see_also.append(ref)
    if len(path) == 1:
        lines += _root_sections()
    if len(path) > 1:
        see_also.insert(0, "-".join(path[:-1]))
    if see_also:
        lines.append(".SH SEE ALSO")
        lines.append(",\n".join(f".BR {_escape(ref)} (1)" for ref in see_also))
    return "\n".join(lines) + "\n"


#: The environment orcha(1) describes (the docs' configuration page has them all).
_ENVIRONMENT = (
    ("ORCHA_ADDRESS", "the service's address, as --address"),
    ("ORCHA_KEY", "the authentication key, as --key"),
    ("ORCHA_CONFIG", "the configuration file, as --config"),
    ("ORCHA_RUNTIME_DIR", "the folder of the default socket"),
    ("ORCHA_STATE_DIR", "the folder of the key file, the petition database and the logs"),
    ("ORCHA_PLUGIN_PATH", "folders whose modules with a 'plugin' attribute are plugins"),
    ("ORCHA_DISABLE_PLUGINS", "plugin names, separated by commas, never loaded"),
)


#: The files orcha(1) names (defaults; the variables above move them).
_FILES = (
    ("~/.config/orcha/config.yaml", "the configuration file ($XDG_CONFIG_HOME/orcha)"),
    ("$XDG_RUNTIME_DIR/orcha/orcha.sock", "the service's socket (directory mode 0700)"),
    ("~/.local/state/orcha/key", "the authentication key (mode 0600; $XDG_STATE_HOME/orcha)"),
    ("~/.local/state/orcha/orcha.db", "the petition records"),
    ("~/.local/state/orcha/logs/", "the petitions' output logs"),
)


def _root_sections() -> list[str]:
    """ENVIRONMENT, FILES and EXIT STATUS, on orcha(1) only."""
    from orcha.errors import EXIT_CODE_MEANINGS, RUN_CODE_MEANINGS

    lines = [".SH ENVIRONMENT"]
    for name, meaning in _ENVIRONMENT:
        lines += [".TP", f".B {name}", _escape(meaning)]
    lines.append(".SH FILES")
    for name, meaning in _FILES:
        lines += [".TP", f".I {_escape(name)}", _escape(meaning)]
    lines.append(".SH EXIT STATUS")
    for code, meaning in EXIT_CODE_MEANINGS.items():
        lines += [".TP", f".B {int(code)}", _escape(meaning)]
        if code == 2:  # then what 'orcha run' passes through, as the README's table
            for run_code, run_meaning in RUN_CODE_MEANINGS.items():
                lines += [".TP", f".B {_escape(run_code)}", _escape(run_meaning)]
    return lines


def pages(embedded_only: bool = True) -> dict[str, str]:
    """Every page by file name."""
    return {page_name(p): render(p, c, ctx) for p, c, ctx in commands(embedded_only)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orcha.cli.manpages", description=__doc__.split("\n\n")[0]
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--write",
        action="store_true",
        help=f"regenerate the shipped pages in {SHIPPED} (orcha's own commands)",
    )
    what.add_argument(
        "--check", action="store_true", help="exit 1 if the shipped pages are not up to date"
    )
    what.add_argument(
        "--out", metavar="DIR", help="write the pages of every installed command into DIR/man1"
    )
    args = parser.parse_args(argv)  # fmt: skip
    if args.out:
        folder = os.path.join(args.out, "man1")
        wanted = pages(embedded_only=False)
    else:
        if not os.path.exists(os.path.join(_ROOT, "pyproject.toml")):
            parser.error("--write and --check work in orcha's source tree; use --out DIR")
        folder = os.path.join(_ROOT, SHIPPED)
        wanted = pages()
    if args.check:
        stale = sorted(n for n, text in wanted.items() if _read(folder, n) != text)
        extra = sorted(set(os.listdir(folder)) - set(wanted)) if os.path.isdir(folder) else []
        for name in stale + extra:
            print(f"{os.path.join(folder, name)}: not up to date", file=sys.stderr)
        if stale or extra:
            print("run 'python -m orcha.cli.manpages --write'", file=sys.stderr)
            return 1
        return 0
    os.makedirs(folder, exist_ok=True)
    if args.write:
        for name in set(os.listdir(folder)) - set(wanted):
            if name.endswith(".1"):
                os.unlink(os.path.join(folder, name))  # a command that no longer exists
    for name, text in wanted.items():
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            f.write(text)
    print(f"wrote {len(wanted)} pages to {folder}", file=sys.stderr)
    return 0


def _read(folder: str, name: str) -> str | None:
    try:
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
