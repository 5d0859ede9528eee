"""bnnx: the one entry point. `python app.py` opens the explorer; subcommands run headless.

Errors a user can cause (bad names, ranges, files, storage) print one line and exit with 2;
set BNNX_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_USAGE = 2


def _int_at_least(low: int):
    """An argparse type: an integer >= low, with an error that says so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    return parse


_positive, _non_negative = _int_at_least(1), _int_at_least(0)


def cmd_explorer(args: argparse.Namespace) -> None:
    from explorer import run_app

    run_app(args.storage, Path(args.runs), host=args.host, port=args.port,
            open_browser=not args.no_browser)


def cmd_search(args: argparse.Namespace) -> None:
    from search import SearchSettings, run_search

    settings = SearchSettings(dataset=args.dataset, space=args.space, trials=args.trials,
                              epochs=args.epochs, seed=args.seed, artifacts=args.artifacts or "")
    study = run_search(args.storage, args.study, settings, workers=args.workers)
    done = [t for t in study.trials if t.values is not None]
    best = max(done, key=lambda t: t.values[0]) if done else None
    print(json.dumps({
        "study": args.study,
        "storage": args.storage,
        "completed": len(done),
        "failed": len(study.trials) - len(done),
        "best_val_accuracy": best.values[0] if best else None,
        "pareto_front": [
            {"trial": t.number, "val_accuracy": t.values[0], "latency_ms": t.values[1]}
            for t in study.best_trials
        ],
    }, indent=2))
    sys.stdout.flush()
    best_text = f"best val {100 * best.values[0]:.1f}%" if best else "no completed trial"
    print(f"search {args.study} finished: {len(done)} complete, "
          f"{len(study.trials) - len(done)} failed, {best_text}", file=sys.stderr)


def cmd_worker(args: argparse.Namespace) -> None:
    from search import run_worker

    run_worker(args.storage, args.study, args.trials, worker=args.worker_index,
               threads=args.threads)


def cmd_train(args: argparse.Namespace) -> None:
    from search.datasets import get_dataset
    from search.export import write_model_folder
    from search.objective import evaluate_and_profile
    from search.training import print_epoch, train
    from spaces import Config

    path = Path(args.config)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    config = Config.from_json(path.read_text())
    if args.epochs is not None:
        config = Config.from_dict({**config.to_dict(),
                                   "train": {**config.to_dict()["train"], "epochs": args.epochs}})
    data = get_dataset(args.dataset)
    result = train(config, data, cache=Path(args.cache), on_epoch=print_epoch(path.stem))
    report = evaluate_and_profile(config, result.model, data)
    metrics = {**report["metrics"], "train_seconds": result.seconds}
    out = write_model_folder(Path(args.out), config, result.model, data.meta(), metrics,
                             f"bnnx model trained from {path.name}")
    print(json.dumps({"out": str(out), **metrics}, indent=2))


def cmd_summary(args: argparse.Namespace) -> None:
    from search.datasets import get_dataset
    from spaces import Config, build_model
    from spaces.summary import format_summary, summarize

    path = Path(args.config)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    config = Config.from_json(path.read_text())
    data = get_dataset(args.dataset)
    model = build_model(config, data.in_channels, data.num_classes, data.image_size)
    print(format_summary(summarize(model, (data.in_channels, data.image_size, data.image_size))))


def cmd_export(args: argparse.Namespace) -> None:
    from search import export_trial

    out = export_trial(args.storage, args.study, args.trial, Path(args.out))
    print(json.dumps({"out": str(out)}))


def cmd_predict(args: argparse.Namespace) -> None:
    import numpy as np

    from search import load_packed

    model = load_packed(Path(args.model))
    path = Path(args.input)
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"input {path} is not a readable .npy array: {exc}") from None
    logits = model(x)
    print(json.dumps({"predictions": [int(i) for i in logits.argmax(axis=1)]}))


