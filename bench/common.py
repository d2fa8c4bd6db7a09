"""What the soak (soak.py) uses: a private orcha environment and the command to run orcha."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def private_env(prefix: str) -> tuple[Path, dict[str, str]]:
    """A new temporary directory and an environment whose orcha lives in it (runtime and
    state directories there; no address or key inherited from the caller)."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    env = {
        **os.environ,
        "ORCHA_RUNTIME_DIR": str(root / "run"),
        "ORCHA_STATE_DIR": str(root / "state"),
    }
    env.pop("ORCHA_ADDRESS", None)
    env.pop("ORCHA_KEY", None)
    return root, env


def orcha_command() -> list[str]:
    """The ``orcha`` script beside this Python (as users run it), else ``python -m orcha``."""
    script = Path(sys.executable).with_name("orcha")
    return [str(script)] if script.exists() else [sys.executable, "-m", "orcha"]
