"""The exact path's float ops on channels-last maps (the packed kernels' NHWC seen as NCHW)
give torch's NCHW values bit for bit: the elementwise ops, BatchNorm and the pools run on that
layout as is; a conv and a global average pool, whose summation order follows the layout
(torch's channels-last 1x1 conv, or a GEMM on NHWC rows, differed from its NCHW conv in about
a quarter of 388 sampled shapes, 1 and 2 threads), are handed the NCHW copy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kernels.float_ops import (
    AdaptiveAvgPool2dOp,
    AvgPool2dOp,
    BatchNormOp,
    Conv2dOp,
    HardtanhOp,
    MaxPool2dOp,
    PReLUOp,
    ReLUOp,
)
from kernels.graph import MODULE_OPS

# (C, H, W) of the Bi-Real-18 maps the ops meet (shortcut inputs, head) and odd ones.
MAPS = [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7), (13, 9, 7)]


def spread(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Values over many binades, so a different summation order shows in the last bits."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * torch.pow(10.0, torch.randint(-3, 4, shape,
                                                                           generator=g).float())


def compiled(module: nn.Module) -> object:
    """The float op the compiler makes of `module`."""
    return MODULE_OPS[type(module).__name__].from_module("op", module, False)


def assert_bitwise(got: torch.Tensor, ref: torch.Tensor) -> None:
    assert got.shape == ref.shape
    assert torch.equal(got.contiguous().view(torch.int32), ref.contiguous().view(torch.int32))


def modules(c: int) -> list[nn.Module]:
    bn = nn.BatchNorm2d(c).eval()
    g = torch.Generator().manual_seed(c)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g))
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.1)
        bn.weight.copy_(torch.randn(c, generator=g))
        bn.bias.copy_(torch.randn(c, generator=g))
    prelu = nn.PReLU(c)
    with torch.no_grad():
        prelu.weight.copy_(torch.randn(c, generator=g))
    return [bn, nn.AvgPool2d(2), nn.AvgPool2d(3, 1, 1), nn.AvgPool2d(3, 2, 1, ceil_mode=True,
                                                                       count_include_pad=False),
            nn.MaxPool2d(3, 2, 1), nn.ReLU(), nn.Hardtanh(), prelu]


@pytest.mark.parametrize("shape", MAPS, ids=["x".join(map(str, s)) for s in MAPS])
def test_float_ops_on_channels_last_maps_give_torchs_nchw_values(shape) -> None:
    x = spread((2, *shape), seed=shape[0])
    cl = x.contiguous(memory_format=torch.channels_last)
    for module in modules(shape[0]):
        op = compiled(module)
        assert isinstance(op, BatchNormOp | AvgPool2dOp | MaxPool2dOp | ReLUOp | HardtanhOp
                          | PReLUOp)
        with torch.inference_mode():
            assert_bitwise(op.run(cl, 1), module(x))


@pytest.mark.parametrize("shape", MAPS, ids=["x".join(map(str, s)) for s in MAPS])
@pytest.mark.parametrize("size", [1, (2, 3)], ids=["global", "2x3"])
def test_adaptive_average_pool_is_torchs_bit_for_bit(shape, size) -> None:
    module = nn.AdaptiveAvgPool2d(size)
    op = compiled(module)
    assert isinstance(op, AdaptiveAvgPool2dOp)
    for batch in (1, 3):
        x = spread((batch, *shape), seed=batch)
        for layout in (torch.contiguous_format, torch.channels_last):
            with torch.inference_mode():
                assert_bitwise(op.run(x.contiguous(memory_format=layout), 1), module(x))


# 1x1 convs (C_in, C_out, H) where torch's channels-last conv or an NHWC GEMM summed unlike
# its NCHW conv on this machine's MKL, and the Bi-Real-18 shortcuts' (after their pool).
CONVS = [(48, 1000, 3), (384, 16, 2), (768, 512, 2), (17, 100, 2), (64, 128, 28),
         (128, 256, 14), (256, 512, 7)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("conv", CONVS, ids=["-".join(map(str, c)) for c in CONVS])
def test_float_conv_on_a_channels_last_map_is_torchs_nchw_conv(conv, threads) -> None:
    c_in, c_out, h = conv
    module = nn.Conv2d(c_in, c_out, 1, bias=False)
    op = compiled(module)
    assert type(op) is Conv2dOp
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for batch in (1, 4):
            x = spread((batch, c_in, h, h), seed=batch)
            with torch.inference_mode():
                assert_bitwise(op.run(x.contiguous(memory_format=torch.channels_last), threads),
                               module(x))
    finally:
        torch.set_num_threads(previous)
