"""How ``orcha watch`` prints an event as text: one line per event (one per line of
output), ``TIME ID EVENT DETAIL``, with no trailing spaces.

The detail depends on the event: ``submitted`` its priority, ``state`` the state,
``attempt`` its number, ``progress`` the amount (``3/10 files``, ``working``),
``output`` the line (stderr lines marked ``stderr:``), ``finished`` the state, code and
message, a plugin's own event (``KIND.NAME``) its data as compact JSON; the others
(``started``, ``paused``, ``resumed``) none.
"""

from __future__ import annotations

import json
import time
from typing import Any

from orcha.cli.bulk import how_ended
from orcha.cli.tables import printable


def _when(stamp: float | None) -> str:
    if not stamp:
        return "-"
    t = time.localtime(stamp)
    return time.strftime("%H:%M:%S" if t[:3] == time.localtime()[:3] else "%m-%d %H:%M", t)


def _detail(event: str, data: dict[str, Any]) -> str:
    if event == "progress":
        from orcha.client.progress import describe

        return describe(data.get("value"), data.get("target"), str(data.get("unit") or ""))
    if event == "finished":
        text = how_ended(data.get("state"), data.get("code"))
        message = data.get("message")
        if not message or data.get("state") == "SUCCEEDED":
            return text
        return f"{text}: {printable(str(message))}"  # it may quote the petition's argv
    if event == "state":
        return str(data.get("state") or "")
    if event == "submitted":
        return f"priority {data['priority']}" if data.get("priority") is not None else ""
    if event == "attempt":
        return f"attempt {data['attempt']}" if data.get("attempt") is not None else ""
    if "." in event and data:  # a kind's own event: its data as it came
        return json.dumps(data, separators=(",", ":"), sort_keys=True)
    return ""


def watch_lines(obj: dict[str, Any]) -> list[str]:
    """The text lines that show event envelope ``obj`` (``{event, petition, timestamp,
    data}``): one, or one per line of an ``output`` event."""
    event = str(obj.get("event"))
    data = obj.get("data") or {}
    head = f"{_when(obj.get('timestamp'))} {obj.get('petition')} {event}"
    if event == "output":
        text = str(data.get("text", ""))
        if text.endswith("\n"):
            text = text[:-1]
        mark = "stderr: " if data.get("stream") == "stderr" else ""
        return [f"{head} {mark}{line}".rstrip() for line in text.split("\n")]
    detail = _detail(event, data)
    return [f"{head} {detail}".rstrip()]
