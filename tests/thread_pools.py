"""Kernel scripts run in a fresh process on each of bnnx's two thread teams."""

from __future__ import annotations

import os
import subprocess
import sys

# BNNX_THREAD_POOL: jobs on the loaded libgomp's team (torch's), or bnnx's own pool.
POOLS = ("openmp", "bnnx")


def run_on_pool(script: str, pool: str, timeout: float = 120) -> None:
    """Runs `script` with BNNX_THREAD_POOL=pool; it fails the test by exiting non-zero."""
    env = {**os.environ, "BNNX_THREAD_POOL": pool}
    done = subprocess.run([sys.executable, "-c", script], env=env, timeout=timeout,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
