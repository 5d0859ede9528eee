"""Kernel tables for CPUs this machine lacks, built with a cross compiler and run under qemu:
the AArch64 NEON table against the scalar table on random layers, byte for byte
(tests/cpp/check_tables.cpp). `make system-deps` installs Debian's g++-aarch64-linux-gnu and
qemu-user; without them the test is skipped, unless BNNX_REQUIRE_CROSS is set (.ci/run sets it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for p in (ROOT / "kernels" / "csrc").glob("*.cpp") if p.name != "bindings.cpp")
HARNESS = ROOT / "tests" / "cpp" / "check_tables.cpp"
TOOLS = {"compiler": "aarch64-linux-gnu-g++", "emulator": "qemu-aarch64"}


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS.values() if shutil.which(tool) is None]


def test_neon_table_matches_scalar(tmp_path: Path) -> None:
    if missing_tools():
        if os.environ.get("BNNX_REQUIRE_CROSS"):
            pytest.fail(f"{', '.join(missing_tools())} missing: run `make system-deps`")
        pytest.skip(f"{', '.join(missing_tools())} not installed (make system-deps)")
    flags = ["-O2", "-std=gnu++17", "-ffp-contract=off", f"-I{ROOT / 'kernels' / 'csrc'}"]
    objects, jobs = [], []
    for source in [*SOURCES, HARNESS]:
        obj = tmp_path / f"{source.stem}.o"
        objects.append(str(obj))
        jobs.append(subprocess.Popen([TOOLS["compiler"], *flags, "-c", str(source), "-o",
                                      str(obj)], stderr=subprocess.PIPE, text=True))
    for job in jobs:
        _, err = job.communicate()
        assert job.returncode == 0, err
    binary = tmp_path / "check_tables"
    subprocess.run([TOOLS["compiler"], "-static", *objects, "-o", str(binary), "-lpthread"],
                   check=True, capture_output=True, text=True)
    run = subprocess.run([TOOLS["emulator"], str(binary), "300"], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ok neon: 300 cases equal to scalar" in run.stdout, run.stdout
