"""Network builders: turn a Config into a torch model with a stem, a binary body and a head.

Every family returns a `BinaryNet`, whose three parts the packed-bit compiler walks. The stem and
head are full precision by default (the BNN standard, Rastegari et al. 2016) or binary
(`arch.stem` / `arch.head`); the body is binary blocks of the chosen family.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .blocks import BinarySpec, BiRealBlock, PlainBlock, PoolFirstBlock, ReActBlock, ResNetBlock
from .config import Config, ConfigError
from .layers import BinaryConv2d, Normalize

Body = tuple[nn.Sequential, int, int]  # blocks, output channels, output map size


class BinaryNet(nn.Module):
    """stem -> body (binary blocks) -> head (classifier)."""

    def __init__(self, stem: nn.Sequential, body: nn.Sequential, head: nn.Sequential) -> None:
        super().__init__()
        self.stem, self.body, self.head = stem, body, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, classes)
        return self.head(self.body(self.stem(x)))


def binary_spec(config: Config) -> BinarySpec:
    """The quantizers and conv options every binary layer of the model shares."""
    quant, arch = config.quant, config.arch
    params = {"clip": quant.clip} if quant.input_quantizer == "clipped_ste" else {}
    if quant.input_quantizer == "swish_sign":
        params = {"beta": quant.beta}
    return BinarySpec(quant.input_quantizer, quant.weight_quantizer, params, arch.pad_value,
                      quant.learned_scale, arch.bn_momentum)


def _plain_body(config: Config, spec: BinarySpec, image_size: int) -> Body:
    """Stages of binary blocks; width doubles per stage; a stage pools while the map is >= 2."""
    arch = config.arch
    block = PoolFirstBlock if arch.pool_order == "pool_bn" else PlainBlock
    blocks, channels, size = [], arch.width, image_size
    for stage in range(arch.depth):
        out = arch.width * 2**stage
        for b in range(arch.blocks_per_stage):
            pool = b == arch.blocks_per_stage - 1 and size >= 2
            blocks.append(block(channels, out, arch.kernel_size, pool, spec.input_quantizer,
                                spec.weight_quantizer, spec.pad_value, spec.quantizer_params,
                                spec.learned_scale, spec.bn_momentum))
            channels = out
            size = size // 2 if pool else size
    return nn.Sequential(*blocks), channels, size


def _stages(config: Config, image_size: int,
            make: Callable[[int, int, int], nn.Module]) -> Body:
    """Residual stages: stage s has width * 2^s channels; its first block has stride 2 (s > 0,
    map >= 2). `make(c_in, c_out, stride)` builds one block."""
    arch = config.arch
    blocks, channels, size = [], arch.width, image_size
    for stage in range(arch.depth):
        out = arch.width * 2**stage
        for b in range(arch.blocks_per_stage):
            stride = 2 if stage > 0 and b == 0 and size >= 2 else 1
            blocks.append(make(channels, out, stride))
            channels, size = out, (size + 1) // 2 if stride == 2 else size
    return nn.Sequential(*blocks), channels, size


def _resnet_body(config: Config, spec: BinarySpec, image_size: int) -> Body:
    a = config.arch
    return _stages(config, image_size, lambda i, o, s: ResNetBlock(
        i, o, spec, a.kernel_size, s, a.activation, a.downsample))


def _bireal_body(config: Config, spec: BinarySpec, image_size: int) -> Body:
    a = config.arch
    return _stages(config, image_size, lambda i, o, s: BiRealBlock(
        i, o, spec, a.kernel_size, s, a.activation, a.downsample))


def _reactnet_body(config: Config, spec: BinarySpec, image_size: int) -> Body:
    a = config.arch
    return _stages(config, image_size, lambda i, o, s: ReActBlock(
        i, o, spec, a.kernel_size, s, a.activation))


def _stem(config: Config, spec: BinarySpec, in_channels: int, mean: Sequence[float],
          std: Sequence[float], image_size: int) -> tuple[nn.Sequential, int]:
    """Normalize, a conv to `width` channels (fp or binary) and BN; the `imagenet` layout is
    7x7/2 then a 3x3/2 max-pool (no ReLU before the first sign, as Bi-Real-Net and Larq Zoo).
    Returns the stem and the map size it hands the body."""
    width, imagenet = config.arch.width, config.arch.stem_layout == "imagenet"
    kernel, stride = (7, 2) if imagenet else (3, 1)
    conv = (spec.conv(in_channels, width, kernel, stride, on_image=True)
            if config.arch.stem == "binary"
            else nn.Conv2d(in_channels, width, kernel, stride, padding=kernel // 2, bias=False))
    layers = [Normalize(mean, std), conv, spec.bn(width)]
    if imagenet:
        layers.append(nn.MaxPool2d(3, stride=2, padding=1))
        image_size = ((image_size + 1) // 2 + 1) // 2  # each stride-2 'same' step: ceil(n / 2)
    return nn.Sequential(*layers), image_size


def _head(config: Config, spec: BinarySpec, channels: int, size: int,
          num_classes: int) -> nn.Sequential:
    """The classifier over the flattened map (plain) or its global average (the residual
    families, as their papers). A binary head is the same linear map as a binary conv whose
    kernel covers the map, so a per-channel input quantizer (RSign) keeps its channels."""
    pool: list[nn.Module] = [] if config.arch.family == "plain" else [nn.AdaptiveAvgPool2d(1)]
    size = size if config.arch.family == "plain" else 1
    if config.arch.head == "binary":
        conv = BinaryConv2d(channels, num_classes, size, bias=True,
                            input_quantizer=spec.input_quantizer,
                            weight_quantizer=spec.weight_quantizer,
                            quantizer_params=spec.quantizer_params, fp_relu=spec.fp_relu)
        return nn.Sequential(*pool, conv, nn.Flatten())
    return nn.Sequential(*pool, nn.Flatten(), nn.Linear(channels * size * size, num_classes))


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
    spec = binary_spec(config)
    stem, image_size = _stem(config, spec, in_channels, mean, std, image_size)
    body, channels, size = BUILDERS[config.arch.family](config, spec, image_size)
    return BinaryNet(stem, body, _head(config, spec, channels, size, num_classes))


BUILDERS: dict[str, Callable[[Config, BinarySpec, int], Body]] = {
    "plain": _plain_body,
    "resnet": _resnet_body,
    "bireal": _bireal_body,
    "reactnet": _reactnet_body,
}
