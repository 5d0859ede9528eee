"""Training cost and accuracy of every family, binary versus its full-precision twin.

Two parts, both printed as a table and written as JSON (default runs/bench/training.json):
  step time (always): median seconds of one training step (forward, loss, backward, optimiser
    step, through bnnx's own LightningModule) per family, binary and fp twin on the same batch;
    the goal is binary <= 1.5x its twin (the binary forward pays for sign and STE masks).
  accuracy (--accuracy): trains the hand-set plain/bireal/reactnet configs below and their fp
    twins on Fashion-MNIST for --epochs (<= 15) and reports test accuracy. Each twin is saved
    beside the JSON; --distill W then trains the binary networks with ReActNet's distributional
    loss (weight W) from that very twin. A full run takes hours on a laptop CPU; --subset N
    trains on N images (a smoke run, accuracies then mean little).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from search.datasets import Dataset, get_dataset
from search.teacher import cache_key, fp_twin, load_weights, save_weights
from search.training import BinaryClassifier, Stage, TrainResult, accuracy, print_epoch, train
from spaces import Config, build_model
from spaces.space import knob_fields

MAX_EPOCHS = 15
STEP_GOAL = 1.5
MODELS = ("binary", "fp-twin")
HAND_SET = {  # family: (arch, quant) as a paper would set them for 28x28 inputs
    "plain": ({"width": 48, "depth": 3}, {"input_quantizer": "clipped_ste"}),
    "bireal": ({"width": 32, "depth": 3, "blocks_per_stage": 2, "activation": "none"},
               {"input_quantizer": "approx_sign"}),
    "reactnet": ({"width": 32, "depth": 3, "activation": "rprelu"},
                 {"input_quantizer": "rsign"}),
}


# Adam, one epoch of linear warm-up to the Larq/Bi-Real range (1e-3..5e-3), then cosine to 0
HAND_SET_TRAIN = {"lr": 5e-3, "warmup_epochs": 1.0, "schedule": "cosine"}
TWIN_DIR = "twins"  # trained fp twins, kept beside the JSON as --distill teachers


def hand_set(family: str, epochs: int, batch_size: int, distill: float = 0.0,
             temperature: float = 1.0) -> Config:
    arch, quant = HAND_SET.get(family, ({"width": 32, "depth": 3}, {}))
    kd = {"distill_weight": distill, "distill_temperature": temperature} if distill else {}
    return Config.from_dict({"arch": {**arch, "family": family}, "quant": quant,
                             "train": {**HAND_SET_TRAIN, "epochs": epochs,
                                       "batch_size": batch_size, **kd}})


def same_recipe_twin(config: Config) -> Config:
    """The fp twin trained with the binary network's recipe minus distillation (a like-for-like
    pair: same lr, warm-up and schedule)."""
    d = fp_twin(config).to_dict()
    d["train"].update({k: getattr(config.train, k) for k in HAND_SET_TRAIN})
    return Config.from_dict(d)


def twin_path(folder: Path, twin: Config, data: Dataset) -> Path:
    return folder / TWIN_DIR / f"{twin.arch.family}-{cache_key(twin, data)}.safetensors"


def load_twin(path: Path, twin: Config, data: Dataset) -> torch.nn.Module:
    """The fp twin a `--models fp-twin` run saved, as the distillation teacher."""
    if not path.is_file():
        raise SystemExit(f"--distill needs the trained fp twin {path}: run the same command "
                         "with --models fp-twin first")
    return load_weights(twin, data, path)


def step_seconds(config: Config, x: torch.Tensor, y: torch.Tensor, repeats: int) -> float:
    """Median wall time of one optimiser step of `config`'s model on the batch (x, y)."""
    torch.manual_seed(config.seed)
    model = build_model(config, x.shape[1], 10, x.shape[2])
    module = BinaryClassifier(model, config.train, 1, Stage(1, True, 0, repeats + 3))
    opt = module.configure_optimizers()["optimizer"]
    times = []
    for i in range(repeats + 3):  # three warm-up steps
        start = time.perf_counter()
        opt.zero_grad()
        module.batch_loss((x, y), "train").backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_steps(families: list[str], batch: int, size: int, repeats: int) -> list[dict]:
    x = torch.randint(0, 256, (batch, 1, size, size), dtype=torch.uint8)
    y = torch.randint(0, 10, (batch,))
    rows = []
    for family in families:
        config = hand_set(family, 1, batch)
        binary = step_seconds(config, x, y, repeats)
        twin = step_seconds(fp_twin(config), x, y, repeats)
        rows.append({"family": family, "binary_ms": 1e3 * binary, "fp_twin_ms": 1e3 * twin,
                     "ratio": binary / twin, "goal": STEP_GOAL, "meets_goal": binary / twin
                     <= STEP_GOAL})
    return rows


