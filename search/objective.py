"""One trial: sample a config, compile and time it on the packed kernels, train, evaluate, store.

This is the only place where the search space, training, the kernels and the study meet.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import upload_artifact
from optuna.trial import TrialState
from safetensors.torch import save_file
from torch import nn

import kernels
from kernels.machine import machine_info
from kernels.profiling import Profile, steady_profile
from spaces import BinaryConv2d, BinaryLinear, Config, SearchSpace, build_model
from spaces.summary import summarize

from .budget import BUDGET_REASON, BudgetReached, check_place
from .datasets import Dataset
from .early_stop import LATENCY_ATTR, RungReporter, early_stop_rule
from .hypervolume import HV_REFERENCE_ATTR, HYPERVOLUME_ATTR, default_reference, hypervolume
from .settings import SearchSettings
from .stale import PROCESS_ATTR, this_process
from .stopping import STOPPED_REASON, SearchStopped, StopSignals
from .training import accuracy, train

WEIGHTS_ATTR = "weights_artifact"  # the Optuna artifact id of a trained trial's weights
ENQUEUED_ATTR = "enqueued_config"  # a whole config queued by `bnnx enqueue`
PROFILE_REPEATS = 20  # median of 20 batch-1 runs: stable to a few % for digits-sized nets
MAX_SPREAD = 0.15  # a profile whose IQR exceeds this share of its median is taken again


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Weights stored as 1 bit (binary-weight layers) versus 32-bit float parameters."""
    binary = 0
    for m in model.modules():
        if isinstance(m, (BinaryConv2d, BinaryLinear)) and m.weight_quantizer is not None:
            binary += m.weight.numel()
    total = sum(p.numel() for p in model.parameters())
    return {"params_binary": binary, "params_float": total - binary}


def measure_latency(packed: kernels.PackedModel, threads: int) -> tuple[Profile, dict]:
    """A steady batch-1 profile on `threads` threads and the facts it was measured with.

    The thread count is the study's, never the machine's free cores: a 2-thread kernel whose
    second core is busy waits at every layer's barrier, which once turned 0.05 ms into 90 ms.
    """
    profile, rounds = steady_profile(
        lambda: packed.profile(threads=threads, repeats=PROFILE_REPEATS), MAX_SPREAD
    )
    facts = {**machine_info(threads), "repeats": PROFILE_REPEATS, "rounds_ms": rounds,
             "iqr_ms": profile.total_iqr_ms}
    return profile, facts


def evaluate_and_profile(
    config: Config, model: nn.Module, data: Dataset, threads: int = 1, exact_float: bool = True
) -> dict[str, Any]:
    """Metrics of a trained model: accuracies (torch) and latency/size (packed kernels compiled
    with `exact_float`, measured on `threads` threads)."""
    packed = kernels.compile(model, (data.in_channels, data.image_size, data.image_size),
                             exact_float=exact_float)
    profile, measured_on = measure_latency(packed, threads)
    info = packed.layers_info()
    counts = parameter_counts(model)
    metrics = {
        "val_accuracy": accuracy(model, data.x_val, data.y_val),
        "test_accuracy": accuracy(model, data.x_test, data.y_test),
        "latency_ms": profile.total_ms,
        "latency_iqr_ms": profile.total_iqr_ms,
        **counts,
        "packed_bytes": packed.packed_size_bytes,
        "packed_kb": packed.packed_size_bytes / 1024,
        "fp32_bytes": 4 * (counts["params_binary"] + counts["params_float"]),
        "binary_macs": sum(r.binary_macs for r in info),
        "float_macs": sum(r.float_macs for r in info),
    }
    layer_latency = [{"name": r.name, "kind": r.kind, "ms": r.median_ms} for r in profile.layers]
    return {"metrics": metrics, "layer_latency": layer_latency, "isa": profile.isa,
            "measured_on": measured_on}


class DatasetUnavailable(RuntimeError):
    """The study's dataset cannot load in this process."""


