"""Standard CIFAR augmentation on a batch tensor, on whatever device the batch is on."""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAD = 4


def crop_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop (zero padding PAD, same size back) and random horizontal flip per image."""
    n, c, h, w = x.shape
    padded = F.pad(x, (PAD, PAD, PAD, PAD))
    oy = torch.randint(0, 2 * PAD + 1, (n,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * PAD + 1, (n,), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = ox[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]
