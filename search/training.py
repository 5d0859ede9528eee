"""Lightning training of one candidate: Adam(W), per-step cosine schedule, latent-weight clipping.

The learning curve (train loss/accuracy and validation loss/accuracy per epoch) is collected here
so the objective can store it with the trial.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from spaces import BinaryConv2d, BinaryLinear, Config, build_model

from .datasets import Dataset

for _name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
    logging.getLogger(_name).setLevel(logging.ERROR)  # no banner per trial
warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning 2.6 vs torch 2.13 pytree
warnings.filterwarnings("ignore", message=".*does not have many workers.*")  # in-memory arrays


class ArrayDataModule(pl.LightningDataModule):
    """Train/validation loaders over in-memory arrays; shuffling seeded by the config."""

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


class BinaryClassifier(pl.LightningModule):
    """Cross-entropy classification of a BinaryNet, with the config's optimiser and schedule."""

    def __init__(self, model: nn.Module, config: Config, steps_total: int) -> None:
        super().__init__()
        self.model, self.config, self.steps_total = model, config, steps_total
        self._binary = [m for m in model.modules() if isinstance(m, (BinaryConv2d, BinaryLinear))]
        self._sums: dict[str, list[float]] = {}
        self.curve: list[dict] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch: tuple, prefix: str) -> torch.Tensor:
        x, y = batch
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        n = float(len(y))
        s = self._sums.setdefault(prefix, [0.0, 0.0, 0.0])  # loss sum, correct, count
        s[0] += float(loss.detach()) * n
        s[1] += float((logits.argmax(1) == y).sum())
        s[2] += n
        return loss

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        if self.config.train.clip_latent_weights:  # latent weights beyond +-1 never flip back
            with torch.no_grad():
                for m in self._binary:
                    if m.weight_quantizer is not None:
                        m.weight.clamp_(-1.0, 1.0)

    def on_train_epoch_end(self) -> None:
        row = {"epoch": self.current_epoch + 1}
        for prefix in ("train", "val"):
            loss, correct, count = self._sums.pop(prefix, [math.nan, math.nan, 1.0])
            row[f"{prefix}_loss"] = loss / count
            row[f"{prefix}_accuracy"] = correct / count
        self.curve.append(row)

    def configure_optimizers(self) -> dict:
        t = self.config.train
        opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[t.optimizer]
        opt = opt_cls(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        if t.schedule == "cosine":
            total = max(1, self.steps_total)

            def factor(step: int) -> float:
                return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        else:

            def factor(step: int) -> float:
                return 1.0

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@dataclass
class TrainResult:
    model: nn.Module
    curve: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def train(config: Config, data: Dataset, accelerator: str = "auto") -> TrainResult:
    """Build the config's model and train it for config.train.epochs; returns it in eval mode."""
    torch.manual_seed(config.seed)
    model = build_model(
        config, data.in_channels, data.num_classes, data.image_size, data.mean, data.std
    )
    dm = ArrayDataModule(data, config.train.batch_size, config.seed)
    steps = math.ceil(len(data.y_train) / config.train.batch_size) * config.train.epochs
    module = BinaryClassifier(model, config, steps)
    trainer = pl.Trainer(
        max_epochs=config.train.epochs,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    seconds = time.perf_counter() - start
    model.cpu().eval()
    return TrainResult(model, module.curve, seconds)


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> float:
    """Top-1 accuracy of a torch model in eval mode on raw arrays."""
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        logits = model(torch.from_numpy(x[i : i + batch_size]))
        correct += int((logits.argmax(1).numpy() == y[i : i + batch_size]).sum())
    return correct / max(1, len(y))
