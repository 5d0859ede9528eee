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
    assert all(r["bnnx_fast_ms"] > 0 for r in nets)  # compile(exact_float=False) beside it
    # The floor (every MAC at the core's peaks) is below what the exact path measured, the
    # fast path's (its algorithms' multiply-adds, fewer for a Winograd stem) below the fast
    # path's, and a 2-thread row's is half its 1-thread row's.
    assert all(0 < r["floor_ms"] < r["bnnx_ms"] for r in nets)
    assert all(0 < r["fast_floor_ms"] <= r["floor_ms"] for r in nets)
    assert all(r["fast_floor_ms"] < r["bnnx_fast_ms"] for r in nets)
    assert all(two["floor_ms"] == pytest.approx(one["floor_ms"] / 2)
               for one, two in zip(nets[::2], nets[1::2], strict=True))
    assert all(p["floor_ms"] >= 0 for b in report["parts"] for p in b["parts"])
    # Each 2-thread row says where the vCPUs were before and after it.
    assert all(r["vcpus"] == [None, None] for r in nets[::2])
    states = [s for r in nets[1::2] for s in r["vcpus"]]
    assert len(states) == 6 and all(0.5 < s["core_scaling"] < 2.5 for s in states)
    assert all(0 < s["round_trip_ns"] < 1e5 for s in states)
    assert "a cache-line round trip" in stdout
    # Goals on the 1-thread rows of VGG-Small and Bi-Real-18 only.
    assert [r["met"] is None for r in nets] == [False, True] * 2 + [True, True]
    assert all(0 < r["wall_s"] and r["latency_ms"] > 0 for r in report["candidates"])
    # Bi-Real-18: 4 stem, 16 body, 3 head; ReActNet: 3 stem, 6 blocks, 3 head.
    assert [len(b["layers"]) for b in report["breakdowns"]] == [23, 12]
    assert "goal" in stdout and "met" in stdout


@pytest.mark.slow
def test_bench_search_quick_writes_json_and_plot(tmp_path):
    report, stdout = quick_bench("search", tmp_path)
    runs = report["samplers"]["runs"]
    assert sorted((r["sampler"], r["seed"]) for r in runs) == sorted(
        (s, seed) for s in ("gp", "nsga2", "random", "tpe") for seed in (0, 1))
    # Every run is scored against the one reference; a curve point per finished trial.
    reference = report["samplers"]["reference"]
    assert reference[0] == 0.0 and reference[1] > 0
    assert all(len(r["hypervolume"]) == len(r["records"]) == 4 for r in runs)
    assert all(0 < r["hypervolume"][-1] <= reference[1] for r in runs)
    assert all(rec["seconds"] > 0 and rec["state"] == "complete" for r in runs
               for rec in r["records"])
    assert [r["workers"] for r in report["throughput"]] == [1, 2]
    assert all(r["trials"] == 2 and r["trials_per_hour"] > 0 for r in report["throughput"])
    # Early stopping: off and halving on the same seeds, digits only in --quick.
    digits = report["early_stop"]["digits"]
    assert sorted((r["early_stop"], r["seed"]) for r in digits["runs"]) == [
        ("halving", 0), ("halving", 1), ("off", 0), ("off", 1)]
    assert [row["mode"] for row in digits["summary"]] == ["off", "halving"]
    done = [r for run in digits["runs"] for r in run["records"] if r["state"] != "fail"]
    assert all(r["epochs_trained"] == (r["pruned_at_epoch"] or 2) and r["train_macs"] > 0
               for r in done)
    assert set(digits["saving"]) == set(digits["met"]) == {"T MAC", "seconds"}
    assert "fashion-mnist" not in report["early_stop"]
    assert "MET" in stdout or "not met" in stdout
    assert (tmp_path / "search-hypervolume.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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


@pytest.mark.slow
@pytest.mark.browser
def test_bench_explorer_quick_times_page_load_and_polls(tmp_path):
    report, stdout = quick_bench("explorer", tmp_path)
    rows = report["bnnx"]
    assert report["trials"] == 200 and report["attrs_kb_per_trial"] > 1
    assert len(rows["load_ms"]) == len(rows["update_ms"]) == 2
    assert all(0 < ms < 60_000 for ms in rows["load_ms"] + rows["update_ms"])
    assert rows["idle_poll_ms"], "no poll was seen on the open page"
    assert "page load to every point drawn" in stdout and "goal" in stdout
