"""Binary layers: torch's Conv2d / Linear with an input and a weight quantizer.

They keep their parent's signature and add `input_quantizer` and `weight_quantizer` (registry
names, Quantizer modules, or None / "none" for full precision), as Larq's layers do, and
`quantizer_params` for a named input quantizer (a per-channel one also gets the channel count).
Padding is applied after the input is binarised, with `pad_value`: 0 (a zero is neither +1 nor
-1, the packed kernels correct for it exactly) or +1 (one-padding, no correction needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .quantizers import QUANTIZERS, Quantizer, get_quantizer

PAD_VALUES = (0.0, 1.0, -1.0)


def _quantizer(name: str | Quantizer | None, expected: str, channels: int = 0,
               params: dict[str, Any] | None = None) -> Quantizer | None:
    params = dict(params or {})
    if isinstance(name, str) and name in QUANTIZERS and QUANTIZERS[name].per_channel:
        params["channels"] = channels
    q = get_quantizer(name, **params)
    if q is not None and q.kind != expected:
        raise ValueError(f"{q.name!r} is a {q.kind} quantizer; an {expected} quantizer is needed")
    return q


class BinaryConv2d(nn.Conv2d):
    """Conv2d on binarised inputs and weights (XNOR + popcount on the packed kernels).

    `learned_scale` multiplies the output by a learnable per-channel (C_out, 1, 1) factor, the
    XNOR-Net++ scale (Bulat & Tzimiropoulos 2019) that replaces XNOR-Net's analytic one.
    `fp_relu` (full-precision input only) puts a ReLU where the sign would be: a real-valued
    twin of a binary network needs a nonlinearity there, or a Bi-Real/ResNet body (no activation
    between units) collapses into one linear map.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        input_quantizer: str | Quantizer | None = "clipped_ste",
        weight_quantizer: str | Quantizer | None = "sign",
        pad_value: float = 0.0,
        bias: bool = False,
        quantizer_params: dict[str, Any] | None = None,
        learned_scale: bool = False,
        fp_relu: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        if float(pad_value) not in PAD_VALUES:
            raise ValueError(f"pad_value must be one of {PAD_VALUES}, got {pad_value!r}")
        self.input_quantizer = _quantizer(input_quantizer, "activation", in_channels,
                                          quantizer_params)
        if fp_relu and self.input_quantizer is not None:
            raise ValueError("fp_relu is for full-precision inputs; this layer binarises them")
        self.fp_relu = fp_relu
        self.weight_quantizer = _quantizer(weight_quantizer, "weight")
        self.pad_value = float(pad_value)
        self.output_scale = (nn.Parameter(torch.ones(out_channels, 1, 1)) if learned_scale
                             else None)

    @property
    def precision(self) -> int:
        return 1 if self.input_quantizer is not None else 32

    def quantized_weight(self) -> torch.Tensor:
        """The weight the forward pass uses: +-scale_c per output channel."""
        if self.weight_quantizer is None:
            return self.weight
        return self.weight_quantizer(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C_in, H, W) -> (N, C_out, H', W')
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        elif self.fp_relu:
            x = F.relu(x)
        padding = self.padding
        if self.pad_value != 0.0 and any(padding):  # conv2d pads with zeros only
            ph, pw = padding
            x, padding = F.pad(x, (pw, pw, ph, ph), value=self.pad_value), 0
        y = F.conv2d(x, self.quantized_weight(), self.bias, self.stride, padding, self.dilation)
        return y if self.output_scale is None else y * self.output_scale


class BinaryLinear(nn.Linear):
    """Linear on binarised inputs and weights."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        input_quantizer: str | Quantizer | None = "clipped_ste",
        weight_quantizer: str | Quantizer | None = "sign",
        quantizer_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.input_quantizer = _quantizer(input_quantizer, "activation", in_features,
                                          quantizer_params)
        self.weight_quantizer = _quantizer(weight_quantizer, "weight")

    @property
    def precision(self) -> int:
        return 1 if self.input_quantizer is not None else 32

    def quantized_weight(self) -> torch.Tensor:
        if self.weight_quantizer is None:
            return self.weight
        return self.weight_quantizer(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, in) -> (N, out)
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        return F.linear(x, self.quantized_weight(), self.bias)


class Normalize(nn.Module):
    """Per-channel (x - mean) / std inside the model, so exported models take raw images."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if any(s <= 0 for s in std):
            raise ValueError(f"Normalize: every std must be > 0, got {list(std)}")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W)
        return (x - self.mean) / self.std
