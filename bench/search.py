"""Search quality and cost: each sampler's hypervolume by trial count, and early stopping's saving.

Parts (--part), printed as tables and written as JSON (default runs/bench/search.json):
  samplers: tpe, nsga2, gp and random, --repeats seeds each, on digits (quick space): the
    hypervolume of the (validation accuracy, latency) front after each finished trial, against
    ONE reference point shared by every run (accuracy 0, latency 2x the largest latency measured
    in any of them), so the numbers compare; a PNG of each sampler's mean curve beside the JSON.
    Then (also alone: --part throughput) trials per hour of one TPE study with 1 and with 2
    local workers.
  early-stop: the same budgets and seeds with --early-stop halving and off, on digits and
    Fashion-MNIST: total time of the trials and final hypervolume (one reference per dataset,
    as above). Goal: >= 30% less time for <= 1% less hypervolume.

A trial's seconds are its whole wall time in the storage (datetime_start to datetime_complete):
sampling, latency profiles before and after training, training, evaluation and saving the
weights; a pruned trial's training stops at its rung. --quick is a smoke run: tiny budgets,
digits only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# This file shares its name with the `search` package, and app.py (like `python bench/search.py`)
# puts bench/ first on sys.path: the repository root goes before it, for this process and the
# worker processes it spawns.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from training import print_table  # noqa: E402  (bench/training.py)

from search import SearchSettings, run_search  # noqa: E402
from search.datasets import get_dataset  # noqa: E402
from search.hypervolume import hypervolume_history  # noqa: E402
from search.samplers import SAMPLERS  # noqa: E402
from spaces import Config, build_model  # noqa: E402
from spaces.summary import summarize  # noqa: E402

DIRECTIONS = ("maximize", "minimize")  # (val_accuracy, latency_ms)
REFERENCE_MARGIN = 2.0  # reference latency = 2x the slowest model of the compared runs
SAVING_GOAL, HV_LOSS_GOAL = 0.30, 0.01
DEFAULT_EARLY_STOP = SearchSettings.early_stop  # samplers and throughput run as a search does
# (trials, epochs) per mode; the early-stop datasets add the training images each candidate
# trains on (None: all). Halving's rungs sit at epochs 1, 3, 9 below the last one and need 3
# latency peers, so the early-stop budgets leave room to prune: 12 trials x 9 epochs. A digits
# epoch (8x8 images) takes about 0.1 s; a full Fashion-MNIST epoch (54,000 images) about 40 s on
# 2 vCPUs, so its search trains each candidate on a stratified 6,000 (validation stays whole).
BUDGETS = {
    "full": {"samplers": (30, 3), "throughput": (20, 3),
             "digits": (12, 9, None), "fashion-mnist": (12, 9, 6000)},
    "quick": {"samplers": (4, 1), "throughput": (2, 1), "digits": (5, 2, None)},
}
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def run_study(settings: SearchSettings, workers: int = 1) -> dict:
    """Run one study in a temporary journal; its finished and failed trials in completion order
    as plain records, and the wall time of the whole run (worker start-up included)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        study = run_search(str(Path(tmp) / "bench.journal"), "bench", settings, workers=workers)
        wall = time.perf_counter() - start
        trials = sorted((t for t in study.trials if t.datetime_complete is not None),
                        key=lambda t: t.datetime_complete)
    records = [{"number": t.number, "state": t.state.name.lower(), "values": t.values,
                "seconds": (t.datetime_complete - t.datetime_start).total_seconds(),
                "pruned_at_epoch": t.user_attrs.get("pruned_at_epoch"),
                "reason": t.user_attrs.get("prune_reason") or t.user_attrs.get("fail_reason"),
                **training_work(t)}
               for t in trials]
    first = min((t.datetime_start for t in trials), default=None)
    span = (trials[-1].datetime_complete - first).total_seconds() if trials else 0.0
    return {"dataset": settings.dataset, "sampler": settings.sampler, "seed": settings.seed,
            "early_stop": settings.early_stop, "trials": settings.trials,
            "epochs": settings.epochs, "workers": workers, "wall_s": wall,
            "span_s": span, "records": records}


