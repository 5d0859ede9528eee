"""The kernel benchmark runs and writes its JSON (a smoke run; speed goals live in the bench)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_bench(suite: str, tmp_path: Path) -> tuple[dict, str]:
    """Run `app.py bench SUITE --quick` as a user would; its JSON report and printed table."""
    out = tmp_path / f"{suite}.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "bench", suite, "--quick", "--repeats", "2",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(out.read_text()), res.stdout


def test_bench_kernels_quick_writes_json(tmp_path):
    report, stdout = quick_bench("kernels", tmp_path)
    rows = report["rows"]
    assert [(r["channels"], r["size"]) for r in rows] == [(64, 14), (128, 7)]
    assert all(r["torch_fp32_ms"] > 0 and r["bnnx_packed_ms"] > 0 for r in rows)
    assert "x packed" in stdout


def test_bench_networks_quick_writes_json(tmp_path):
    report, stdout = quick_bench("networks", tmp_path)
    nets = report["networks"]
    assert [(r["threads"]) for r in nets] == [1, 2] * 2
    assert all(r["bnnx_ms"] > 0 and r["torch_fp32_ms"] > 0 for r in nets)
    assert [r["met"] is None for r in nets] == [False, True] * 2  # goals on 1-thread rows only
    assert all(0 < r["wall_s"] and r["latency_ms"] > 0 for r in report["candidates"])
    assert [len(b["layers"]) for b in report["breakdowns"]] == [23]  # 4 stem, 16 body, 3 head
    assert "goal" in stdout and "met" in stdout
