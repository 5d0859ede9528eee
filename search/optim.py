"""Optimisers and learning-rate schedules a TrainConfig names, including Bop for binary weights.

Bop (Helwegen et al. 2019, "Latent weights do not exist") treats binary weights as signs, not as
real numbers: it keeps m, an exponential moving average of the gradient with rate gamma, and
flips w -> -w when |m| > threshold and sign(m) == sign(w) (the gradient pushes w across zero).
All other parameters (stem, head, batch norm) use Adam, which is why Bop is a wrapper of Adam.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from spaces import TrainConfig

SGD_MOMENTUM = 0.9
STEP_MILESTONES = (0.5, 0.75)  # "step": x0.1 at these fractions of the post-warm-up steps


class Bop(torch.optim.Optimizer):
    """Sign flips for `binary` parameters; Adam (sharing this optimiser's lr) for `others`."""

    def __init__(
        self,
        binary: Iterable[nn.Parameter],
        others: Iterable[nn.Parameter],
        lr: float,
        threshold: float,
        gamma: float,
    ) -> None:
        if not threshold > 0 or not 0 < gamma <= 1:
            raise ValueError(f"bop: need threshold > 0 and 0 < gamma <= 1, got {threshold}, "
                             f"{gamma}")
        groups = [{"params": list(binary), "bop": True}, {"params": list(others), "bop": False}]
        super().__init__(groups, {"lr": lr, "threshold": threshold, "gamma": gamma})
        # Adam gets the very same group dict: schedulers that set group["lr"] reach it.
        self.adam = torch.optim.Adam([self.param_groups[1]], lr=lr)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        for w in group["params"]:
            if w.grad is None:
                continue
            state = self.state[w]
            m = state.setdefault("momentum", torch.zeros_like(w))
            m.mul_(1.0 - group["gamma"]).add_(w.grad, alpha=group["gamma"])
            flip = (m.abs() > group["threshold"]) & ((m >= 0) == (w >= 0))
            w.copy_(torch.where(flip, -w, w))
        self.adam.step()
        return loss


def make_optimizer(
    t: TrainConfig, binary: list[nn.Parameter], others: list[nn.Parameter]
) -> torch.optim.Optimizer:
    """The optimiser `t.optimizer` names; `t.weight_decay` applies to the latent binary weights."""
    if t.optimizer == "bop":
        return Bop(binary, others, t.lr, t.bop_threshold, t.bop_gamma)
    groups = [{"params": binary, "weight_decay": t.weight_decay},
              {"params": others, "weight_decay": 0.0}]
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.lr, momentum=SGD_MOMENTUM)
    opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[t.optimizer]
    return opt_cls(groups, lr=t.lr)


def lr_factor(schedule: str, total: int, warmup: int) -> Callable[[int], float]:
    """Multiplier of the base lr at optimiser step `step` (LambdaLR), warm-up first."""
    decay = max(1, total - warmup)
    shapes: dict[str, Callable[[float], float]] = {
        "cosine": lambda p: 0.5 * (1.0 + math.cos(math.pi * p)),
        "linear": lambda p: 1.0 - p,
        "step": lambda p: 0.1 ** sum(p >= m for m in STEP_MILESTONES),
        "constant": lambda p: 1.0,
    }
    if schedule not in shapes:
        raise ValueError(f"unknown schedule {schedule!r}; allowed: {', '.join(shapes)}")
    shape = shapes[schedule]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return shape(min(1.0, (step - warmup) / decay))

    return factor
