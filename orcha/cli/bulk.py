"""What ``cancel``, ``wait``, ``clean``, ``logs``, ``pause``, ``resume``, ``release`` and
``restart`` say when they act on many petitions (IDs, an array's name, ``--group``,
``--state``, ``--all``): one line per failure (the first :data:`NAMED`), a count for a
selection or past :data:`NAMED` IDs, and their exit codes (documented in each
command's help)."""

from __future__ import annotations

import sys

from orcha.errors import ExitCode

TYPE_CHECKING = False  # no typing or click at run time: the fast path reports with these
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    import click

#: How many petitions a summary line names before it says "...".
NAMED = 10


def signal_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """``--signal``: ``USR1``, ``SIGUSR1``, ``usr1`` or ``10`` -> the signal's number."""
    import signal

    import click

    if value is None:
        return None
    text = value.strip().upper()
    if text.isascii() and text.isdigit():  # ASCII: str.isdigit also takes '²' and '٣'
        number = int(text)
        if 1 <= number <= signal.SIGRTMAX:
            return number
    else:
        name = text if text.startswith("SIG") else f"SIG{text}"
        if isinstance(getattr(signal, name, None), signal.Signals):
            return int(getattr(signal, name))
    raise click.BadParameter(
        f"{value!r} is not a signal (e.g. USR1, SIGTERM, 10)", ctx=ctx, param=param
    )


def signal_words(sig: int) -> str:
    """``SIGUSR1`` for 10; ``signal 42`` for a number without a name."""
    import signal

    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _say(line: str) -> None:
    """``line`` on stderr, as ``click.echo(line, err=True)`` writes it: the fast path
    (:mod:`orcha.cli.fast_jobs`) reports without importing click."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def how_ended(state: object, code: object, listed: bool = False) -> str:
    """``FAILED (code 3)``, or the state alone where there is no code (a petition
    cancelled before it started: ``CANCELLED``); ``listed`` (inside parentheses
    already): ``FAILED, code 3``."""
    if code is None:
        return str(state)
    return f"{state}, code {code}" if listed else f"{state} (code {code})"


def some(ids: Iterable[str]) -> str:
    """The first few of ``ids``, comma separated, then "..." if there are more."""
    ids = list(ids)
    return ", ".join(ids[:NAMED]) + (", ..." if len(ids) > NAMED else "")


def say_done(word: str, ids: list[str]) -> None:
    """ "orcha: WORD ID" for each of ``ids``; past :data:`NAMED` (an array's members),
    one line: how many, and the first few."""
    if len(ids) > NAMED:
        _say(f"orcha: {word} {len(ids)} petition(s): {some(ids)}")
        return
    for petition_id in ids:
        _say(f"orcha: {word} {petition_id}")


def say_each(lines: list[str], suffix: str = "") -> None:
    """ "orcha: LINE" (with ``suffix``) for the first :data:`NAMED` of ``lines``, then
    how many more."""
    for line in lines[:NAMED]:
        _say(f"orcha: {line}{suffix}")
    if len(lines) > NAMED:
        _say(f"orcha: and {len(lines) - NAMED} more like these (--json lists each)")


def abandoned(service: Any, results: dict[str, str], took: float) -> set[str]:
    """Of the petitions ``cancel`` reports cancelled, those whose action ignored the
    cancel and was abandoned (ended without it; its thread may run on in the service).
    The service abandons an action ABANDON_WAIT_SECONDS after the cancel at the soonest,
    so a reply that came sooner (``took`` seconds) needs no second request."""
    from orcha.defaults import ABANDON_WAIT_SECONDS
    from orcha.protocol.messages import ABANDONED

    done = [i for i, r in results.items() if r == "cancelled"]
    if took < ABANDON_WAIT_SECONDS or not done:
        return set()
    records = service.status_report(done)["petitions"]
    return {
        r["id"] for r in records
        if r.get("state") == "CANCELLED" and ABANDONED in (r.get("message") or "")
    }  # fmt: skip


def report_cancel(
    results: dict[str, str],
    selects: bool,
    sig: int | None,
    quiet: bool = False,
    abandoned: Iterable[str] = (),
) -> int:
    """Say what ``cancel`` did: each ID cancelled (a count for a selection: ``--all``,
    ``--group``, ``--state``; or for more than :data:`NAMED` IDs, an array's members
    say), one line per petition it could not act on (the first :data:`NAMED`, then how
    many more). 0, or 209 (NO_PETITION) if there was one. ``quiet`` (``--json``, which
    printed the results): only the failures are said. ``abandoned``: cancelled IDs whose
    action ignored the cancel: each said so on a line of its own, not as cancelled."""
    done_word = "cancelled" if sig is None else "signalled"
    gave_up = set(abandoned)
    done = [i for i, r in results.items() if r == done_word and i not in gave_up]
    for petition_id in sorted(gave_up) if not quiet else ():
        _say(
            f"orcha: cancelled {petition_id}, but its action ignored the cancel and was "
            "abandoned: it may still run inside the service ('orcha health' counts it)"
        )
    failures = [r for r in results.values() if r != done_word]
    if quiet:
        pass
    elif sig is not None:
        if done:
            _say(f"orcha: sent {signal_words(sig)} to {len(done)} running petition(s): "
                 f"{some(done)}")  # fmt: skip
    elif selects and results:
        _say(f"orcha: cancelled {len(done)} petition(s)" + (f": {some(done)}" if done else ""))
    else:
        say_done("cancelled", done)
    if selects and not results and not quiet:
        what = "running" if sig is not None else "queued or running"
        _say(f"orcha: no {what} petition matched; nothing done")
    say_each(failures, "; nothing to cancel" if sig is None else "; not signalled")
    return int(ExitCode.NO_PETITION) if failures else 0


def live_ids(service: Any, groups: Iterable[str]) -> list[str]:
    """The IDs of the petitions queued or running now (of ``groups``, if given), read a
    page at a time: a long queue is never listed in one reply (the service would hold it
    whole, records and all)."""
    pages = service.status_pages(("QUEUED", "RUNNING"), groups)
    return [r["id"] for page in pages for r in page]


def report_wait(report: dict[str, Any], collective: bool, want: str, timeout: str | None) -> int:
    """Say how a wait ended. Timed out: which have not ended, exit 124. For an array, a
    group or ``--all`` (``collective``): "N of M failed" and exit 1 if any did not
    succeed; for IDs, the same only with ``--status success``. Else 0."""
    ended: dict[str, dict[str, Any]] = report["ended"]
    asked: list[str] = report["ids"]
    failed = [e for e in ended.values() if e.get("state") != "SUCCEEDED"]
    if failed and collective:
        named = some(
            f"{e['id']} ({how_ended(e.get('state'), e.get('code'), listed=True)})" for e in failed
        )
        _say(f"orcha: {len(failed)} of {len(asked)} failed: {named}")
    elif failed and want == "success":
        for e in failed:
            _say(f"orcha: petition {e['id']} ended {how_ended(e['state'], e.get('code'))}")
    if report["timed_out"]:
        pending = [i for i in asked if i not in ended]
        if timeout is not None and timeout.replace(".", "", 1).isdigit():
            timeout += "s"  # a bare number is seconds: say so
        _say(f"orcha: timed out after {timeout}: {len(pending)} of {len(asked)} have "
             f"not ended: {some(pending)}")  # fmt: skip
        return int(ExitCode.TIMEOUT)
    return int(ExitCode.FAILED) if failed and (collective or want == "success") else 0
