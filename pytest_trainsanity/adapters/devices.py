"""Device choice shared by every adapter (pure: imports no framework)."""

from __future__ import annotations

import os
import re


def xdist_worker_index(env: dict[str, str] | None = None) -> int | None:
    """The N of pytest-xdist worker ``gwN``, or None outside xdist."""
    worker = (env if env is not None else os.environ).get("PYTEST_XDIST_WORKER", "")
    match = re.fullmatch(r"gw(\d+)", worker)
    return int(match.group(1)) if match else None


def auto_gpu_index(gpu_count: int, worker: int | None) -> int | None:
    """The GPU an ``auto`` device takes: worker N gets GPU N mod count; None if no GPU."""
    if gpu_count <= 0:
        return None
    return 0 if worker is None else worker % gpu_count
