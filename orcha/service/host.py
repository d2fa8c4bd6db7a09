"""The OS seam for what the machine has: CPUs, memory, GPUs.

The scheduler asks a :class:`Host` instead of psutil or ``nvidia-smi`` directly, so its
tests give it a fake machine and a fake clock.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

log = logging.getLogger("orcha.service.host")


class Host:
    """The real machine."""

    def cpu_count(self) -> int:
        return os.cpu_count() or 1

    def total_memory(self) -> int:
        import psutil

        return int(psutil.virtual_memory().total)

    def available_memory(self) -> int:
        """Bytes that can be given to new processes without swapping (psutil's
        ``available``: free memory plus reclaimable caches)."""
        import psutil

        return int(psutil.virtual_memory().available)

    def discover_gpus(self) -> list[str]:
        """Indices of the NVIDIA GPUs ``nvidia-smi`` lists; none if it is absent or fails."""
        tool = shutil.which("nvidia-smi")
        if tool is None:
            return []
        try:
            out = subprocess.run(
                [tool, "--query-gpu=index", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError) as e:
            log.warning("nvidia-smi failed (%s); no GPUs will be handed out", e)
            return []
        return [line.strip() for line in out.splitlines() if line.strip()]
