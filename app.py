"""bnnx: the one entry point. `python app.py` opens the explorer; subcommands run headless.

Errors a user can cause (bad names, ranges, files, storage) print one line and exit with 2;
set BNNX_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

    from search.stopping import StopSignals

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
OUT_HELP = "model folder to write: new or empty (written beside it, then renamed into place)"
FORCE_HELP = "replace --out when it is a bnnx model folder (never any other folder)"
FLOAT_PARTS_HELP = ("how the packed model runs its float layers (stem, shortcuts, head), timed "
                    "and exported so: exact: torch's ops, bit-equal logits; fast: BatchNorm "
                    "and the input normalisation folded into bnnx's float kernels, logits "
                    "within rounding")


def cmd_explorer(args: argparse.Namespace) -> None:
    from explorer import run_app

    if Path(args.runs).exists() and not Path(args.runs).is_dir():
        raise ValueError(f"--runs {args.runs} is a file; give a folder for logs and exports")
    run_app(args.storage, Path(args.runs), host=args.host, port=args.port,
            open_browser=not args.no_browser, allow_remote=args.allow_remote)


def cmd_search(args: argparse.Namespace) -> int:
    from search import SearchSettings, run_search
    from search.stopping import StopSignals

    settings = None if args.resume else SearchSettings(
        dataset=args.dataset, space=args.space, trials=args.trials or 10, epochs=args.epochs,
        seed=args.seed, artifacts=args.artifacts or "", latency_threads=args.latency_threads,
        sampler=args.sampler, objectives=args.objectives.split(","),
        max_latency_ms=args.max_latency_ms, max_size_kb=args.max_size_kb,
        early_stop=args.early_stop, train_subset=args.train_subset,
        float_parts=args.float_parts,
    )
    stop = StopSignals.shared() if args.workers > 1 else StopSignals()
    with stop.installed():
        study = run_search(args.storage, args.study, settings, workers=args.workers, stop=stop,
                           timeout=args.timeout, resume_trials=args.trials if args.resume else None,
                           progress=True)
        if args.remeasure_front and not stop.requested:
            from search.remeasure import front_numbers, remeasure_trials

            remeasure_trials(args.storage, args.study, front_numbers(study),
                             study.user_attrs["bnnx"]["latency_threads"], interleaved=True)
    return _report(args.storage, args.study, study, stop)


def _report(spec: str, name: str, study: optuna.Study, stop: StopSignals) -> int:
    """The study's summary as JSON on stdout, the front table and closing line on stderr; the
    exit code: 0, 1 if every trial failed, 130 when stopped by a signal."""
    from search.progress import cpu_models, front_rows, front_table, trial_kind
    from search.stopping import EXIT_STOPPED
    from search.storage import masked

    kinds = Counter(trial_kind(t) for t in study.trials)
    rows = front_rows(study)
    cpus = cpu_models(study.trials)
    best = max(rows, key=lambda r: r["val_accuracy"]) if rows else None
    print(json.dumps({
        "study": name,
        "storage": masked(spec),
        **{kind: kinds[kind] for kind in ("complete", "pruned", "infeasible", "failed",
                                          "stopped")},
        "best_val_accuracy": best["val_accuracy"] if best else None,
        "pareto_front": rows,
        "latency_cpus": cpus,
    }, indent=2))
    sys.stdout.flush()
    if rows:
        print(f"Pareto front of {name}:\n{front_table(rows)}", file=sys.stderr)
    if len(cpus) > 1:
        print(f"warning: latencies were measured on {len(cpus)} CPU models ({'; '.join(cpus)}): "
              "they compare only within one; 'bnnx remeasure' times them all on this machine",
              file=sys.stderr)
    best_text = f"best val {100 * best['val_accuracy']:.1f}%" if best else "no completed trial"
    counts = ", ".join(f"{kinds[k]} {k}" for k in ("complete", "pruned", "infeasible", "failed",
                                                   "stopped"))
    if stop.requested:
        print(f"search {name} stopped by a signal: {counts}, {best_text}", file=sys.stderr)
        return EXIT_STOPPED
    print(f"search {name} finished: {counts}, {best_text}", file=sys.stderr)
    failed = [t for t in study.trials if trial_kind(t) == "failed"]
    if failed and not any(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials):
        reason = failed[0].user_attrs.get("fail_reason", "no reason recorded")
        print(f"error: every trial failed; the first: {reason}", file=sys.stderr)
        return 1
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from search import load_study, raise_budget, run_worker
    from search.progress import Progress
    from search.stopping import StopSignals

    study = raise_budget(args.storage, args.study, args.trials) if args.trials \
        else load_study(args.storage, args.study)
    deadline = None if args.timeout is None else time.time() + args.timeout
    with StopSignals().installed() as stop, Progress(study):
        run_worker(args.storage, args.study, worker=args.worker_index, threads=args.threads,
                   artifacts=args.artifacts, stop=stop, deadline=deadline)
    return _report(args.storage, args.study, load_study(args.storage, args.study), stop)


def cmd_enqueue(args: argparse.Namespace) -> None:
    from search.enqueue import enqueue_configs

    numbers = enqueue_configs(args.storage, args.study, [Path(c) for c in args.config])
    print(json.dumps({"study": args.study, "enqueued_trials": numbers}))


def cmd_remeasure(args: argparse.Namespace) -> None:
    from search import load_study
    from search.remeasure import front_numbers, remeasure_trials

    study = load_study(args.storage, args.study)
    numbers = args.trial or (front_numbers(study) if args.front else None)
    threads = args.threads or study.user_attrs["bnnx"].get("latency_threads", 1)
    rows = remeasure_trials(args.storage, args.study, numbers, threads,
                            interleaved=args.interleaved, artifacts=args.artifacts)
    for r in rows:
        print(f"trial {r['trial']:>4}: {r['stored_ms']:.4f} ms stored (on {r['stored_on']}), "
              f"{r['latency_ms']:.4f} ms here", file=sys.stderr)
    print(json.dumps({"study": args.study, "machine": rows[0]["machine"] if rows else None,
                      "trials": rows}, indent=2))


def cmd_train(args: argparse.Namespace) -> None:
    import torch

    from search.datasets import get_dataset
    from search.export import CardOrigin, check_out_dir, write_model_folder
    from search.objective import evaluate_and_profile
    from search.settings import exact_float_of
    from search.training import print_epoch, train
    from spaces import Config

    path = Path(args.config)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    config = Config.from_json(path.read_text())
    check_out_dir(Path(args.out), args.force)  # before training, not after it
    if Path(args.cache).exists() and not Path(args.cache).is_dir():
        raise ValueError(f"--cache {args.cache} is a file; give a folder")
    torch.set_num_threads(args.threads)
    if args.epochs is not None:
        config = Config.from_dict({**config.to_dict(),
                                   "train": {**config.to_dict()["train"], "epochs": args.epochs}})
    data = get_dataset(args.dataset)
    result = train(config, data, cache=Path(args.cache), on_epoch=print_epoch(path.stem))
    report = evaluate_and_profile(config, result.model, data,
                                  exact_float=exact_float_of(args.float_parts))
    metrics = {**report["metrics"], "train_seconds": result.seconds,
               "train_threads": args.threads}
    origin = CardOrigin(measured_on=report["measured_on"], isa=report["isa"])
    out = write_model_folder(Path(args.out), config, result.model, data.meta(), metrics,
                             f"bnnx model trained from {path.name}", args.force, origin=origin,
                             float_parts=args.float_parts)
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

    out = export_trial(args.storage, args.study, args.trial, Path(args.out), args.force,
                       args.artifacts, tuple(args.format.split(",")))
    print(json.dumps({"out": str(out)}))


def cmd_predict(args: argparse.Namespace) -> None:
    import numpy as np

    from kernels.errors import InputError
    from search import load_packed
    from search.deploy import RUNTIME_SUFFIXES, RuntimeModel

    where = Path(args.model)
    model = RuntimeModel(where) if where.suffix in RUNTIME_SUFFIXES else load_packed(where)
    path = Path(args.input)
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"input {path} is not a readable .npy array: {exc}") from None
    if not isinstance(x, np.ndarray):  # np.load opens an .npz archive lazily
        x.close()
        raise ValueError(f"input {path} is an .npz archive; predict reads one .npy array")
    if x.dtype.kind == "f" and not np.isfinite(x).all():  # ints are finite; others refused below
        bad = x.size - np.count_nonzero(np.isfinite(x))
        raise ValueError(f"input {path} has {bad} NaN or infinite values; pixels must be finite")
    try:
        logits = model(x)
    except InputError as exc:
        raise ValueError(f"input {path}: {exc}") from None
    print(json.dumps({"predictions": [int(i) for i in logits.argmax(axis=1)]}))


def cmd_repair(args: argparse.Namespace) -> None:
    from search.journal import first_bad_line, repair_torn_tail, salvage_journal

    path = Path(args.storage)
    if "://" in args.storage or not path.is_file():
        raise FileNotFoundError(f"journal file {args.storage} does not exist (repair works on "
                                "journal files; databases keep their own consistency)")
    torn = repair_torn_tail(path)
    line = first_bad_line(path)
    if line is None:
        print(json.dumps({"journal": str(path), "repaired": torn is not None,
                          "backup": str(torn.backup) if torn else None}))
        return
    report = salvage_journal(path)
    print(json.dumps({"journal": str(path), "repaired": True, "first_bad_line": line,
                      "salvaged_lines": report.salvaged_lines,
                      "dropped_lines": report.dropped_lines, "backup": str(report.backup)}))


def cmd_bench(args: argparse.Namespace) -> None:
    import runpy

    folder = Path(__file__).resolve().parent / "bench"
    suites = _bench_suites()
    if args.suite not in suites:
        raise ValueError(f"unknown benchmark {args.suite!r}; allowed: {', '.join(suites)}")
    sys.path.insert(0, str(folder))  # as when run directly (bench/search.py reads training.py)
    sys.argv = [str(folder / f"{args.suite}.py"), *args.rest]
    runpy.run_path(sys.argv[0], run_name="__main__")


STORAGE_HELP = "journal file, sqlite:///FILE (one worker) or postgresql://USER:PASS@HOST/DB"
SUB_STORAGE_HELP = STORAGE_HELP + " (default: the --storage given before the subcommand)"


class _DefaultsFormatter(argparse.HelpFormatter):
    """Help lines end with the option's default, where it has a real one not already told."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default is not None and action.default is not False
                and action.default != argparse.SUPPRESS and "default" not in text
                and action.option_strings):
            text += " (default: %(default)s)"
        return text


