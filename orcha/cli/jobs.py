"""Job control from any shell: ``status``, ``cancel``, ``clean``."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable
from typing import Any

import click

from orcha.cli import bulk, status_text, status_view
from orcha.cli.build import Refused
from orcha.cli.completion import petition_ids
from orcha.cli.connect import client
from orcha.cli.options import global_options
from orcha.cli.output import json_option, print_json
from orcha.cli.tables import printable
from orcha.defaults import STATUS_ENDED_SHOWN, STATUS_QUEUED_SHOWN
from orcha.errors import ExitCode, NoPetitionError, PetitionError
from orcha.states import FINISHED, State
from orcha.text import quoted
from orcha.units import parse_duration

_STATES = [s.value for s in State]


def _echo(text: str, err: bool) -> None:
    """Print a line of status's text with click (see :func:`orcha.cli.status_text.echo`).
    color=True: click would strip the codes off a pipe; use_color decided already."""
    click.echo(text, err=err, color=True)


@click.command("status")
@click.argument("ids", nargs=-1, metavar="[ID]...", shell_complete=petition_ids)
@click.option("--state", "states", multiple=True, metavar="STATE[,STATE]",
              callback=status_view.states_option,
              help=f"Only petitions in these states ({', '.join(_STATES)}; any case). "
              "Repeatable.")  # fmt: skip
@click.option("--group", "groups", multiple=True, metavar="NAME[,NAME]",
              callback=status_view.groups_option,
              help="Only petitions of these groups. Repeatable.")  # fmt: skip
@click.option("--last", type=click.IntRange(min=0), metavar="N",
              help="Only the N petitions submitted last (of those the other options "
              "keep), whatever their state.")  # fmt: skip
@click.option("--sort", type=click.Choice(status_view.SORT_FIELDS), default="submitted",
              show_default=True,
              help="Order of the table: times oldest first (not yet: last), priority "
              "lowest first, state running, queued, then failed, cancelled, interrupted, "
              "succeeded; ties in order of submission, child petitions under their "
              "parent.")  # fmt: skip
@click.option("--all", "everything", is_flag=True,
              help=f"Every petition the service keeps, not only the first "
              f"{STATUS_QUEUED_SHOWN} queued and the last {STATUS_ENDED_SHOWN} ended.")  # fmt: skip
@json_option
@global_options
@click.pass_context
def status(
    ctx: click.Context, ids: tuple[str, ...], states: list[str], groups: list[str],
    last: int | None, sort: str, everything: bool, as_json: bool,
) -> int:  # fmt: skip
    """Show petitions: queued, running and ended, with what each runs and why it waits.

    Without IDs: the running petitions, the first 100 queued and the last 20 ended ones
    (--all for every one; --json lists every one unless --last is given). With one ID: that
    petition in detail (its command, directory, requests, times). Child petitions
    (submitted by a running petition's kind) are shown under their parent.
    """
    limited = not (ids or everything or as_json or last is not None)
    if as_json and not ids and last is None:  # every record: in pages, never whole
        with client(ctx) as service:
            tail = {"missing": [], "hidden": 0}
            status_view.print_json_listing(service, states, groups, tail)
        return 0
    with client(ctx) as service:
        answer = service.status_report(
            ids, states, groups, last, STATUS_ENDED_SHOWN if limited else None,
            STATUS_QUEUED_SHOWN if limited else None,
        )  # fmt: skip
    if not as_json:
        status_text.show(answer, ids, sort, _echo)
        return 0
    rows, missing = answer["petitions"], answer["missing"]
    arrays = {"arrays": answer["arrays"]} if answer.get("arrays") else {}
    print_json({"petitions": rows, "missing": missing, "hidden": answer.get("hidden", 0),
                **arrays})  # fmt: skip
    if missing:
        raise NoPetitionError(
            f"no petition has ID {', '.join(map(quoted, missing))}; see 'orcha status'"
        )
    return 0


@click.command("cancel")
@click.argument("ids", nargs=-1, metavar="[ID]...", shell_complete=petition_ids)
@click.option("--group", "groups", multiple=True, metavar="NAME[,NAME]",
              callback=status_view.groups_option,
              help="Every queued or running petition of these groups. Repeatable.")  # fmt: skip
@click.option("--state", "states", multiple=True, metavar="STATE[,STATE]",
              callback=status_view.states_among("QUEUED", "RUNNING"),
              help="Every petition in these states (QUEUED, RUNNING; any case; with "
              "--group, of those groups). Repeatable.")  # fmt: skip
@click.option("--all", "everything", is_flag=True,
              help="Every queued and running petition (no confirmation is asked; it "
              "says how many it cancelled).")  # fmt: skip
@click.option("--signal", "sig", metavar="SIG", callback=bulk.signal_option,
              help="Send SIG (USR1, SIGUSR1 or 10) to their running process trees "
              "instead of cancelling them (with a selection, to the running ones).")  # fmt: skip
@click.option("--force", is_flag=True, help="SIGKILL the processes at once (no grace period).")
@json_option
@global_options
@click.pass_context
def cancel(
    ctx: click.Context, ids: tuple[str, ...], groups: tuple[str, ...], states: tuple[str, ...],
    everything: bool, sig: int | None, force: bool, as_json: bool,
) -> int:  # fmt: skip
    """Cancel queued or running petitions (their whole process trees are stopped): by
    ID (an array's name: its members not ended yet), --group, --state or --all. It
    returns once the running ones have ended (their IDs free again), after the grace
    period at most.

    Exit 0 when each was cancelled (signalled); 209 if one named could not be (one
    line each: unknown, or already ended; past ten, how many more). More than ten
    cancelled (an array's members) are counted on one line.
    """
    selects = bool(groups or states or everything)
    if not (ids or selects):
        raise Refused("say what to cancel: IDs, --group, --state or --all")
    if sig is not None and force:
        raise Refused("--force goes with cancelling, not with --signal")
    if sig is not None and selects and not states:
        states = ("RUNNING",)  # a signal goes to running trees: queued ones are not named
    with client(ctx) as service:
        began = time.monotonic()
        results = service.cancel_each(ids, force, groups=groups, states=states,
                                      everything=everything, signal=sig)  # fmt: skip
        took = time.monotonic() - began
        gave_up = bulk.abandoned(service, results, took) if sig is None else set()
    if as_json:  # with the IDs whose action ignored the cancel (the text says so too)
        print_json({"results": results, "abandoned": [i for i in results if i in gave_up]})
    return bulk.report_cancel(results, selects, sig, quiet=as_json, abandoned=gave_up)


_ENDED_STATES = [str(s) for s in State if s in FINISHED]  # in order: help text is stable


@click.command("clean")
@click.argument("ids", nargs=-1, metavar="[ID]...", shell_complete=petition_ids)
@click.option("--state", "states", multiple=True, metavar="STATE[,STATE]",
              callback=status_view.states_among(*_ENDED_STATES),
              help=f"Only petitions that ended in these states ({', '.join(_ENDED_STATES)}; "
              "any case). Repeatable.")  # fmt: skip
@click.option("--group", "groups", multiple=True, metavar="NAME[,NAME]",
              callback=status_view.groups_option,
              help="Only petitions of these groups. Repeatable.")  # fmt: skip
@click.option(
    "--older-than",
    metavar="DURATION",
    help="Only petitions that ended more than DURATION ago (90s, 15m, 1h30m, 7d, 2-12).",
)
@json_option
@global_options
@click.pass_context
def clean(
    ctx: click.Context, ids: tuple[str, ...], states: tuple[str, ...], groups: tuple[str, ...],
    older_than: str | None, as_json: bool,
) -> int:  # fmt: skip
    """Forget ended petitions: drop their records and output logs (those given by ID,
    an array's name standing for its members; or all that the options keep).

    Exit 0; 209 if an ID given could not be cleaned (one line each: unknown, or still
    queued or running).
    """
    seconds = None
    if older_than is not None:
        try:
            seconds = parse_duration(older_than)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'--older-than'") from e
    with client(ctx) as service:
        answer = service.clean_each(ids, states=states, groups=groups, older_than=seconds)
    if as_json:
        print_json({"removed": answer["removed"], "results": answer["results"]})
    else:
        click.echo(f"orcha: removed {answer['removed']} ended petition(s)", err=True)
    for reason in answer["results"].values():
        click.echo(f"orcha: {reason}; not cleaned", err=True)
    return int(ExitCode.NO_PETITION) if answer["results"] else 0


def _write(fd: int, data: bytes | memoryview) -> None:
    import os

    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@click.command("wait")
@click.argument("ids", nargs=-1, metavar="[ID]...", shell_complete=petition_ids)
@click.option("--group", "groups", multiple=True, metavar="NAME[,NAME]",
              callback=status_view.groups_option,
              help="Every petition of these groups queued or running now. Repeatable.")  # fmt: skip
@click.option("--all", "everything", is_flag=True,
              help="Every petition queued or running now.")  # fmt: skip
@click.option("--timeout", metavar="DURATION",
              help="Give up after DURATION (90s, 15m): exit 124, naming those that have "
              "not ended.")  # fmt: skip
@click.option("--status", "want", type=click.Choice(["any", "success"]), default="any",
              show_default=True,
              help="'success': exit non-zero if any of them did not succeed.")  # fmt: skip
@json_option
@global_options
@click.pass_context
def wait(
    ctx: click.Context, ids: tuple[str, ...], groups: tuple[str, ...], everything: bool,
    timeout: str | None, want: str, as_json: bool,
) -> int:  # fmt: skip
    """Block until the given petitions have ended: by ID (an array's name: its
    members), --group or --all.

    Exit 0; 1 if one did not succeed, for an array, --group or --all (saying how many:
    "3 of 100 failed"), or with --status success; 124 if --timeout passed first.
    """
    if not (ids or groups or everything):
        raise Refused("say what to wait for: IDs, --group or --all")
    seconds = None
    if timeout is not None:
        try:
            seconds = parse_duration(timeout)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'--timeout'") from e
    with client(ctx) as service:
        targets = list(ids)
        if groups or everything:
            targets += [i for i in bulk.live_ids(service, groups) if i not in targets]
        if not targets:
            if as_json:  # the report of no petition: the notice is for people
                print_json({"petitions": [], "failed": 0, "pending": [], "timed_out": False})
            else:
                click.echo("orcha: no petition is queued or running; nothing to wait for",
                           err=True)  # fmt: skip
            return 0
        report = service.wait_report(targets, seconds)
    collective = bool(groups or everything or report["arrays"])
    if as_json:
        ended = report["ended"].values()
        print_json({
            "petitions": [{k: e.get(k) for k in ("id", "state", "code", "message")}
                          for e in ended],
            "failed": sum(e.get("state") != "SUCCEEDED" for e in ended),
            "pending": [i for i in report["ids"] if i not in report["ended"]],
            "timed_out": bool(report.get("timed_out")),
        })  # fmt: skip
    return bulk.report_wait(report, collective, want, timeout)


@click.command("logs")
@click.argument("ids", nargs=-1, required=True, metavar="ID...", shell_complete=petition_ids)
@click.option("--tail", "--lines", "-n", "tail", type=click.IntRange(min=0), metavar="N",
              help="Only the last N lines of each (as tail -n; as follow's --lines).")  # fmt: skip
@json_option
@global_options
@click.pass_context
def logs(ctx: click.Context, ids: tuple[str, ...], tail: int | None, as_json: bool) -> int:
    """Print the stored output of petitions, running or ended (stdout and stderr apart).
    With several (or an array's name), each line is prefixed [ID]. Between stdout and
    stderr, the order is the one the service read them in; writes made microseconds
    apart come back stream by stream unless the petition ran with --ordered (or 2>&1).

    Exit 0; 209 if one has no petition (one line each).
    """
    failures: list[str] = []
    docs: list[dict[str, Any]] = []
    with client(ctx) as service:
        report = service.status_report(ids)
        arrays = report.get("arrays", {})  # an array's name: its members
        targets = list(dict.fromkeys(m for i in ids for m in arrays.get(i, [i])))
        # A petition of the original API (a plugin's own service) has no kind and keeps
        # no log: its output went to its client only. Said, not left as an empty log.
        kinds = {r["id"]: r.get("kind") for r in report.get("petitions", [])}
        out = _Prefixer(prefix=len(targets) > 1)
        for petition_id in targets:
            try:
                if as_json:
                    docs.append(_document(petition_id, service.logs(petition_id, tail)))
                    continue
                for stream, data in service.logs(petition_id, tail):
                    out.write(petition_id, stream, data)
                if kinds.get(petition_id) == "":
                    out.flush(petition_id)
                    click.echo(
                        f"orcha: petition {petition_id} keeps no log: a petition of the "
                        "original API (a plugin's own service) sends its output to its "
                        "client only",
                        err=True,
                    )
            except NoPetitionError as e:
                failures.append(e.message)
            except PetitionError as e:
                if e.exit_code != ExitCode.NO_PETITION:
                    raise
                failures.append(e.message)
            out.flush(petition_id)
    if as_json:  # one ID: its document; several: {"logs": [its document, ...]}
        print_json(docs[0] if len(targets) == 1 and docs else {"logs": docs})
    for message in failures:
        click.echo(f"orcha: {message}", err=True)
    return int(ExitCode.NO_PETITION) if failures else 0


def _document(petition_id: str, output: Generator[tuple[str, bytes], None, Any]) -> Any:
    """What ``logs --json`` prints of one petition: ``{"id", "state", "code", "output"}``
    (``output`` as :func:`_chunks` gives it; ``state`` and ``code`` as they are now)."""
    chunks: list[tuple[str, bytes]] = []
    while True:
        try:
            chunks.append(next(output))
        except StopIteration as end:
            now = end.value or {}
            return {"id": petition_id, "state": now.get("state"), "code": now.get("code"),
                    "output": _chunks(chunks)}  # fmt: skip


def _chunks(output: Iterable[tuple[str, bytes]]) -> list[dict[str, str]]:
    """Output as ``logs --json`` prints it: ``{"stream", "text"}`` in the order stored,
    consecutive chunks of one stream joined, text decoded as UTF-8 (bad bytes replaced)."""
    out: list[dict[str, str]] = []
    for stream, data in output:
        text = bytes(data).decode("utf-8", "replace")
        if out and out[-1]["stream"] == stream:
            out[-1]["text"] += text
        else:
            out.append({"stream": stream, "text": text})
    return out


class _Prefixer:
    """Writes each petition's output line by line behind ``[ID] `` (for several IDs)."""

    def __init__(self, prefix: bool) -> None:
        self.prefix = prefix
        self.partial: dict[tuple[str, int], bytes] = {}

    def write(self, petition_id: str, stream: str, data: bytes) -> None:
        fd = 1 if stream == "stdout" else 2
        if not self.prefix:
            _write(fd, data)
            return
        key = (petition_id, fd)
        head = f"[{petition_id}] ".encode("utf-8", "surrogateescape")
        *lines, rest = (self.partial.pop(key, b"") + data).split(b"\n")
        if lines:
            _write(fd, b"".join(head + line + b"\n" for line in lines))
        if rest:
            self.partial[key] = rest

    def flush(self, petition_id: str) -> None:
        head = f"[{petition_id}] ".encode("utf-8", "surrogateescape")
        for (name, fd), rest in list(self.partial.items()):
            if name == petition_id:
                _write(fd, head + rest + b"\n")
                del self.partial[(name, fd)]


@click.command("follow")
@click.argument("ids", nargs=-1, required=True, metavar="ID...", shell_complete=petition_ids)
@click.option("--lines", "-n", type=click.IntRange(min=0), metavar="N",
              help="Start with the last N lines of each (as tail -n), not the start.")  # fmt: skip
@global_options
@click.pass_context
def follow(ctx: click.Context, ids: tuple[str, ...], lines: int | None) -> int:
    """Stream the output of running or ended petitions from the start (with several IDs,
    each line is prefixed [ID]); exit with the petition's code, or 209 once the others
    have ended if an ID named no petition. Ctrl+C only stops following: the petitions
    keep running."""
    from orcha.client.handles import exit_code

    service = client(ctx)
    try:
        following = service.follow(ids, lines)
        missing = ", ".join(map(quoted, following.missing))
        if not following.ids:
            raise NoPetitionError(f"no petition has ID {missing}; see 'orcha status'")
        if missing:
            click.echo(f"orcha: no petition has ID {missing}; following the others", err=True)
        out = _Prefixer(prefix=len(following.ids) > 1)
        codes: dict[str, int] = {}
        for petition_id, stream, data in following:
            if stream == "skipped":
                who = f"{petition_id}: " if len(following.ids) > 1 else ""
                click.echo(f"orcha: {who}{printable(str(data.get('message')))}", err=True)
                continue
            if stream != "end":
                out.write(petition_id, stream, data)
                continue
            out.flush(petition_id)
            codes[petition_id] = exit_code(data)
            if data.get("message") and data.get("state") != "SUCCEEDED":
                # Why it failed (a dependency, a timeout...), as the attached client says.
                who = f"{petition_id}: " if len(following.ids) > 1 else ""
                click.echo(f"orcha: {who}{printable(str(data['message']))}", err=True)
    except KeyboardInterrupt:
        click.echo("orcha: stopped following; the petitions keep running", err=True)
        return int(ExitCode.INTERRUPTED)
    finally:
        service.close()
    if following.missing:  # said when following began; 209 as logs, once the others end
        return int(ExitCode.NO_PETITION)
    return next((codes[i] for i in following.ids if codes.get(i)), 0)


@click.command("watch")
@click.argument("ids", nargs=-1, metavar="[ID]...", shell_complete=petition_ids)
@click.option("--json", "as_json", is_flag=True, help="One JSON event envelope per line.")
@global_options
@click.pass_context
def watch(ctx: click.Context, ids: tuple[str, ...], as_json: bool) -> int:
    """Print events as they happen: the current state first, then submitted, started,
    output and finished. With IDs, exit once all of them (an array: its members) have
    finished."""
    service = client(ctx)
    try:
        for obj in service.watch(ids):
            if as_json:
                import json

                click.echo(json.dumps(obj))
            else:
                data = obj.get("data") or {}
                if obj["event"] == "dropped":
                    click.echo(f"orcha: this client fell behind; {data.get('count')} output "
                               "and progress events were dropped", err=True)  # fmt: skip
                    continue
                from orcha.cli.watch_text import watch_lines

                for line in watch_lines(obj):
                    click.echo(line)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    finally:
        service.close()
    return 0