def training_work(trial: optuna.trial.FrozenTrial) -> dict:
    """The epochs a trial trained and its training compute: epochs x training images x forward
    MACs per image. Unlike seconds, it does not depend on what else the machine was running."""
    if "config" not in trial.user_attrs or trial.user_attrs.get("infeasible"):
        return {"epochs_trained": 0, "train_macs": 0}
    config, data = Config.from_dict(trial.user_attrs["config"]), trial.user_attrs["data"]
    if trial.state == optuna.trial.TrialState.COMPLETE:
        epochs = config.train.epochs
    else:
        epochs = trial.user_attrs.get("pruned_at_epoch") or len(
            trial.user_attrs.get("learning_curve", []))
    shape = (data["in_channels"], data["image_size"], data["image_size"])
    summary = summarize(build_model(config, shape[0], data["num_classes"], shape[1]), shape)
    macs = summary.binary_macs + summary.float_macs
    return {"epochs_trained": epochs,
            "train_macs": epochs * trial.user_attrs["train_images"] * macs}


def finished(run: dict) -> list[dict]:
    return [r for r in run["records"] if r["state"] in ("complete", "pruned")]


def reference_of(runs: list[dict]) -> list[float]:
    latencies = [r["values"][1] for run in runs for r in finished(run) if r["state"] == "complete"]
    return [0.0, REFERENCE_MARGIN * max(latencies, default=1.0)]


def hv_curve(run: dict, reference: list[float]) -> list[float]:
    """Hypervolume after each finished trial; a pruned trial counts as a trial and adds nothing
    (it is given the reference point itself, which dominates no volume)."""
    return hypervolume_history([r["values"] if r["state"] == "complete" else reference
                                for r in finished(run)], DIRECTIONS, reference)


