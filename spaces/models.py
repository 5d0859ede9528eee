"""Network builders: turn a Config into a torch model with a float stem, binary body, float head.

Every family returns a `BinaryNet`, whose three parts the packed-bit compiler walks: the stem and
head stay full precision (the BNN standard, Rastegari et al. 2016), the body is binary blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .blocks import PlainBlock
from .config import Config, ConfigError
from .layers import Normalize


class BinaryNet(nn.Module):
    """stem (float) -> body (binary blocks) -> head (float classifier)."""

    def __init__(self, stem: nn.Sequential, body: nn.Sequential, head: nn.Sequential) -> None:
        super().__init__()
        self.stem, self.body, self.head = stem, body, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, classes)
        return self.head(self.body(self.stem(x)))


def _plain_body(config: Config, image_size: int) -> tuple[nn.Sequential, int, int]:
    """Stages of binary blocks; width doubles per stage; a stage pools while the map is >= 2."""
    arch, quant = config.arch, config.quant
    params = {"clip": quant.clip} if quant.input_quantizer == "clipped_ste" else {}
    blocks, channels, size = [], arch.width, image_size
    for stage in range(arch.depth):
        out = arch.width * 2**stage
        for b in range(arch.blocks_per_stage):
            pool = b == arch.blocks_per_stage - 1 and size >= 2
            blocks.append(
                PlainBlock(
                    channels,
                    out,
                    arch.kernel_size,
                    pool=pool,
                    input_quantizer=quant.input_quantizer,
                    weight_quantizer=quant.weight_quantizer,
                    pad_value=arch.pad_value,
                    quantizer_params=params,
                )
            )
            channels = out
            size = size // 2 if pool else size
    return nn.Sequential(*blocks), channels, size


def build_model(
    config: Config,
    in_channels: int,
    num_classes: int,
    image_size: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> BinaryNet:
    """Build the network a config describes, for images (in_channels, image_size, image_size).

    `mean`/`std` (per channel) make the model normalise raw inputs itself.
    """
    if config.arch.family not in BUILDERS:
        raise ConfigError(
            f"arch.family = {config.arch.family!r} is not allowed; allowed: {', '.join(BUILDERS)}"
        )
    for name, value in (("in_channels", in_channels), ("num_classes", num_classes),
                        ("image_size", image_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"build_model: {name} must be a positive integer, got {value!r}")
    mean = list(mean) if mean is not None else [0.0] * in_channels
    std = list(std) if std is not None else [1.0] * in_channels
    stem = nn.Sequential(
        Normalize(mean, std),
        nn.Conv2d(in_channels, config.arch.width, 3, padding=1, bias=False),
        nn.BatchNorm2d(config.arch.width),
    )
    body, channels, size = BUILDERS[config.arch.family](config, image_size)
    head = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, num_classes))
    return BinaryNet(stem, body, head)


BUILDERS = {"plain": _plain_body}
