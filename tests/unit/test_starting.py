"""How a petition's process is started (orcha.service.starting): the command looked up
as Popen would, for the ways that run it behind a shell."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def test_a_command_is_checked_as_popen_would(tmp_path: Path) -> None:
    from orcha.service.starting import check_command

    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\n")
    runnable = tmp_path / "run.sh"
    runnable.write_text("#!/bin/sh\n")
    runnable.chmod(0o755)
    check_command("./run.sh", str(tmp_path), "")
    check_command("run.sh", "/", str(tmp_path))
    check_command("sh", "/", os.defpath)
    with pytest.raises(PermissionError):
        check_command(str(plain), "/", "")
    with pytest.raises(PermissionError):
        check_command("plain.sh", "/", str(tmp_path))
    with pytest.raises(FileNotFoundError):
        check_command("orcha-no-such-command-xyz", "/", os.defpath)
    with pytest.raises(FileNotFoundError):
        check_command("./missing", str(tmp_path), "")