class Objective:
    """Callable for `study.optimize`: returns the study's objectives (validation accuracy,
    latency in ms[, packed size in KB])."""

    def __init__(
        self,
        data: Dataset | Callable[[], Dataset],
        space: SearchSpace,
        settings: SearchSettings,
        artifacts: optuna.artifacts.FileSystemArtifactStore,
        cache: Path | None = None,
        stop: StopSignals | None = None,
    ) -> None:
        self._data, self.space, self.settings = data, space, settings
        self.unavailable: str | None = None  # why the dataset cannot load here, once it failed
        self.artifacts, self.cache = artifacts, cache
        self.stop = stop or StopSignals()
        self.rule = early_stop_rule(settings.early_stop)

    def __call__(self, trial: optuna.Trial) -> list[float]:
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise  # its rung and reason are on the trial already
        except BudgetReached:
            trial.set_user_attr("fail_reason", BUDGET_REASON)
            raise
        except (SearchStopped, SystemExit, KeyboardInterrupt):
            # Lightning turns SIGTERM into SystemExit; either way the trial ends FAIL, not RUNNING
            trial.set_user_attr("fail_reason", STOPPED_REASON)
            trial.study.stop()
            raise SearchStopped(STOPPED_REASON) from None
        except Exception as exc:  # recorded with the trial, the search goes on
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            raise

    @property
    def data(self) -> Dataset:
        """The dataset, loaded by the first trial: a worker on a machine that lacks it fails
        that trial with the reason (the study and the other workers go on) instead of dying
        before it records anything."""
        if not isinstance(self._data, Dataset):
            try:
                self._data = self._data()
            except Exception as exc:
                self.unavailable = f"dataset cannot load on this machine: {exc}"
                raise DatasetUnavailable(self.unavailable) from None
        return self._data

    def _run(self, trial: optuna.Trial) -> list[float]:
        trial.set_user_attr(PROCESS_ATTR, this_process())  # so a dead worker's trial is found
        if self.stop.requested:  # a signal came while Optuna was creating this trial
            raise SearchStopped(STOPPED_REASON)
        check_place(trial.study, trial.number)
        config = self._config(trial)
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("data", self.data.meta())
        trial.set_user_attr("train_images", len(self.data.y_train))  # fewer with --train-subset
        shape = (self.data.in_channels, self.data.image_size, self.data.image_size)
        # Compiled and timed before training: a config the kernels cannot run fails here, in
        # milliseconds, and one over a budget is never trained.
        untrained = build_model(config, shape[0], self.data.num_classes, shape[1])
        packed = kernels.compile(untrained, shape, exact_float=self.settings.exact_float)
        before, measured_on = measure_latency(packed, self.settings.latency_threads)
        size_kb = packed.packed_size_bytes / 1024
        trial.set_user_attr(LATENCY_ATTR, before.total_ms)  # early stopping's peers read it
        trial.set_user_attr("packed_kb_before_training", size_kb)
        over = self._over_budget(before.total_ms, size_kb)
        if over:
            return self._infeasible(trial, over, before, size_kb, measured_on)
        reporter = (RungReporter(trial, self.rule, before.total_ms, config.train.epochs)
                    if self.rule else None)
        result = train(config, self.data, cache=self.cache, on_batch=self.stop.check,
                       on_epoch=reporter)
        report = evaluate_and_profile(config, result.model, self.data,
                                      self.settings.latency_threads, self.settings.exact_float)
        metrics = report["metrics"]
        metrics["train_seconds"] = result.seconds
        metrics["train_threads"] = torch.get_num_threads()  # accuracy depends on it
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "weights.safetensors"
            save_file(_state_dict(result.model), str(path))
            artifact_id = upload_artifact(
                artifact_store=self.artifacts, file_path=str(path), study_or_trial=trial
            )
        trial.set_user_attr(WEIGHTS_ATTR, artifact_id)
        trial.set_user_attr("learning_curve", result.curve)
        trial.set_user_attr("summary", summarize(result.model, shape).to_dict())
        for key, value in report.items():
            trial.set_user_attr(key, value)
        over = self._over_budget(metrics["latency_ms"], metrics["packed_kb"])
        if over:  # trained weights can fuse differently: the measured truth decides
            trial.set_user_attr("infeasible", over)
        self._set_constraints(trial, metrics["latency_ms"], metrics["packed_kb"])
        values = [metrics[name] for name in self.settings.metric_names]
        if not over:
            self._record_hypervolume(trial, values)
        return values

    def _record_hypervolume(self, trial: optuna.Trial, values: list[float]) -> None:
        """The front's hypervolume once this trial is in (user attr "hypervolume"), against the
        study's reference point, fixed by its first completed trial (study attr "hv_reference"),
        so the explorer plots the history without recomputing it."""
        s, study = self.settings, trial.study
        reference = study.user_attrs.get(HV_REFERENCE_ATTR)
        if reference is None:
            reference = list(default_reference(s.max_latency_ms, [values], s.max_size_kb,
                                               len(values)))
            study.set_user_attr(HV_REFERENCE_ATTR, reference)
        done = [t.values for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if not t.user_attrs.get("infeasible")]
        trial.set_user_attr(HYPERVOLUME_ATTR, hypervolume([*done, values], s.directions, reference))

    def _config(self, trial: optuna.Trial) -> Config:
        """The sampled config, or the one enqueued with the trial (run with the study's epochs
        and seed, so it compares with the rest)."""
        sampled = self.space.sample(trial, epochs=self.settings.epochs, seed=self.settings.seed)
        enqueued = trial.user_attrs.get(ENQUEUED_ATTR)
        if enqueued is None:
            return sampled
        return Config.from_dict({**enqueued, "seed": self.settings.seed,
                                 "train": {**enqueued.get("train", {}),
                                           "epochs": self.settings.epochs}})

    def _over_budget(self, latency_ms: float, size_kb: float) -> str | None:
        s = self.settings
        if s.max_latency_ms is not None and latency_ms > s.max_latency_ms:
            return f"latency {latency_ms:.4g} ms > budget {s.max_latency_ms:g} ms"
        if s.max_size_kb is not None and size_kb > s.max_size_kb:
            return f"packed size {size_kb:.4g} KB > budget {s.max_size_kb:g} KB"
        return None

    def _set_constraints(self, trial: optuna.Trial, latency_ms: float, size_kb: float) -> None:
        """<= 0 within a budget; the samplers learn from them (Optuna's set_constraint)."""
        s = self.settings
        if s.max_latency_ms is not None:
            trial.set_constraint("latency", latency_ms - s.max_latency_ms)
        if s.max_size_kb is not None:
            trial.set_constraint("size", size_kb - s.max_size_kb)

    def _infeasible(self, trial: optuna.Trial, reason: str, profile: Profile, size_kb: float,
                    measured_on: dict) -> list[float]:
        """An over-budget candidate: its measured latency and size, accuracy 0, no training."""
        trial.set_user_attr("infeasible", reason)
        metrics = {"val_accuracy": 0.0, "latency_ms": profile.total_ms,
                   "latency_iqr_ms": profile.total_iqr_ms, "packed_kb": size_kb}
        trial.set_user_attr("metrics", metrics)
        trial.set_user_attr("measured_on", measured_on)
        self._set_constraints(trial, profile.total_ms, size_kb)
        return [metrics[name] for name in self.settings.metric_names]


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
