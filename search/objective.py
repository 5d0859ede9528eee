"""One trial: sample a config, compile and time it on the packed kernels, train, evaluate, store.

This is the only place where the search space, training, the kernels and the study meet.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import upload_artifact
from safetensors.torch import save_file
from torch import nn

import kernels
from kernels.machine import machine_info
from kernels.profiling import Profile, steady_profile
from spaces import BinaryConv2d, BinaryLinear, Config, SearchSpace, build_model
from spaces.summary import summarize

from .datasets import Dataset
from .stale import PROCESS_ATTR, this_process
from .stopping import STOPPED_REASON, SearchStopped, StopSignals
from .training import accuracy, train

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
    config: Config, model: nn.Module, data: Dataset, threads: int = 1
) -> dict[str, Any]:
    """Metrics of a trained model: accuracies (torch) and latency/size (packed kernels,
    measured on `threads` threads)."""
    packed = kernels.compile(model, (data.in_channels, data.image_size, data.image_size))
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
        "fp32_bytes": 4 * (counts["params_binary"] + counts["params_float"]),
        "binary_macs": sum(r.binary_macs for r in info),
        "float_macs": sum(r.float_macs for r in info),
    }
    layer_latency = [{"name": r.name, "kind": r.kind, "ms": r.median_ms} for r in profile.layers]
    return {"metrics": metrics, "layer_latency": layer_latency, "isa": profile.isa,
            "measured_on": measured_on}


class Objective:
    """Callable for `study.optimize`: returns (validation accuracy, latency in ms)."""

    def __init__(
        self,
        data: Dataset,
        space: SearchSpace,
        epochs: int,
        seed: int,
        artifacts: optuna.artifacts.FileSystemArtifactStore,
        latency_threads: int = 1,
        cache: Path | None = None,
        stop: StopSignals | None = None,
    ) -> None:
        self.data, self.space, self.epochs, self.seed = data, space, epochs, seed
        self.artifacts, self.latency_threads, self.cache = artifacts, latency_threads, cache
        self.stop = stop or StopSignals()

    def __call__(self, trial: optuna.Trial) -> tuple[float, float]:
        try:
            return self._run(trial)
        except (SearchStopped, SystemExit, KeyboardInterrupt):
            # Lightning turns SIGTERM into SystemExit; either way the trial ends FAIL, not RUNNING
            trial.set_user_attr("fail_reason", STOPPED_REASON)
            trial.study.stop()
            raise SearchStopped(STOPPED_REASON) from None
        except Exception as exc:  # recorded with the trial, the search goes on
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            raise

    def _run(self, trial: optuna.Trial) -> tuple[float, float]:
        trial.set_user_attr(PROCESS_ATTR, this_process())  # so a dead worker's trial is found
        if self.stop.requested:  # a signal came while Optuna was creating this trial
            raise SearchStopped(STOPPED_REASON)
        config = self.space.sample(trial, epochs=self.epochs, seed=self.seed)
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("data", self.data.meta())
        shape = (self.data.in_channels, self.data.image_size, self.data.image_size)
        # A config the kernels cannot run fails here, in milliseconds, not after training.
        kernels.compile(build_model(config, shape[0], self.data.num_classes, shape[1]), shape)
        result = train(config, self.data, cache=self.cache, on_batch=self.stop.check)
        report = evaluate_and_profile(config, result.model, self.data, self.latency_threads)
        report["metrics"]["train_seconds"] = result.seconds
        report["metrics"]["train_threads"] = torch.get_num_threads()  # accuracy depends on it
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "weights.safetensors"
            save_file(_state_dict(result.model), str(path))
            artifact_id = upload_artifact(
                artifact_store=self.artifacts, file_path=str(path), study_or_trial=trial
            )
        trial.set_user_attr("weights_artifact", artifact_id)
        trial.set_user_attr("learning_curve", result.curve)
        trial.set_user_attr("summary", summarize(result.model, shape).to_dict())
        for key, value in report.items():
            trial.set_user_attr(key, value)
        metrics = report["metrics"]
        return metrics["val_accuracy"], metrics["latency_ms"]


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
