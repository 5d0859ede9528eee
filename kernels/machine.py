"""What a latency was measured on: CPU model, microkernel table, thread count.

Latencies from different CPUs are not comparable, so every measurement carries these facts.
"""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path
from typing import Any

from .bitops import active_isa


@cache
def cpu_model() -> str:
    """The CPU's marketing name (e.g. 'AMD EPYC 9R14'), or the architecture when unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "cpu model") and value.strip():
                return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(threads: int) -> dict[str, Any]:
    """The facts stored beside a latency measured with `threads` threads."""
    return {"cpu": cpu_model(), "isa": active_isa(), "threads": threads,
            "cpus": os.cpu_count() or 1}
