"""How an attached client ends: the petition's end event as its exit code, and the last
notices it prints (why it failed, who cancelled it, its outcome)."""

from __future__ import annotations

from orcha.errors import ExitCode, LostServiceError

TYPE_CHECKING = False  # typing is not imported at run time: it costs client start-up
if TYPE_CHECKING:
    from typing import Any

    from orcha.client.screen import Screen


def end_code(event: dict[str, Any], petition_id: str, screen: Screen) -> int:
    """The exit code of ``orcha run`` for the petition's ``end`` event (its own code, or
    the one of how it ended), after the notices that say why on ``screen``."""
    state, code, message = event.get("state"), int(event.get("code", 1)), event.get("message")
    if event.get("outcome") is not None:
        import json

        screen.notice(f"outcome: {json.dumps(event['outcome'])}")
    if state == "SUCCEEDED":
        return 0
    if state == "CANCELLED":
        if event.get("by_client"):
            return int(ExitCode.INTERRUPTED)
        screen.notice(f"petition {petition_id} was cancelled: {message or 'by another client'}")
        return int(ExitCode.CANCELLED)
    if state == "INTERRUPTED":  # with a message, the service is fine: its Dask worker was lost
        if not message:
            raise LostServiceError("the petition was interrupted")
        screen.notice(f"petition {petition_id} was interrupted: {message} (--retries reruns it)")
        return int(ExitCode.LOST_SERVICE)  # what 'wait' and 'follow' give it too
    if message:
        screen.notice(message)
    return code if code else int(ExitCode.FAILED)
