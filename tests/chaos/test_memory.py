"""Issue 12, point 4: ``--mem`` is a limit. A petition that uses more memory than it asked
for is stopped with exit code 211 (MEMORY) and one line saying how much; a real service,
once per way of finding out (cgroup v2 ``memory.max`` where the service may create
cgroups, measuring the tree's memory otherwise)."""

from __future__ import annotations

import json
import re

import pytest

from orcha.errors import ExitCode
from orcha.service.cgroup_fs import unavailable
from tests.conftest import Env

_HOG = "x = bytearray(300 * 2**20); import time; time.sleep(30)"


@pytest.mark.parametrize("isolation", ["none", "cgroup"])
def test_a_petition_over_its_memory_is_stopped_with_its_own_code(env: Env, isolation: str) -> None:
    if isolation == "cgroup" and (why := unavailable()):
        pytest.skip(why)
    config = env.root / "config.yaml"
    config.write_text(f"isolation: {isolation}\n")
    env.serve("--grace", "1", env={"ORCHA_CONFIG": str(config)})
    done = env.run("run", "--mem", "10M", "hog", "--", "python3", "-c", _HOG, timeout=40)
    assert done.returncode == int(ExitCode.MEMORY), (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert re.search(r"used (more than )?[\d.]+ [KMG]iB, asked for 10 MiB$", lines[0]), lines[0]
    # Stopped, not left to end its 30 s sleep: by the service's own records (started to
    # ended), which a loaded machine slowing the client does not stretch.
    listed = env.run("status", "--json", "hog", timeout=40)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)["petitions"]
    took = row["ended"] - row["started"]
    assert took < 20, f"the hog ran {took:.1f} s before it was stopped (it sleeps 30 s)"
    print(f"{isolation}: {lines[0]!r} after {took:.2f} s")
