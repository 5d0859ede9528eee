"""One forward pass with temporary hooks, shared by the tests that watch torch's intermediate
values (what each binary layer or block really received)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


def run_hooked(model: nn.Module, x: torch.Tensor, handles: Sequence[RemovableHandle]) -> None:
    """model(x) without gradients, then remove `handles` even if the forward raised."""
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