def cmd_bench(args: argparse.Namespace) -> None:
    import runpy

    folder = Path(__file__).resolve().parent / "bench"
    suites = sorted(p.stem for p in folder.glob("*.py") if p.stem != "timing")
    if args.suite not in suites:
        raise ValueError(f"unknown benchmark {args.suite!r}; allowed: {', '.join(suites)}")
    sys.path.insert(0, str(folder))  # the scripts share bench/timing.py
    sys.argv = [str(folder / f"{args.suite}.py"), *args.rest]
    runpy.run_path(sys.argv[0], run_name="__main__")


def build_parser() -> argparse.ArgumentParser:
    from search.storage import DEFAULT_STORAGE

    p = argparse.ArgumentParser(
        prog="app.py",
        description="bnnx: search binary neural networks, profile them on packed-bit kernels.",
    )
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="journal file or database URL")
    p.add_argument("--runs", default="runs", help="folder for logs and exports (explorer)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_positive, default=8050)
    p.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    p.set_defaults(func=cmd_explorer)
    sub = p.add_subparsers(title="subcommands", metavar="COMMAND")

    s = sub.add_parser("search", help="create a study and run it to completion")
    s.add_argument("--dataset", default="digits",
                   help="digits, fashion-mnist, mnist, kmnist, cifar10, cifar100 or folder:PATH")
    s.add_argument("--space", default="quick",
                   help="preset (quick, survey) or a .json/.yaml space file")
    s.add_argument("--trials", type=_positive, default=10)
    s.add_argument("--epochs", type=_positive, default=3)
    s.add_argument("--workers", type=_positive, default=1)
    s.add_argument("--storage", default=DEFAULT_STORAGE,
                   help="journal file path, sqlite:///FILE (one worker) or postgresql://...")
    s.add_argument("--study", default="bnnx", help="study name (must be new)")
    s.add_argument("--seed", type=_non_negative, default=0)
    s.add_argument("--artifacts", help="folder for trial weights (default: beside the storage)")
    s.set_defaults(func=cmd_search)

    w = sub.add_parser("worker", help="join an existing study (any machine) and run trials")
    w.add_argument("--storage", required=True)
    w.add_argument("--study", required=True)
    w.add_argument("--trials", type=_positive, default=10)
    w.add_argument("--threads", type=_positive, default=max(1, os.cpu_count() or 1))
    w.add_argument("--worker-index", type=_non_negative, default=0,
                   help="distinct per worker: offsets the sampler seed")
    w.set_defaults(func=cmd_worker)

    t = sub.add_parser("train", help="train one configuration and write a model folder")
    t.add_argument("--config", required=True, help="config JSON file")
    t.add_argument("--dataset", default="digits")
    t.add_argument("--epochs", type=_positive)
    t.add_argument("--out", required=True)
    t.add_argument("--cache", default="runs", help="folder whose teachers/ keeps trained "
                   "distillation teachers, so a second run reuses its fp twin")
    t.set_defaults(func=cmd_train)

    m = sub.add_parser("summary", help="print a config's per-layer precision, memory and MACs")
    m.add_argument("--config", required=True, help="config JSON file")
    m.add_argument("--dataset", default="digits", help="sets input shape and classes")
    m.set_defaults(func=cmd_summary)

    e = sub.add_parser("export", help="write a trial's model folder")
    e.add_argument("--storage", default=DEFAULT_STORAGE)
    e.add_argument("--study", required=True)
    e.add_argument("--trial", type=_non_negative,
                   help="trial number (default: most accurate on the Pareto front)")
    e.add_argument("--out", required=True)
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("predict", help="classify images with an exported model")
    r.add_argument("--model", required=True, help="exported model folder, or its model.bnnx")
    r.add_argument("--input", required=True, help=".npy of raw images (N,H,W) or (N,C,H,W)")
    r.set_defaults(func=cmd_predict)

    b = sub.add_parser("bench", help="run a benchmark from bench/")
    b.add_argument("suite", nargs="?", default="kernels")
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        if os.environ.get("BNNX_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
