"""The soak (``bench/soak.py``) for a few seconds with a few clients: mixed submits, runs,
cancels, Ctrl+Cs, status, follow, watch and clean against a real service end with no
error, no petition lost or run twice, and no process left behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).parents[2] / "bench" / "soak.py"

pytestmark = pytest.mark.timeout(90)


def test_a_short_soak_has_no_error_loss_double_run_or_leftover(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    args = ["--minutes", "0.15", "--clients", "3", "--every", "3", "--grace", "1"]
    done = subprocess.run(
        [sys.executable, str(SOAK), *args, "--json", str(out)],
        capture_output=True, text=True, timeout=80,
    )  # fmt: skip
    assert out.exists(), (done.returncode, done.stdout, done.stderr)
    figures = json.loads(out.read_text())
    summary = {k: figures[k] for k in ("errors", "lost", "ran_twice", "leftovers")}
    assert summary == {"errors": 0, "lost": 0, "ran_twice": 0, "leftovers": 0}, (
        figures["first_errors"], figures["lost_ids"], figures["ran_twice_ids"],
        figures["leftover_processes"], done.stdout, done.stderr,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert figures["acknowledged"] > 0 and figures["operations_by_kind"].get("submit", 0) > 0
    assert figures["stop_seconds"] is not None  # stopped on SIGTERM, not killed