def subset(data: Dataset, n: int) -> Dataset:
    """The first n training images (and n // 5 validation/test ones): a smoke run only."""
    k = max(1, n // 5)
    return Dataset(data.name, data.x_train[:n], data.y_train[:n], data.x_val[:k],
                   data.y_val[:k], data.x_test[:k], data.y_test[:k], data.num_classes,
                   data.augment)


def bench_accuracy(families: list[str], models: list[str], data: Dataset, epochs: int,
                   batch: int, distill: float, temperature: float,
                   folder: Path) -> list[dict]:
    """Train each family's fp twin and/or binary network; the twins are saved under `folder`, so
    a `distill` run of the binary network (now or later) learns from the very twin it is
    compared with."""
    rows = []
    for family in families:
        config = hand_set(family, epochs, batch, distill, temperature)
        twin = same_recipe_twin(config)
        path = twin_path(folder, twin, data)
        if "fp-twin" in models:
            result = train(twin, data, on_epoch=print_epoch(f"{family} fp-twin"))
            save_weights(result.model, path)
            rows.append(accuracy_row(family, "fp-twin", twin, result, data))
        if "binary" in models:
            teacher = load_twin(path, twin, data) if distill else None
            result = train(config, data, on_epoch=print_epoch(f"{family} binary"),
                           teacher=teacher)
            rows.append(accuracy_row(family, "binary", config, result, data))
    return rows


def accuracy_row(family: str, label: str, config: Config, result: TrainResult,
                 data: Dataset) -> dict:
    t = config.train
    return {"family": family, "model": label, "width": config.arch.width, "epochs": t.epochs,
            "lr": t.lr, "distill": t.distill_weight, "temperature": t.distill_temperature,
            "train_seconds": result.seconds,
            "test_accuracy": accuracy(result.model, data.x_test, data.y_test)}


def print_table(rows: list[dict], columns: list[str]) -> None:
    def cell(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    widths = [max(len(c), *(len(cell(r[c])) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(cell(r[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    all_families = list(knob_fields()["arch.family"].metadata["choices"])
    p.add_argument("--families", nargs="+", default=all_families, choices=all_families)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--accuracy", action="store_true", help="also train on Fashion-MNIST")
    p.add_argument("--epochs", type=int, default=MAX_EPOCHS, help=f"<= {MAX_EPOCHS}")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS,
                   help="with --accuracy: which of each family's pair to train (run the halves "
                   "in two processes with OMP_NUM_THREADS=1 to use two cores)")
    p.add_argument("--distill", type=float, default=0.0,
                   help="with --accuracy: KD weight for the binary networks, taught by the fp "
                   "twin a --models fp-twin run saved beside --json")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="with --distill: the KD softmax temperature (ReActNet: 1)")
    p.add_argument("--subset", type=int, help="train on this many images (smoke run)")
    p.add_argument("--json", default="runs/bench/training.json")
    args = p.parse_args()
    if not 1 <= args.epochs <= MAX_EPOCHS:
        p.error(f"--epochs must be in [1, {MAX_EPOCHS}], got {args.epochs}")
    report: dict = {"steps": bench_steps(args.families, args.batch_size, args.image_size,
                                         args.repeats)}
    print(f"training step, batch {args.batch_size}, {args.image_size}x{args.image_size}, "
          f"{torch.get_num_threads()} threads (goal: binary <= {STEP_GOAL}x fp twin)")
    print_table(report["steps"], ["family", "binary_ms", "fp_twin_ms", "ratio", "meets_goal"])
    if args.accuracy:
        data = get_dataset("fashion-mnist")
        if args.subset:
            data = subset(data, args.subset)
        families = [f for f in args.families if f in HAND_SET]
        report["accuracy"] = bench_accuracy(families, args.models, data, args.epochs,
                                            args.batch_size, args.distill, args.temperature,
                                            Path(args.json).parent)
        report["accuracy_subset"] = args.subset
        print(f"\nFashion-MNIST, {args.epochs} epochs"
              + (f", SUBSET of {args.subset} images (smoke run)" if args.subset else ""))
        print_table(report["accuracy"], ["family", "model", "width", "epochs", "lr", "distill",
                                         "temperature", "train_seconds", "test_accuracy"])
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