def at(curve: list[float], n: int) -> float:
    """The hypervolume after n trials (the last one if the run finished fewer)."""
    return curve[min(n, len(curve)) - 1] if curve else 0.0


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def bench_samplers(mode: str, seeds: list[int], png: Path) -> dict:
    trials, epochs = BUDGETS[mode]["samplers"]
    runs = []
    for sampler in SAMPLERS:
        for seed in seeds:
            runs.append(run_study(SearchSettings(dataset="digits", trials=trials, epochs=epochs,
                                                 seed=seed, sampler=sampler,
                                                 early_stop=DEFAULT_EARLY_STOP)))
            print(f"  {sampler} seed {seed}: {len(finished(runs[-1]))} trials in "
                  f"{runs[-1]['wall_s']:.1f} s", flush=True)
    reference = reference_of(runs)
    for run in runs:
        run["hypervolume"] = hv_curve(run, reference)
    checkpoints = sorted({max(1, trials * k // 3) for k in (1, 2, 3)})
    rows, means = [], {}
    for sampler in SAMPLERS:
        curves = [run["hypervolume"] for run in runs if run["sampler"] == sampler]
        finals = [at(c, trials) for c in curves]
        rows.append({"sampler": sampler, **{f"hv@{n}": mean_sd([at(c, n) for c in curves])
                                           for n in checkpoints},
                     "final min..max": f"{min(finals):.4f}..{max(finals):.4f}"})
        means[sampler] = [statistics.mean(at(c, n) for c in curves) for n in range(1, trials + 1)]
    print(f"\nhypervolume of (val accuracy, latency) on digits, quick space, {trials} trials x "
          f"{epochs} epochs, early stop {DEFAULT_EARLY_STOP}, seeds {seeds}; reference: accuracy "
          f"0, latency {reference[1]:.4f} ms ({REFERENCE_MARGIN:g}x the slowest model of all "
          f"{len(runs)} runs); mean ± sd over seeds")
    print_table(rows, list(rows[0]))
    draw_png(png, means, f"digits, {trials} trials x {epochs} epochs, mean of {len(seeds)} seeds;"
             f" reference (0, {reference[1]:.4f} ms)")
    print(f"wrote {png}")
    return {"reference": reference, "checkpoints": checkpoints, "summary": rows, "runs": runs}


def bench_throughput(mode: str) -> list[dict]:
    """Trials per hour over the span from the first trial's start to the last one's end (worker
    start-up left out; the wall time with it is in the JSON)."""
    trials, epochs = BUDGETS[mode]["throughput"]
    cpus = os.cpu_count() or 1
    rows = []
    for workers in (1, 2):
        run = run_study(SearchSettings(dataset="digits", trials=trials, epochs=epochs, seed=0,
                                       early_stop=DEFAULT_EARLY_STOP), workers)
        done = len(finished(run))
        rows.append({"workers": workers, "train_threads_each": max(1, cpus // workers),
                     "trials": done, "span_s": run["span_s"], "wall_s": run["wall_s"],
                     "trials_per_hour": 3600 * done / run["span_s"], "records": run["records"]})
    print(f"\nthroughput: tpe on digits, {trials} trials x {epochs} epochs, early stop "
          f"{DEFAULT_EARLY_STOP}, {cpus} CPUs "
          "(latency measured on 1 thread); trials/hour over first start to last end")
    print_table(rows, ["workers", "train_threads_each", "trials", "span_s", "wall_s",
                       "trials_per_hour"])
    return rows


def bench_early_stop(mode: str, seeds: list[int], datasets: list[str]) -> dict:
    out: dict = {}
    for dataset in datasets:
        if dataset not in BUDGETS[mode]:
            print(f"\nearly stop: {dataset} skipped (--quick runs digits only)")
            continue
        try:
            get_dataset(dataset)
        except Exception as exc:  # noqa: BLE001 (any reason the data is missing: told, skipped)
            print(f"\nearly stop: {dataset} skipped: {type(exc).__name__}: {exc}")
            continue
        trials, epochs, train_subset = BUDGETS[mode][dataset]
        runs = []
        for seed in seeds:  # the modes alternate, so a slow spell of the machine hits both
            for early_stop in ("off", "halving"):
                runs.append(run_study(SearchSettings(dataset=dataset, trials=trials,
                                                     epochs=epochs, seed=seed,
                                                     early_stop=early_stop,
                                                     train_subset=train_subset)))
                print(f"  {dataset} {early_stop} seed {seed}: {runs[-1]['span_s']:.1f} s",
                      flush=True)
        reference = reference_of(runs)
        rows = []
        for early_stop in ("off", "halving"):
            mine = [run for run in runs if run["early_stop"] == early_stop]
            for run in mine:
                run["hypervolume"] = hv_curve(run, reference)
            hvs = [at(run["hypervolume"], trials) for run in mine]
            rows.append({"dataset": dataset, "mode": early_stop,
                         "trials": sum(len(finished(run)) for run in mine),
                         "pruned": sum(r["state"] == "pruned" for run in mine
                                       for r in run["records"]),
                         "failed": sum(r["state"] == "fail" for run in mine
                                       for r in run["records"]),
                         "epochs": sum(r["epochs_trained"] for run in mine
                                       for r in run["records"]),
                         "T MAC": 1e-12 * sum(r["train_macs"] for run in mine
                                              for r in run["records"]),
                         "seconds": sum(r["seconds"] for run in mine for r in run["records"]),
                         "hv": statistics.mean(hvs), "hv mean ± sd": mean_sd(hvs)})
        off, halving = rows
        saving = {key: 1 - halving[key] / off[key] if off[key] else 0.0
                  for key in ("T MAC", "seconds")}
        hv_loss = 1 - halving["hv"] / off["hv"] if off["hv"] else 0.0
        met = {key: value >= SAVING_GOAL and hv_loss <= HV_LOSS_GOAL
               for key, value in saving.items()}
        images = f" on {train_subset} training images" if train_subset else ""
        print(f"\nearly stop on {dataset}: tpe, {trials} trials x {epochs} epochs{images} per "
              f"run, seeds {seeds}; summed over seeds: epochs trained, training compute (epochs "
              "x images x forward MACs, whatever else ran on the machine) and every trial's "
              f"whole wall time (failed ones too); reference: accuracy 0, latency "
              f"{reference[1]:.4f} ms")
        print_table(rows, ["dataset", "mode", "trials", "pruned", "failed", "epochs", "T MAC",
                           "seconds", "hv mean ± sd"])
        print(f"halving vs off: training compute {-saving['T MAC']:+.1%}, wall time "
              f"{-saving['seconds']:+.1%}, hypervolume {-hv_loss:+.2%} (goal: <= "
              f"-{SAVING_GOAL:.0%} with hypervolume >= -{HV_LOSS_GOAL:.0%}): compute "
              f"{'MET' if met['T MAC'] else 'not met'}, time "
              f"{'MET' if met['seconds'] else 'not met'}")
        out[dataset] = {"train_subset": train_subset, "reference": reference, "summary": rows,
                        "saving": saving, "hv_loss": hv_loss, "met": met, "runs": runs}
    return out


def draw_png(path: Path, curves: dict[str, list[float]], title: str) -> None:
    """A line chart of hypervolume against trial count: one polyline per curve, with axes, ticks
    and a legend (Pillow: matplotlib is not a bnnx dependency)."""
    w, h, left, right, top, bottom = 900, 560, 80, 30, 50, 60
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=14)
    n = max(len(c) for c in curves.values())
    lo, hi = min(min(c) for c in curves.values()), max(max(c) for c in curves.values())
    pad = 0.05 * (hi - lo) or 0.05 * hi or 1.0  # the y axis spans the curves, not from 0
    lo, hi = max(0.0, lo - pad), hi + pad

    def xy(i: int, v: float) -> tuple[float, float]:  # trial i (1-based), hypervolume v
        x = left + (w - left - right) * (i - 1) / max(1, n - 1)
        return x, h - bottom - (h - top - bottom) * (v - lo) / (hi - lo)

    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for k in range(6):
        v = lo + (hi - lo) * k / 5
        _, y = xy(1, v)
        d.line([left - 5, y, left, y], fill="black")
        d.text((left - 8, y), f"{v:.4f}", fill="black", font=font, anchor="rm")
    for i in sorted({1, n, *range(5, n + 1, 5)}):
        x, _ = xy(i, 0)
        d.line([x, h - bottom, x, h - bottom + 5], fill="black")
        d.text((x, h - bottom + 8), str(i), fill="black", font=font, anchor="mt")
    d.text((w / 2, h - 20), "finished trials", fill="black", font=font, anchor="mm")
    d.text((left, top - 25), f"hypervolume (accuracy x ms); {title}", fill="black", font=font,
           anchor="lm")
    for k, (name, curve) in enumerate(curves.items()):
        colour = COLOURS[k % len(COLOURS)]
        points = [xy(i, v) for i, v in enumerate(curve, start=1)]
        d.line(points if len(points) > 1 else points * 2, fill=colour, width=3)
        y = h - bottom - 20 - 20 * (len(curves) - 1 - k)  # legend: lower right
        d.line([w - right - 110, y, w - right - 80, y], fill=colour, width=3)
        d.text((w - right - 72, y), name, fill="black", font=font, anchor="lm")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("samplers", "throughput", "early-stop", "all"),
                   default="all", help="samplers includes throughput")
    p.add_argument("--repeats", type=int, default=3,
                   help="seeds (0..N-1) per sampler and per early-stop mode")
    p.add_argument("--datasets", nargs="+", default=["digits", "fashion-mnist"],
                   choices=["digits", "fashion-mnist"], help="the early-stop part's datasets")
    p.add_argument("--quick", action="store_true", help="tiny budgets, digits only (smoke run)")
    p.add_argument("--json", default="runs/bench/search.json")
    p.add_argument("--png", help="the samplers' hypervolume plot (default: "
                   "search-hypervolume.png beside --json)")
    args = p.parse_args()
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    mode, seeds = ("quick" if args.quick else "full"), list(range(args.repeats))
    out = Path(args.json)
    png = Path(args.png) if args.png else out.with_name("search-hypervolume.png")
    report: dict = {"mode": mode, "seeds": seeds, "budgets": BUDGETS[mode],
                    "cpus": os.cpu_count(), "seconds": "each trial's whole wall time"}
    if args.part in ("samplers", "all"):
        report["samplers"] = bench_samplers(mode, seeds, png)
    if args.part in ("samplers", "throughput", "all"):
        report["throughput"] = bench_throughput(mode)
    if args.part in ("early-stop", "all"):
        report["early_stop"] = bench_early_stop(mode, seeds, args.datasets)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
