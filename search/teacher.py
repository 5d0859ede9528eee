"""The full-precision teacher for distillation: the fp twin of a candidate, trained once.

The twin is the same architecture with both quantizers "none". Its training settings are fixed
defaults (only epochs, batch size and seed follow the student), so every student sharing an
architecture shares one teacher; it is cached as safetensors under the artifacts folder, keyed by
a hash of the twin's config and the dataset, and written atomically so concurrent workers at worst
train it twice. A cached file that no longer loads (damaged, or from an older layout) is deleted
and retrained, said on stderr, instead of failing every later run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from spaces import Config, build_model
from spaces.quantizers import FULL_PRECISION

from .datasets import Dataset

TEACHER_DIR = "teachers"


def fp_twin(config: Config) -> Config:
    """`config` with both quantizers "none" and plain training (no KD, one stage, Adam)."""
    d = config.to_dict()
    d["quant"].update(input_quantizer=FULL_PRECISION, weight_quantizer=FULL_PRECISION)
    d["train"] = {"epochs": config.train.epochs, "batch_size": config.train.batch_size}
    return Config.from_dict(d)


def cache_key(twin: Config, data: Dataset) -> str:
    blob = json.dumps({"config": twin.to_dict(), "data": data.meta()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def teacher(config: Config, data: Dataset, cache: Path | None) -> nn.Module:
    """The trained fp twin of `config`, from `cache` (a folder) when it was trained before."""
    from .training import train

    twin = fp_twin(config)
    path = cache / TEACHER_DIR / f"{cache_key(twin, data)}.safetensors" if cache else None
    if path is not None and path.is_file():
        try:
            return load_weights(twin, data, path)
        except (SafetensorError, RuntimeError) as exc:  # RuntimeError: state dict mismatch
            why = str(exc).partition("\n")[0]
            print(f"cached teacher {path} does not load ({why}); deleted it, retraining",
                  file=sys.stderr, flush=True)
            path.unlink(missing_ok=True)
    model = train(twin, data).model
    if path is not None:
        save_weights(model, path)
    return model


def load_weights(config: Config, data: Dataset, path: Path) -> nn.Module:
    """`config`'s model for `data` with the weights save_weights wrote, in eval mode."""
    model = build_model(config, data.in_channels, data.num_classes, data.image_size, data.mean,
                        data.std)
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def save_weights(model: nn.Module, path: Path) -> None:
    """`model`'s state as safetensors at `path`, written whole or not at all (temp + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, path)
