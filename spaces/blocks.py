"""Blocks: the repeating units network builders stack. The packed-bit compiler knows each type."""

from __future__ import annotations

import torch
from torch import nn

from .layers import BinaryConv2d
from .quantizers import get_quantizer


class PlainBlock(nn.Module):
    """Binary conv -> BatchNorm (-> 2x2 max-pool): the BinaryNet / VGG-small unit.

    BatchNorm sits between the binary conv and the next sign, so it sets each channel's sign
    threshold; the compiler folds it into an integer threshold on the popcount.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        pool: bool = False,
        input_quantizer: str = "clipped_ste",
        weight_quantizer: str = "sign",
        pad_value: float = 0.0,
        quantizer_params: dict | None = None,
    ) -> None:
        super().__init__()
        self.conv = BinaryConv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=1,
            padding=kernel_size // 2,
            input_quantizer=get_quantizer(input_quantizer, **(quantizer_params or {})),
            weight_quantizer=weight_quantizer,
            pad_value=pad_value,
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.pool: nn.Module = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C_in, H, W) -> (N, C_out, H', W')
        return self.pool(self.bn(self.conv(x)))