def _positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _port(text: str) -> int:
    port = _positive(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"expected a port 1..65535, got {text!r}")
    return port


def _storage(parser: argparse.ArgumentParser) -> None:
    """--storage after a subcommand; left out, the one before it (or its default) holds."""
    parser.add_argument("--storage", default=argparse.SUPPRESS, help=SUB_STORAGE_HELP)


def _bench_suites() -> list[str]:
    folder = Path(__file__).resolve().parent / "bench"
    return sorted(p.stem for p in folder.glob("*.py"))


def build_parser() -> argparse.ArgumentParser:
    from search.early_stop import EARLY_STOP_MODES
    from search.samplers import SAMPLERS
    from search.settings import FLOAT_PARTS
    from search.storage import DEFAULT_STORAGE

    fmt = _DefaultsFormatter
    p = argparse.ArgumentParser(
        description="bnnx: search binary neural networks, profile them on packed-bit kernels. "
        "Without a subcommand it serves the explorer.",
        formatter_class=fmt,
    )
    p.add_argument("--storage", default=DEFAULT_STORAGE, help=STORAGE_HELP)
    p.add_argument("--runs", default="runs", help="folder for the explorer's logs and exports")
    p.add_argument("--host", default="127.0.0.1",
                   help="address the explorer serves on; any but loopback needs --allow-remote")
    p.add_argument("--allow-remote", action="store_true",
                   help="serve on a non-loopback --host (no authentication: anyone who reaches "
                   "it can start searches and download models)")
    p.add_argument("--port", type=_port, default=8050, help="the explorer's port")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    p.set_defaults(func=cmd_explorer)
    sub = p.add_subparsers(title="subcommands", metavar="COMMAND")

    s = sub.add_parser("search", help="create a study (or --resume one) and run it to its "
                       "trial budget", formatter_class=fmt)
    s.add_argument("--dataset", default="digits",
                   help="digits, fashion-mnist, mnist, kmnist, cifar10, cifar100 or folder:PATH")
    s.add_argument("--space", default="quick",
                   help="preset (quick, survey) or a .json/.yaml space file")
    s.add_argument("--trials", type=_positive,
                   help="the budget: finished (complete or pruned) trials over all workers; "
                   "failed ones are made up for (default: 10; with --resume: the study's, "
                   "raised to this)")
    s.add_argument("--epochs", type=_positive, default=3, help="training epochs per trial")
    s.add_argument("--workers", type=_positive, default=1,
                   help="local worker processes (each trains on CPUs / workers threads)")
    _storage(s)
    s.add_argument("--study", default="bnnx", help="study name (new, unless --resume)")
    s.add_argument("--resume", action="store_true",
                   help="continue an existing study with its own settings (only --trials, "
                   "--timeout, --workers and --remeasure-front apply)")
    s.add_argument("--seed", type=_non_negative, default=0, help="sampler and training seed")
    s.add_argument("--sampler", default="tpe", choices=SAMPLERS,
                   help="Optuna sampler, stored with the study")
    s.add_argument("--objectives", default="acc,latency",
                   help="acc,latency or acc,latency,size (packed model size in KB)")
    s.add_argument("--max-latency-ms", type=_positive_float,
                   help="latency budget: a candidate over it is measured before training, "
                   "recorded infeasible and never trained")
    s.add_argument("--max-size-kb", type=_positive_float,
                   help="packed model size budget, likewise")
    s.add_argument("--early-stop", default="halving", choices=EARLY_STOP_MODES,
                   help="halving: stop a trial at an epoch rung when it trails the trials of "
                   "similar or lower latency (recorded as pruned)")
    s.add_argument("--timeout", type=_positive_float,
                   help="seconds after which no new trial starts (running ones finish)")
    s.add_argument("--train-subset", type=_positive,
                   help="train every candidate on this many training images (stratified; a "
                   "proxy search), validate on the whole validation split")
    s.add_argument("--artifacts", help="folder for trial weights (default: artifacts/ beside a "
                   "journal or SQLite file, runs/artifacts for a server database)")
    s.add_argument("--latency-threads", type=_positive, default=1,
                   help="threads every latency is measured on, stored with the study so all "
                   "trials compare (1 stays exact on a busy machine)")
    s.add_argument("--float-parts", default="exact", choices=FLOAT_PARTS, help=FLOAT_PARTS_HELP)
    s.add_argument("--remeasure-front", action="store_true",
                   help="at the end, time the Pareto front's models again side by side")
    s.set_defaults(func=cmd_search)

    w = sub.add_parser("worker", help="join an existing study (any machine) and run trials "
                       "until its budget is reached", formatter_class=fmt)
    _storage(w)
    w.add_argument("--study", required=True, help="name of the study to join")
    w.add_argument("--trials", type=_positive,
                   help="raise the study's trial budget to this (default: keep it)")
    w.add_argument("--timeout", type=_positive_float,
                   help="seconds after which no new trial starts (running ones finish)")
    w.add_argument("--threads", type=_positive, default=max(1, os.cpu_count() or 1),
                   help="training threads (latency uses the study's --latency-threads)")
    w.add_argument("--worker-index", type=_non_negative, default=0,
                   help="distinct per worker: offsets the sampler seed")
    w.add_argument("--artifacts", help="this machine's path to the study's weights folder "
                   "(default: the folder recorded with the study)")
    w.set_defaults(func=cmd_worker)

    q = sub.add_parser("enqueue", help="queue hand-written configurations (e.g. an exported "
                       "config.json) in a study; they run first", formatter_class=fmt)
    _storage(q)
    q.add_argument("--study", required=True, help="study to seed")
    q.add_argument("--config", required=True, action="append",
                   help="config JSON file (repeat for several)")
    q.set_defaults(func=cmd_enqueue)

    x = sub.add_parser("remeasure", help="time stored trials again on this machine from their "
                       "weights (no training); kept per machine with the study",
                       formatter_class=fmt)
    _storage(x)
    x.add_argument("--study", required=True, help="study whose trials to time")
    which = x.add_mutually_exclusive_group()
    which.add_argument("--front", action="store_true", help="the Pareto front's trials")
    which.add_argument("--all", action="store_true", help="every trained trial (the default)")
    which.add_argument("--trial", type=_non_negative, action="append",
                       help="a trial number (repeat for several)")
    x.add_argument("--threads", type=_positive,
                   help="threads to time on (default: the study's --latency-threads)")
    x.add_argument("--interleaved", action="store_true",
                   help="time all models side by side in alternating rounds")
    x.add_argument("--artifacts", help="folder holding the study's weights (default: the one "
                   "recorded with the study)")
    x.set_defaults(func=cmd_remeasure)

    t = sub.add_parser("train", help="train one configuration and write a model folder",
                       formatter_class=fmt)
    t.add_argument("--config", required=True, help="config JSON file")
    t.add_argument("--dataset", default="digits", help="dataset to train on (as for search)")
    t.add_argument("--epochs", type=_positive, help="override the config's epochs")
    t.add_argument("--threads", type=_positive, default=max(1, os.cpu_count() or 1),
                   help="training threads (1 is faster on a busy machine; accuracy can differ "
                   "between thread counts)")
    t.add_argument("--float-parts", default="exact", choices=FLOAT_PARTS, help=FLOAT_PARTS_HELP)
    t.add_argument("--out", required=True, help=OUT_HELP)
    t.add_argument("--force", action="store_true", help=FORCE_HELP)
    t.add_argument("--cache", default="runs", help="folder whose teachers/ keeps trained "
                   "distillation teachers, so a second run reuses its fp twin")
    t.set_defaults(func=cmd_train)

    m = sub.add_parser("summary", help="print a config's per-layer precision, memory and MACs",
                       formatter_class=fmt)
    m.add_argument("--config", required=True, help="config JSON file")
    m.add_argument("--dataset", default="digits", help="sets input shape and classes")
    m.set_defaults(func=cmd_summary)

    e = sub.add_parser("export", help="write a trial's model folder", formatter_class=fmt)
    _storage(e)
    e.add_argument("--study", required=True, help="study holding the trial")
    e.add_argument("--trial", type=_non_negative,
                   help="trial number (default: most accurate on the Pareto front)")
    e.add_argument("--out", required=True, help=OUT_HELP)
    e.add_argument("--force", action="store_true", help=FORCE_HELP)
    e.add_argument("--artifacts", help="folder holding the study's weights (default: the one "
                   "recorded with the study)")
    e.add_argument("--format", default="bnnx", help="comma-separated formats to write: bnnx, "
                   "openvino (model.xml), onnx (model.onnx); each is checked against the packed "
                   "model on the study's validation images (openvino and onnx need the deploy "
                   "extra)")
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("predict", help="classify images with an exported model",
                       formatter_class=fmt)
    r.add_argument("--model", required=True, help="exported model folder, or its model.bnnx, "
                   "model.onnx (ONNX Runtime) or model.xml (OpenVINO)")
    r.add_argument("--input", required=True, help=".npy of raw images (N,H,W) or (N,C,H,W)")
    r.set_defaults(func=cmd_predict)

    j = sub.add_parser("repair", help="repair a journal file a crash left damaged (run it while "
                       "no search uses the file; a backup copy is kept beside it)",
                       formatter_class=fmt)
    _storage(j)
    j.set_defaults(func=cmd_repair)

    suites = _bench_suites()
    b = sub.add_parser("bench", help=f"run a benchmark: {', '.join(suites)}",
                       formatter_class=fmt)
    b.add_argument("suite", nargs="?", default="kernels", help=f"one of {', '.join(suites)}")
    b.add_argument("rest", nargs=argparse.REMAINDER,
                   help="the suite's own options (bnnx bench SUITE --help)")
    b.set_defaults(func=cmd_bench)
    return p


def _user_error(exc: BaseException) -> str | None:
    """The one line for an error a user can cause (bad value, file, storage), else None."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    if isinstance(exc, (ValueError, OSError)):
        return str(exc)
    if type(exc).__module__.split(".")[0] in ("optuna", "safetensors", "sqlalchemy", "psycopg"):
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
    return None


def main(argv: list[str] | None = None) -> int:
    from search.storage import masked

    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        line = _user_error(exc)
        if line is None or os.environ.get("BNNX_DEBUG"):
            raise
        print(f"error: {masked(line)}", file=sys.stderr)
        return EXIT_USAGE
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
