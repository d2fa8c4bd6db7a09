"""How the service logs: to stderr, as text lines or one JSON object per line."""

from __future__ import annotations

import logging
import sys

from orcha.text import printable


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, and the
    exception's traceback when there is one (for journald and log shippers)."""

    def format(self, record: logging.LogRecord) -> str:
        import datetime
        import json

        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
            .isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }  # fmt: skip
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class LineFormatter(logging.Formatter):
    """Text lines whose message shows control characters and bytes that are not UTF-8
    escaped (``\\x1b``, ``\\n``, ``\\xff``): a name a client gave (a command, a URL, a
    directory) cannot clear the operator's terminal, forge a line of its own, or fail to
    be written. A traceback still follows on lines of its own."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


def configure_logging(verbose: int, log_format: str = "text") -> None:
    """Service logs go to stderr: warnings by default, -v info, -vv debug; as text lines
    or (``log_format="json"``) one JSON object per line."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    fmt = (
        "orcha serve: %(message)s"
        if verbose <= 0
        else "orcha serve: %(levelname)s %(name)s: %(message)s"
    )
    handler.setFormatter(JsonFormatter() if log_format == "json" else LineFormatter(fmt))
    root = logging.getLogger("orcha")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
