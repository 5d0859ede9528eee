"""Blocks: the repeating units network builders stack. The packed-bit compiler knows each type.

A residual unit is `act(BN(binary conv(x)) + shortcut)`; the families differ in how many binary
convs share one real-valued shortcut and in how the shortcut downsamples (Qin et al. 2020,
section 3.2: keeping real-valued information flowing around the binary convs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .layers import BinaryConv2d
from .quantizers import FULL_PRECISION

ACTIVATION_NAMES = ("none", "hardtanh", "prelu", "rprelu")
DOWNSAMPLE_MODES = ("avgpool_conv", "strided_conv")


@dataclass(frozen=True)
class BinarySpec:
    """Everything a block's binary convs share besides geometry."""

    input_quantizer: str = "clipped_ste"
    weight_quantizer: str = "sign"
    quantizer_params: dict[str, Any] = field(default_factory=dict)
    pad_value: float = 0.0
    learned_scale: bool = False
    bn_momentum: float = 0.1

    def conv(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1,
             on_image: bool = False) -> BinaryConv2d:
        """A 'same'-padded binary conv (the output halves with stride 2). In a full-precision
        twin it takes its input through a ReLU, except `on_image` (a stem reads raw pixels)."""
        return BinaryConv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2,
                            input_quantizer=self.input_quantizer,
                            weight_quantizer=self.weight_quantizer, pad_value=self.pad_value,
                            quantizer_params=self.quantizer_params,
                            learned_scale=self.learned_scale, fp_relu=self.fp_relu and not on_image)

    @property
    def fp_relu(self) -> bool:
        return self.input_quantizer == FULL_PRECISION

    def bn(self, channels: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(channels, momentum=self.bn_momentum)


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
        learned_scale: bool = False,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        spec = BinarySpec(input_quantizer, weight_quantizer, quantizer_params or {}, pad_value,
                          learned_scale, bn_momentum)
        self.conv = spec.conv(in_channels, out_channels, kernel_size)
        self.bn = spec.bn(out_channels)
        self.pool: nn.Module = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C_in, H, W) -> (N, C_out, H', W')
        return self.pool(self.bn(self.conv(x)))


class PoolFirstBlock(PlainBlock):
    """Binary conv -> max-pool -> BatchNorm: pooling the conv output before BN (XNOR-Net's
    ordering, Rastegari et al. 2016), so the pool sees the raw dots rather than the normalised
    ones; with a negative BN gamma the two orders differ."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pool(self.conv(x)))


class RPReLU(nn.Module):
    """ReActNet RPReLU (Liu et al. 2020): PReLU(x - gamma_c) + zeta_c, learnable shifts that
    reshape the distribution each binary conv's output hands to the next sign."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(channels))
        self.prelu = nn.PReLU(channels)
        self.zeta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W)
        return self.prelu(x - self.gamma.view(1, -1, 1, 1)) + self.zeta.view(1, -1, 1, 1)


def make_activation(name: str, channels: int) -> nn.Module:
    """The real-valued activation after a residual unit (Identity for "none")."""
    if name == "none":
        return nn.Identity()
    if name == "hardtanh":
        return nn.Hardtanh()
    if name == "prelu":
        return nn.PReLU(channels)
    if name == "rprelu":
        return RPReLU(channels)
    raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATION_NAMES)}")


def downsample(c_in: int, c_out: int, stride: int, mode: str, bn_momentum: float) -> nn.Module:
    """The real-valued shortcut of a unit that halves the map or changes the width.

    avgpool_conv: AvgPool 2x2 -> fp 1x1 conv -> BN (Bi-Real, Liu et al. 2018; ceil mode so it
    matches the strided 'same' conv on odd maps); strided_conv: fp 1x1 conv, stride 2 -> BN
    (ResNet option B, He et al. 2016). An unchanged shape keeps the identity.
    """
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    if mode not in DOWNSAMPLE_MODES:
        raise ValueError(f"unknown downsample {mode!r}; allowed: {', '.join(DOWNSAMPLE_MODES)}")
    bn = nn.BatchNorm2d(c_out, momentum=bn_momentum)
    if mode == "strided_conv":
        return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), bn)
    pool: nn.Module = (nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False)
                       if stride > 1 else nn.Identity())
    return nn.Sequential(pool, nn.Conv2d(c_in, c_out, 1, bias=False), bn)


