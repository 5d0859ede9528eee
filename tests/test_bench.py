"""The benchmarks run and write their JSON (smoke runs; speed goals live in the benches)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


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
    # The peak loop timed beside each row, and the run's best peak, both give a share.
    assert all(r["peak_gbmacs"] > 0 and r["pct_peak"] > 0 and r["pct_best_peak"] > 0
               for r in rows)
    assert set(report["best_peak_gbmacs"]) >= {report["isa"]}
    assert "x packed" in stdout and "% best" in stdout


def test_bench_networks_quick_writes_json(tmp_path):
    report, stdout = quick_bench("networks", tmp_path)
    nets = report["networks"]
    assert [(r["threads"]) for r in nets] == [1, 2] * 3
    assert all(r["bnnx_ms"] > 0 and r["torch_fp32_ms"] > 0 for r in nets)
    # Goals on the 1-thread rows of VGG-Small and Bi-Real-18 only.
    assert [r["met"] is None for r in nets] == [False, True] * 2 + [True, True]
    assert all(0 < r["wall_s"] and r["latency_ms"] > 0 for r in report["candidates"])
    # Bi-Real-18: 4 stem, 16 body, 3 head; ReActNet: 3 stem, 6 blocks, 3 head.
    assert [len(b["layers"]) for b in report["breakdowns"]] == [23, 12]
    assert "goal" in stdout and "met" in stdout


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_bench_training_distills_from_the_twin_it_saved(tmp_path):
    """--models fp-twin saves the twin beside the JSON; --distill then teaches the binary network
    with that very twin, and refuses clearly when it is missing."""
    out = tmp_path / "training.json"

    def bench(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "bench" / "training.py"), "--families", "plain",
             "--repeats", "1", "--accuracy", "--epochs", "1", "--subset", "256",
             "--json", str(out), *args],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )

    missing = bench("--models", "binary", "--distill", "0.5")
    assert missing.returncode != 0 and "--models fp-twin" in missing.stderr
    assert bench("--models", "fp-twin").returncode == 0
    assert len(list((tmp_path / "twins").glob("plain-*.safetensors"))) == 1
    taught = bench("--models", "binary", "--distill", "0.5")
    assert taught.returncode == 0, taught.stderr
    [row] = json.loads(out.read_text())["accuracy"]
    assert (row["model"], row["distill"], row["epochs"]) == ("binary", 0.5, 1)
    assert 0.0 <= row["test_accuracy"] <= 1.0
