"""orcha.service.log_config: what the service's log lines may hold."""

from __future__ import annotations

import io
import logging

import pytest

from orcha.service import log_config


def test_a_log_line_shows_control_characters_and_odd_bytes_escaped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(log_config.sys, "stderr", stream)
    root = logging.getLogger("orcha")
    saved = root.handlers[:], root.level, root.propagate
    try:
        log_config.configure_logging(0)
        logging.getLogger("orcha.test").warning(
            "petition %s: webhook %s failed", "nt2", "http://h:1/\x1b[2J\nforged line\udcff"
        )
    finally:
        root.handlers[:], root.level, root.propagate = saved
    # compared as bytes: a failure's report cannot hold a surrogate (pytest-xdist)
    assert stream.getvalue().encode("utf-8", "backslashreplace") == (
        b"orcha serve: petition nt2: webhook http://h:1/\\x1b[2J\\nforged line\\xff failed\n"
    )
