"""Export a trained candidate as a folder: config, weights, packed model and a model card.

Folders are written to a temporary sibling and renamed into place, so an interrupted export never
leaves a half-written model where a complete one is expected.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.artifacts import download_artifact
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import kernels
from spaces import Config, build_model

from .deploy import (
    DEFAULT_FORMATS,
    DEPLOY_FILES,
    FORMAT_LINES,
    FormatCheck,
    card_sections,
    chosen_formats,
    validation_images,
    write_formats,
)
from .objective import WEIGHTS_ATTR
from .settings import SearchSettings, exact_float_of
from .storage import StorageError, artifact_store, artifacts_dir, load_study
from .study import study_settings

CONFIG_FILE, WEIGHTS_FILE, PACKED_FILE, CARD_FILE = (
    "config.json",
    "weights.safetensors",
    "model.bnnx",
    "README.md",
)
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, PACKED_FILE, CARD_FILE, *DEPLOY_FILES)  # all bnnx writes


CONFIG_DIGEST = "bnnx_config_sha256"  # weights metadata: which config.json they belong to


class ModelFolderError(ValueError):
    """A model folder or file that is missing or unreadable."""


@dataclass(frozen=True)
class CardOrigin:
    """Where a model comes from, for its card: the machine its latency was measured on
    (search.objective.measure_latency's facts: cpu, isa, threads), the kernel path, and for a
    search's trial the study, its settings and the trial's training threads, from which the
    card writes the commands that reproduce it."""

    measured_on: dict[str, Any] = field(default_factory=dict)
    isa: str | None = None
    study: str | None = None
    trial: int | None = None
    settings: SearchSettings | None = None


def build_for(config: Config, meta: dict[str, Any]) -> nn.Module:
    return build_model(
        config, meta["in_channels"], meta["num_classes"], meta["image_size"], meta["mean"],
        meta["std"],
    )


def load_weights(model: nn.Module, path: Path) -> nn.Module:
    """Weights from safetensors (never pickle) into `model`; shape or key mismatch is an error."""
    try:
        state = load_file(str(path))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, OSError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFolderError(f"weights file {path} is unreadable or does not fit: {first}") \
            from None
    return model.eval()


def write_model_folder(
    out_dir: Path,
    config: Config,
    model: nn.Module,
    meta: dict[str, Any],
    metrics: dict[str, Any],
    title: str,
    force: bool = False,
    formats: tuple[str, ...] = DEFAULT_FORMATS,
    origin: CardOrigin | None = None,
    float_parts: str = "exact",
) -> Path:
    """Write config.json, weights.safetensors, model.bnnx, README.md and the other `formats`
    (search.deploy: each checked against model.bnnx) atomically. model.bnnx's float parts are
    compiled as `float_parts` says (search.settings.FLOAT_PARTS); "fast" ones are checked
    against the torch model on validation images, the result on the card.

    The folder is written beside `out_dir` and renamed into place. An existing `out_dir` must be
    empty, or a bnnx model folder replaced with `force`: nothing bnnx did not write is deleted.
    `origin` tells the card where the latency was measured and how to reproduce the model.
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir, force)
    formats = chosen_formats(formats)
    exact_float = exact_float_of(float_parts)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (tmp / CONFIG_FILE).write_text(config.to_json() + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        config_sha = hashlib.sha256((tmp / CONFIG_FILE).read_bytes()).hexdigest()
        save_file(state, str(tmp / WEIGHTS_FILE),
                  metadata={"bnnx_data": json.dumps(meta), CONFIG_DIGEST: config_sha})
        size = meta["image_size"]
        packed = kernels.compile(model, (meta["in_channels"], size, size),
                                 exact_float=exact_float)
        packed.save(str(tmp / PACKED_FILE))
        checks = write_formats(tmp, model, packed, meta, formats)
        against_torch = None if exact_float else fast_float_check(model, packed, meta)
        card = model_card(title, config, meta, metrics, packed, checks, origin, against_torch)
        (tmp / CARD_FILE).write_text(card)
        _move_into_place(tmp, out_dir, force)
    finally:
        _remove_model_folder(tmp)
    return out_dir


@dataclass(frozen=True)
class FloatCheck:
    """A fast-float-parts packed model against the torch model it was compiled from, on the
    first `images` validation images: predictions that differ and the largest logit gap."""

    images: int
    differing: int
    max_abs_diff: float


def fast_float_check(model: nn.Module, packed: kernels.PackedModel,
                     meta: dict[str, Any]) -> FloatCheck:
    images = validation_images(meta)
    with torch.inference_mode():
        reference = model(torch.from_numpy(images)).numpy()
    logits = packed(images)
    return FloatCheck(len(images), int((logits.argmax(1) != reference.argmax(1)).sum()),
                      float(np.abs(logits - reference).max()))


def is_model_folder(path: Path) -> bool:
    """A folder holding a packed model and nothing but the files an export writes."""
    names = {p.name for p in path.iterdir()} if path.is_dir() else set()
    return PACKED_FILE in names and names <= set(MODEL_FILES)


def check_out_dir(out_dir: Path, force: bool) -> None:
    """Refuse an output folder whose contents bnnx would have to delete (before any work)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ModelFolderError(f"--out {out_dir} is a file; give a folder path")
    here = Path.cwd().resolve()
    if out_dir.resolve() == here or out_dir.resolve() in here.parents:
        raise ModelFolderError(f"--out {out_dir} is the current folder or holds it; give a new "
                               "folder for the model")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not is_model_folder(out_dir):
        raise ModelFolderError(
            f"--out {out_dir} is not empty and is not a bnnx model folder; bnnx never deletes "
            "files it did not write: give a new or empty folder"
        )
    if not force:
        raise ModelFolderError(f"--out {out_dir} holds a bnnx model already; add --force to "
                               "replace it, or give a new folder")


def _move_into_place(new: Path, out_dir: Path, force: bool) -> None:
    """Rename `new` to `out_dir`; a model folder already there is set aside, then removed."""
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    old = None
    if out_dir.exists():
        check_out_dir(out_dir, force)  # it may have changed while the model was written
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
        os.replace(out_dir, old / out_dir.name)
    try:
        new.rename(out_dir)
    except OSError:
        if old is not None:  # put the previous model back where it was
            os.replace(old / out_dir.name, out_dir)
        raise
    finally:
        if old is not None:
            _remove_model_folder(old / out_dir.name)
            _remove_model_folder(old)


def _remove_model_folder(path: Path) -> None:
    """Delete the files an export writes, then the folder if that left it empty."""
    if not path.is_dir():
        return
    for name in MODEL_FILES:
        (path / name).unlink(missing_ok=True)
    for leftover in path.glob(f"{PACKED_FILE}.tmp"):
        leftover.unlink()
    try:
        path.rmdir()
    except OSError:
        pass  # something else is in it: not ours to delete


def model_card(
    title: str, config: Config, meta: dict, metrics: dict, packed: kernels.PackedModel,
    checks: list[FormatCheck] | None = None, origin: CardOrigin | None = None,
    against_torch: FloatCheck | None = None,
) -> str:
    """The folder's README.md; `against_torch`: the fast float parts' check (None: exact)."""
    origin = origin or CardOrigin()
    rows = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in metrics.items())
    layers = "\n".join(
        f"| {r.name} | {r.kind} | {r.binary_macs} | {r.float_macs} |"
        for r in packed.layers_info()
    )
    formats = "".join(f"- {FORMAT_LINES[c.format]}\n" for c in checks or [] if c.format != "bnnx")
    return f"""# {title}

A binary neural network found by bnnx on `{meta['dataset']}`
({meta['in_channels']}x{meta['image_size']}x{meta['image_size']} inputs, {meta['num_classes']}
classes). The model normalises raw images itself (mean {meta['mean']}, std {meta['std']}).

## Metrics
| metric | value |
|---|---|
{rows}

{_latency_section(metrics, origin)}
{_float_parts_section(against_torch)}
{_reproduce_section(meta, metrics, origin, against_torch is not None)}
## Layers (packed model)
| layer | kind | binary MACs | float MACs |
|---|---|---|---|
{layers}

## Files
- `config.json`: the configuration (Reproduce, above, trains it again).
- `weights.safetensors`: the trained torch weights (dataset metadata in the file's metadata).
- `model.bnnx`: the packed-bit model for the bnnx kernels ({packed.packed_size_bytes} bytes).
{formats}
{card_sections(checks or [])}
## Configuration
```json
{config.to_json()}
```
"""


def _latency_section(metrics: dict, origin: CardOrigin) -> str:
    """The latency with the machine it belongs to: latencies of different CPUs do not compare
    (kernels.machine), so the card names the CPU model, the ISA path and the threads."""
    on = origin.measured_on
    latency = metrics.get("latency_ms")
    lines = ["## Latency"]
    if isinstance(latency, (int, float)):
        spread = metrics.get("latency_iqr_ms")
        iqr = f" (IQR {spread:.2g} ms)" if isinstance(spread, (int, float)) else ""
        lines.append(f"{latency:.4g} ms per image{iqr}, batch 1, bnnx packed-bit kernels.")
    lines += [
        f"- CPU model: {on.get('cpu', 'not recorded')}",
        f"- ISA path of the kernels: {origin.isa or on.get('isa') or 'not recorded'}",
        f"- threads: {on.get('threads', 'not recorded')}",
        "",
        "Time it on another machine: `bnnx remeasure` for a study's trials, or the `bnnx "
        "predict` command below.",
    ]
    return "\n".join(lines) + "\n"


def _float_parts_section(against_torch: FloatCheck | None) -> str:
    """How model.bnnx runs the float parts (stem, downsampling shortcuts, head)."""
    lines = ["## Float parts"]
    if against_torch is None:
        lines.append("Exact: model.bnnx runs the float layers as torch does, in torch's order, "
                     "so its logits equal the torch model's bit for bit.")
    else:
        c = against_torch
        lines.append(
            "Fast (`--float-parts fast`): BatchNorm and the input normalisation are folded into "
            "the float convolutions, which run on bnnx's own kernels. The logits are within "
            "float rounding of the torch model's, except where a binary layer's input lies "
            f"within rounding of zero and its sign flips. On the first {c.images} validation "
            f"images, at export time: {c.differing} predictions differ from the torch model's, "
            f"largest logit difference {c.max_abs_diff:.3g}.")
    return "\n".join(lines) + "\n"


def _reproduce_section(meta: dict, metrics: dict, origin: CardOrigin, fast: bool) -> str:
    """The commands that train this configuration again (its seed is in config.json; the
    accuracy also depends on the training threads) and, for a search's trial, the search that
    found it, with its space; `fast`: with fast float parts."""
    threads = metrics.get("train_threads")
    parts = ["--float-parts", "fast"] if fast else []
    train = ["bnnx", "train", "--config", "config.json", "--dataset", str(meta["dataset"]),
             *(["--threads", str(threads)] if threads else []), *parts, "--out", "retrained"]
    lines = ["## Reproduce", "Train this configuration again (seed and epochs are in "
             "config.json):", "```", shlex.join(train), "```"]
    s = origin.settings
    if s is not None:
        search = ["bnnx", "search", "--dataset", s.dataset, "--space", s.space,
                  "--trials", str(s.trials), "--epochs", str(s.epochs), "--seed", str(s.seed),
                  "--sampler", s.sampler, "--objectives", ",".join(s.objectives),
                  "--early-stop", s.early_stop, "--latency-threads", str(s.latency_threads),
                  *parts]
        for flag, value in (("--max-latency-ms", s.max_latency_ms),
                            ("--max-size-kb", s.max_size_kb)):
            if value is not None:
                search += [flag, f"{value:g}"]
        lines += [f"Found as trial {origin.trial} of study `{origin.study}`, searched on "
                  f"`{s.dataset}` in the `{s.space}` space by:", "```", shlex.join(search), "```"]
        if s.space_knobs:
            knobs = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}"
                                for k, v in s.space_knobs.items())  # a knob a line
            lines += ["<details><summary>The search space's knobs</summary>", "", "```json",
                      "{\n" + knobs + "\n}", "```", "</details>"]
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def pick_trial(study: optuna.Study, number: int | None) -> optuna.trial.FrozenTrial:
    """The numbered trial, or the most accurate trial on the Pareto front (ties: faster)."""
    complete = {t.number: t for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}
    if number is None:
        front = study.best_trials
        if not front:
            raise StorageError(f"study {study.study_name!r} has no completed trial to export")
        return max(front, key=lambda t: (t.values[0], -t.values[1]))
    if number not in complete:
        have = ", ".join(map(str, sorted(complete))) or "none"
        raise StorageError(
            f"trial {number} of study {study.study_name!r} is not a completed trial; "
            f"completed: {have}"
        )
    return complete[number]


def trial_model(spec: str, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                artifacts: str | None = None) -> nn.Module:
    """A trial's trained model, rebuilt from its config and weights artifact (for export and
    search.remeasure).

    `artifacts` overrides the folder the study recorded (e.g. on another machine)."""
    if WEIGHTS_ATTR not in trial.user_attrs:
        why = trial.user_attrs.get("infeasible", "it stored no weights")
        raise StorageError(f"trial {trial.number} of study {study.study_name!r} was never "
                           f"trained ({why})")
    folder = Path(artifacts) if artifacts else artifacts_dir(spec, study_settings(study).artifacts)
    if not folder.is_dir():
        raise StorageError(f"artifacts folder {folder} of study {study.study_name!r} does not "
                           "exist; give the folder holding its weights with --artifacts")
    store = artifact_store(folder)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / WEIGHTS_FILE
        try:
            download_artifact(
                artifact_store=store,
                file_path=str(weights),
                artifact_id=trial.user_attrs[WEIGHTS_ATTR],
            )
        except Exception as exc:
            raise StorageError(
                f"weights of trial {trial.number} not found in {folder}: "
                f"{exc}"
            ) from None
        config = Config.from_dict(trial.user_attrs["config"])
        return load_weights(build_for(config, trial.user_attrs["data"]), weights)


def export_trial(spec: str, study_name: str, trial_number: int | None, out_dir: Path,
                 force: bool = False, artifacts: str | None = None,
                 formats: tuple[str, ...] = DEFAULT_FORMATS) -> Path:
    """Rebuild a trial's model from its config and weights artifact and write its folder, with
    the deploy `formats` (search.deploy.FORMATS) beside model.bnnx.

    `artifacts` overrides the folder the study recorded (e.g. on another machine)."""
    check_out_dir(Path(out_dir), force)
    formats = chosen_formats(formats)  # checked before anything is loaded
    study = load_study(spec, study_name)
    trial = pick_trial(study, trial_number)
    config = Config.from_dict(trial.user_attrs["config"])
    meta = trial.user_attrs["data"]
    model = trial_model(spec, study, trial, artifacts)
    title = f"bnnx model: study {study_name}, trial {trial.number}"
    metrics = dict(trial.user_attrs.get("metrics", {}))
    origin = CardOrigin(measured_on=trial.user_attrs.get("measured_on") or {},
                        isa=trial.user_attrs.get("isa"), study=study_name, trial=trial.number,
                        settings=study_settings(study))
    return write_model_folder(Path(out_dir), config, model, meta, metrics, title, force, formats,
                              origin, origin.settings.float_parts)


def load_packed(model_dir: Path) -> kernels.PackedModel:
    """The packed model of an exported folder (or its model.bnnx itself), with errors that say
    what is missing. A folder's weights.safetensors and config.json, where it has them, must be
    the model.bnnx's own (_check_one_model): predict never answers for a mixed folder."""
    model_dir = Path(model_dir)
    if model_dir.is_file() and model_dir.suffix == Path(PACKED_FILE).suffix:
        return kernels.load(str(model_dir))
    if model_dir.is_file():
        raise ModelFolderError(f"{model_dir} is neither a model folder nor a {PACKED_FILE} "
                               "(predict also runs model.onnx and model.xml)")
    if not model_dir.is_dir():
        raise ModelFolderError(f"model folder {model_dir} does not exist")
    path = model_dir / PACKED_FILE
    if not path.is_file():
        raise ModelFolderError(
            f"{model_dir} has no {PACKED_FILE}; an exported folder holds "
            f"{CONFIG_FILE}, {WEIGHTS_FILE}, {PACKED_FILE}, {CARD_FILE}"
        )
    packed = kernels.load(str(path))
    if (model_dir / WEIGHTS_FILE).is_file():
        _check_one_model(model_dir, packed)
    return packed


def _check_one_model(model_dir: Path, packed: kernels.PackedModel) -> None:
    """weights.safetensors (and config.json, see _check_config) must be what model.bnnx was
    compiled from: the same input shape and classes, and the same values in every float stem or
    head tensor model.bnnx keeps verbatim (named by module path, as in the state dict). Reads a
    few small tensors; rebuilds nothing."""
    import numpy as np
    from safetensors import safe_open

    from kernels.float_ops import FloatOp

    weights = model_dir / WEIGHTS_FILE
    meta = _folder_meta(model_dir)
    size = meta["image_size"]
    if (packed.input_shape, packed.output_shape) != (
            (meta["in_channels"], size, size), (meta["num_classes"],)):
        raise ModelFolderError(
            f"{weights} is for {meta['in_channels']}x{size}x{size} inputs and "
            f"{meta['num_classes']} classes, {PACKED_FILE} for "
            f"{'x'.join(map(str, packed.input_shape))} inputs and {packed.output_shape[0]} "
            "classes: the folder mixes two models; export it again"
        )
    try:
        with safe_open(str(weights), framework="np") as f:
            stored = set(f.keys())
            for op in (op for op in packed.ops if isinstance(op, FloatOp)):
                for key, array in op.tensors.items():
                    name = f"{op.name}.{key}"
                    if name in stored and not np.array_equal(f.get_tensor(name), array):
                        raise ModelFolderError(
                            f"{weights} and {PACKED_FILE} differ in {name}: the folder mixes "
                            "two models; export it again"
                        )
    except (SafetensorError, OSError, TypeError) as exc:
        raise ModelFolderError(f"weights file {weights} is unreadable: {exc}") from None
    _check_config(model_dir)


def _folder_meta(model_dir: Path) -> dict[str, Any]:
    """weights.safetensors' dataset metadata ("bnnx_data"), checked for the sizes it needs."""
    weights = model_dir / WEIGHTS_FILE
    metadata = _safetensors_metadata(weights)
    try:
        meta = json.loads(metadata["bnnx_data"])
        sizes = [meta[key] for key in ("in_channels", "image_size", "num_classes")]
    except (KeyError, TypeError, json.JSONDecodeError):
        sizes = []
    if len(sizes) != 3 or not all(isinstance(v, int) and v >= 1 for v in sizes):
        raise ModelFolderError(f"weights file {weights} lacks valid bnnx_data metadata "
                               "(positive ints in_channels, image_size, num_classes)")
    return meta


def _check_config(model_dir: Path) -> None:
    """config.json must be the one the weights record the sha256 of (CONFIG_DIGEST; folders
    exported before that record was written are not checked)."""
    weights, config = model_dir / WEIGHTS_FILE, model_dir / CONFIG_FILE
    digest = _safetensors_metadata(weights).get(CONFIG_DIGEST)
    if digest is not None and (not config.is_file()
                               or hashlib.sha256(config.read_bytes()).hexdigest() != digest):
        raise ModelFolderError(f"{config} is not the configuration {weights} was trained with "
                               "(its sha256 differs from the one recorded); export it again")


def torch_model(model_dir: Path) -> nn.Module:
    """The torch model of an exported folder (config.json + weights.safetensors)."""
    model_dir = Path(model_dir)
    meta = _folder_meta(model_dir)
    _check_config(model_dir)
    try:
        config = Config.from_json((model_dir / CONFIG_FILE).read_text())
    except OSError as exc:
        raise ModelFolderError(f"model folder {model_dir} is incomplete: {exc}") from None
    return load_weights(build_for(config, meta), model_dir / WEIGHTS_FILE)


def _safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise ModelFolderError(f"weights file {path} is unreadable: {exc}") from None