class ResNetBlock(nn.Module):
    """Binary ResNet basic block (XNOR-Net/ABC-Net ResNet-18): two binary kxk convs with BN and
    one real-valued shortcut around the pair: act(BN2(conv2(act(BN1(conv1(x))))) + sc(x))."""

    def __init__(self, c_in: int, c_out: int, spec: BinarySpec, kernel_size: int = 3,
                 stride: int = 1, activation: str = "none", mode: str = "avgpool_conv") -> None:
        super().__init__()
        self.conv1 = spec.conv(c_in, c_out, kernel_size, stride)
        self.bn1 = spec.bn(c_out)
        self.act1 = make_activation(activation, c_out)
        self.conv2 = spec.conv(c_out, c_out, kernel_size)
        self.bn2 = spec.bn(c_out)
        self.shortcut = downsample(c_in, c_out, stride, mode, spec.bn_momentum)
        self.act2 = make_activation(activation, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C_in, H, W) -> (N, C_out, H', W')
        y = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(y)) + self.shortcut(x))


class BiRealBlock(nn.Module):
    """Bi-Real unit (Liu et al. 2018): a real-valued shortcut around every single binary conv,
    act(BN(conv(x)) + sc(x)), so each conv's real-valued input survives to the next one."""

    def __init__(self, c_in: int, c_out: int, spec: BinarySpec, kernel_size: int = 3,
                 stride: int = 1, activation: str = "none", mode: str = "avgpool_conv") -> None:
        super().__init__()
        self.conv = spec.conv(c_in, c_out, kernel_size, stride)
        self.bn = spec.bn(c_out)
        self.shortcut = downsample(c_in, c_out, stride, mode, spec.bn_momentum)
        self.act = make_activation(activation, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)) + self.shortcut(x))


class ReActBlock(nn.Module):
    """ReActNet-A block (Liu et al. 2020, MobileNetV1-like): a binary kxk conv (stride s, width
    kept) with an AvgPool 2x2 shortcut when s = 2, then a binary 1x1 conv with an identity
    shortcut; when the 1x1 doubles the width, its output halves both add the same input
    (activation duplication, concat). Each unit ends in the activation (RPReLU in the paper);
    the paper's RSign is the input quantizer "rsign". The paper's two C -> C 1x1 convs, each
    with its BN, are one C -> 2C conv and BN here: the same function and parameters (a dorefa
    layer-wide scale then spans both halves)."""

    def __init__(self, c_in: int, c_out: int, spec: BinarySpec, kernel_size: int = 3,
                 stride: int = 1, activation: str = "rprelu") -> None:
        super().__init__()
        if c_out not in (c_in, 2 * c_in):
            raise ValueError(f"ReActBlock: c_out must be c_in or 2 * c_in, got {c_in} -> {c_out}")
        self.conv1 = spec.conv(c_in, c_in, kernel_size, stride)
        self.bn1 = spec.bn(c_in)
        self.shortcut: nn.Module = (nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False)
                                    if stride > 1 else nn.Identity())
        self.act1 = make_activation(activation, c_in)
        self.conv2 = spec.conv(c_in, c_out, 1)
        self.bn2 = spec.bn(c_out)
        self.act2 = make_activation(activation, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.bn1(self.conv1(x)) + self.shortcut(x))
        z = self.bn2(self.conv2(y))
        return self.act2(z + (y if z.shape[1] == y.shape[1] else torch.cat([y, y], dim=1)))
