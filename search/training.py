"""Lightning training of one candidate with the tricks its TrainConfig names.

Optimiser (Adam/AdamW/SGD/Bop), warm-up + schedule per step, latent-weight clipping, label
smoothing, gradient clipping, optional two-stage training (stage 1: real weights and binary
activations; stage 2: both binary, continuing from stage 1 with a fresh schedule, as ReActNet
does; Bop's flips and the latent-weight decay apply to weights while they are binarised, so
stage 1 trains real weights like the rest, Bop via its Adam) and distillation from the fp twin
(ReActNet's distributional loss). Images arrive raw (uint8 for the image datasets) and become
float per batch; CIFAR-style augmentation runs on the batch, in training only. The learning curve
is collected here for the objective to store; a training loss that turns NaN or infinite fails
the run at that epoch instead of training on garbage.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from spaces import Config, TrainConfig, build_model
from spaces.quantizers import set_training_progress

from .data.augment import crop_flip
from .datasets import Dataset
from .optim import lr_factor, make_optimizer

for _name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
    logging.getLogger(_name).setLevel(logging.ERROR)  # no banner per trial
warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning 2.6 vs torch 2.13 pytree
warnings.filterwarnings("ignore", message=".*does not have many workers.*")  # in-memory arrays


class ArrayDataModule(pl.LightningDataModule):
    """Train/validation loaders over in-memory arrays (kept in their dtype); seeded shuffling."""

    def __init__(self, data: Dataset, batch_size: int, seed: int) -> None:
        super().__init__()
        self.data, self.batch_size, self.seed = data, batch_size, seed

    def _loader(self, x: np.ndarray, y: np.ndarray, shuffle: bool) -> DataLoader:
        ds = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, generator=gen)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.data.x_train, self.data.y_train, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.data.x_val, self.data.y_val, shuffle=False)


def binary_layers(model: nn.Module) -> list[nn.Module]:
    """Layers with a weight quantizer slot (BinaryConv2d, BinaryLinear)."""
    return [m for m in model.modules() if hasattr(m, "weight_quantizer")]


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    """KL(teacher || student) of the softmaxes at temperature t, scaled by t^2 (Hinton et al.)."""
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1),
                    reduction="batchmean", log_target=True) * t * t


@dataclass
class Stage:
    """One fit: its epochs, whether weights are binarised, and where it sits in all steps."""

    epochs: int
    binary_weights: bool
    step_offset: int
    steps_all: int
    index: int = 1


class BinaryClassifier(pl.LightningModule):
    """Classification loss (CE, label smoothing, optional KD) with the config's optimiser."""

    def __init__(self, model: nn.Module, train_cfg: TrainConfig, steps_per_epoch: int,
                 stage: Stage, augment: bool = False, teacher: nn.Module | None = None,
                 on_epoch: Callable[[dict], None] | None = None,
                 on_batch: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.model, self.t, self.stage, self.augment = model, train_cfg, stage, augment
        self.on_epoch, self.on_batch = on_epoch, on_batch
        self.steps_per_epoch = steps_per_epoch
        # in a tuple, not a sub-module: frozen, in eval mode throughout, moved in on_fit_start
        self._teacher = (teacher.requires_grad_(False).eval(),) if teacher is not None else ()
        self._sums: dict[str, list[float]] = {}
        self.curve: list[dict] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def batch_loss(self, batch: tuple, prefix: str) -> torch.Tensor:
        """The loss of one batch (with KD in training), accumulated into the epoch's curve."""
        x, y = batch
        x = x.float()
        if prefix == "train" and self.augment:
            x = crop_flip(x)
        logits = self.model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.t.label_smoothing)
        if prefix == "train" and self._teacher:
            with torch.no_grad():
                target = self._teacher[0](x)
            w = self.t.distill_weight
            kd = distillation_loss(logits, target, self.t.distill_temperature)
            loss = (1.0 - w) * loss + w * kd
        n = float(len(y))
        s = self._sums.setdefault(prefix, [0.0, 0.0, 0.0])  # loss sum, correct, count
        s[0] += float(loss.detach()) * n
        s[1] += float((logits.argmax(1) == y).sum())
        s[2] += n
        return loss

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        return self.batch_loss(batch, "train")

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        self.batch_loss(batch, "val")

    def on_fit_start(self) -> None:
        for teacher in self._teacher:
            teacher.to(self.device)

    def on_train_batch_start(self, batch: object, batch_idx: int) -> None:
        if self.on_batch is not None:  # e.g. raises to stop a search now
            self.on_batch()
        done = self.stage.step_offset + self.global_step
        set_training_progress(self.model, min(1.0, done / max(1, self.stage.steps_all)))

    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        if self.t.clip_latent_weights:  # latent weights beyond +-1 never flip back
            with torch.no_grad():
                for m in binary_layers(self.model):
                    if m.weight_quantizer is not None:
                        m.weight.clamp_(-1.0, 1.0)

    def on_train_epoch_end(self) -> None:
        row: dict = {"epoch": self.stage.step_offset // self.steps_per_epoch
                     + self.current_epoch + 1}
        if self.t.two_stage:
            row["stage"] = self.stage.index
        for prefix in ("train", "val"):
            loss, correct, count = self._sums.pop(prefix, [math.nan, math.nan, 1.0])
            row[f"{prefix}_loss"] = loss / count
            row[f"{prefix}_accuracy"] = correct / count
        loss = row["train_loss"]
        if not math.isfinite(loss):  # the sums are on the host already: a free check
            raise ValueError(f"training loss is {'NaN' if math.isnan(loss) else loss} at epoch "
                             f"{row['epoch']}: the run diverged (try a lower lr or a "
                             "gradient_clip) or the data holds non-finite values")
        self.curve.append(row)
        if self.on_epoch is not None:  # runs after this epoch's validation; may raise to stop
            self.on_epoch(row)

    def configure_optimizers(self) -> dict:
        active = {id(m.weight) for m in binary_layers(self.model) if m.weight_quantizer is not None}
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = make_optimizer(self.t, [p for p in params if id(p) in active],
                             [p for p in params if id(p) not in active])
        total = self.steps_per_epoch * self.stage.epochs
        warmup = min(total, round(self.t.warmup_epochs * self.steps_per_epoch))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(self.t.schedule, total, warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@dataclass
class TrainResult:
    model: nn.Module
    curve: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def stages(t: TrainConfig, steps_per_epoch: int) -> list[Stage]:
    """One binary stage, or two (real weights first) when `two_stage` and epochs >= 2."""
    steps_all = steps_per_epoch * t.epochs
    if not t.two_stage or t.epochs < 2:
        return [Stage(t.epochs, True, 0, steps_all)]
    first = min(t.epochs - 1, max(1, round(t.epochs * t.stage1_fraction)))
    return [Stage(first, False, 0, steps_all, 1),
            Stage(t.epochs - first, True, first * steps_per_epoch, steps_all, 2)]


def train(config: Config, data: Dataset, accelerator: str = "auto",
          cache: Path | None = None,
          on_epoch: Callable[[dict], None] | None = None,
          teacher: nn.Module | None = None,
          on_batch: Callable[[], None] | None = None) -> TrainResult:
    """Build the config's model and train it for config.train.epochs; returns it in eval mode.

    `cache` is the folder where distillation teachers are kept between trials; `on_epoch` gets
    each learning-curve row as its epoch ends, with that epoch's validation in it (progress
    lines, early stopping); `on_batch` runs before every training batch. Either may raise to end
    training: Lightning tears down and re-raises the exception unchanged (optuna.TrialPruned,
    say). With a distillation weight, `teacher` is the trained model to distil from (default:
    the cached fp twin). Raises ValueError when the training loss stops being finite.
    """
    from .teacher import teacher as fp_teacher

    t = config.train
    if t.distill_weight > 0 and teacher is None:
        teacher = fp_teacher(config, data, cache)
    teacher = teacher if t.distill_weight > 0 else None
    torch.manual_seed(config.seed)
    model = build_model(
        config, data.in_channels, data.num_classes, data.image_size, data.mean, data.std
    )
    steps_per_epoch = math.ceil(len(data.y_train) / t.batch_size)
    curve: list[dict] = []
    start = time.perf_counter()
    for stage in stages(t, steps_per_epoch):
        layers = binary_layers(model)
        quantizers = [m.weight_quantizer for m in layers]
        if not stage.binary_weights:
            for m in layers:
                m.weight_quantizer = None
        module = BinaryClassifier(model, t, steps_per_epoch, stage, data.augment, teacher,
                                  on_epoch, on_batch)
        _trainer(stage.epochs, t.gradient_clip, accelerator).fit(
            module, datamodule=ArrayDataModule(data, t.batch_size, config.seed + stage.index - 1)
        )
        for m, q in zip(layers, quantizers, strict=True):
            m.weight_quantizer = q
        curve += module.curve
    seconds = time.perf_counter() - start
    model.cpu().eval()
    return TrainResult(model, curve, seconds)


def _trainer(epochs: int, gradient_clip: float, accelerator: str) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        gradient_clip_val=gradient_clip or None,
    )


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> float:
    """Top-1 accuracy of a torch model in eval mode on raw arrays."""
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        logits = model(torch.from_numpy(x[i : i + batch_size]).float())
        correct += int((logits.argmax(1).numpy() == y[i : i + batch_size]).sum())
    return correct / max(1, len(y))


def print_epoch(label: str) -> Callable[[dict], None]:
    """An `on_epoch` callback printing one progress line per epoch to stderr, prefixed by label."""

    def show(row: dict) -> None:
        print(f"{label} epoch {row['epoch']}: train acc {row['train_accuracy']:.4f}, "
              f"val acc {row['val_accuracy']:.4f}, val loss {row['val_loss']:.4f}",
              file=sys.stderr, flush=True)

    return show
