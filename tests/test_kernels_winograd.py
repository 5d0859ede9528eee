"""Winograd's F(4x4, 4x4) on the polyphase form of a 7x7 stride-2 conv over 1-4 input channels
(an ImageNet stem) and F(4x4, 3x3) on a 3x3 stride-1 one over 1-4 (a CIFAR stem; the fast
path's DirectConv2dOp runs them where the direct kernel is native): against torch's float64
conv on random geometries (odd sizes, partial tiles and 16-channel blocks, any padding and pad
value, batches), with its max-pool (min-pooled channels) and the signs it packs for the next
layer, on every ISA and thread count; the Bi-Real and VGG-Small stems against the direct
kernel; which layers take it.

Tolerance: `close` (atol 2e-5 * max(1, |y|max), as the direct kernel's tests): Winograd's
transforms multiply the inputs and outputs by up to 8 and sum up to 49 terms, and measured its
error against float64 is at most 5e-6 * |y|max over 300 random geometries (the direct
kernel's 5e-7), 4x inside it; F(4x4, 3x3)'s 5.3e-6 * |y|max over 300 (the direct kernel's
3.3e-7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_kernels_direct_conv import close, stem_ops

import kernels
from kernels import bitops
from kernels.float_ops import DIRECT_CONV_ISAS, DirectConv2dOp
from kernels.folding import fold_float_parts

ISAS = kernels.available_isas()
POOL = ((3, 3), (2, 2), (1, 1))  # the stem's max-pool: kernel, stride, padding
ALGORITHMS = [(7, 2), (3, 1)]  # kernel side, stride: F(4x4, 4x4) polyphase, F(4x4, 3x3)


def float64_conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, pad_value: np.ndarray,
                 padding: int, stride: int = 2) -> torch.Tensor:
    """The conv of x padded with pad_value[c], in float64, NCHW."""
    padded = np.stack([np.pad(x[:, c], ((0, 0), (padding, padding), (padding, padding)),
                              constant_values=v) for c, v in enumerate(pad_value)], axis=1)
    return F.conv2d(torch.from_numpy(padded).double(), torch.from_numpy(weight).double(),
                    torch.from_numpy(bias).double(), stride)


def pooled(y: torch.Tensor, lower: np.ndarray) -> torch.Tensor:
    """torch's max-pool of y, the minimum on channels with lower[c] != 0."""
    sign = torch.from_numpy(np.where(lower != 0, -1.0, 1.0))[None, :, None, None]
    return F.max_pool2d(y * sign, 3, 2, 1) * sign


@pytest.mark.parametrize("kernel,stride", ALGORITHMS)
@pytest.mark.parametrize("seed", range(12))
def test_winograd_equals_float64_conv_on_every_isa(kernel: int, stride: int, seed: int) -> None:
    """Random geometry: 1-4 input channels, padding 0-4, sizes from the kernel's to 40 leaving
    partial 4x4 tiles, channel counts with partial 16-channel blocks, batches, non-zero pad
    values; plain, max-pooled (some channels min-pooled) and with the signs of map - shift,
    which are pack_nhwc's of the floats returned; 3 threads give 1 thread's result bit for
    bit."""
    rng = np.random.default_rng(seed)
    c_in, padding = int(rng.integers(1, 5)), int(rng.integers(0, 5))
    c_out = int(rng.choice([1, 16, 17, 40, 64, 70]))
    h, w = (int(v) for v in rng.integers(max(1, kernel - 2 * padding), 41, size=2))
    x = rng.normal(size=(int(rng.integers(1, 3)), c_in, h, w)).astype(np.float32)
    weight = rng.normal(size=(c_out, c_in, kernel, kernel)).astype(np.float32)
    bias = rng.normal(size=c_out).astype(np.float32)
    pad_value = rng.normal(size=c_in).astype(np.float32)
    lower = (rng.random(c_out) < 0.3).astype(np.uint8)
    shift = rng.normal(size=c_out).astype(np.float32)
    layer = bitops.direct_conv_layer(weight, bias, pad_value, stride, padding, winograd=True)
    assert layer.algorithm == "winograd"
    conv = float64_conv(x, weight, bias, pad_value, padding, stride)
    expected = {(): conv, POOL: None}
    if min(conv.shape[2:]) >= 2:  # the pool's window fits the padded map
        expected[POOL] = pooled(conv, lower)
    for isa in ISAS:
        with kernels.use_isa(isa):
            for pool, want in expected.items():
                if want is None:
                    continue
                extra = (*pool, lower) if pool else ()
                one = layer(x, 1, *extra)
                close(one, want.permute(0, 2, 3, 1).numpy())
                got, bits = layer(x, 3, *extra, signs=True, sign_shift=shift)
                np.testing.assert_array_equal(got.view(np.uint32), one.view(np.uint32))
                np.testing.assert_array_equal(bits, bitops.pack_nhwc(got, 1, shift))


@pytest.mark.parametrize("kernel,stride", ALGORITHMS)
@pytest.mark.parametrize("c_out,h,w", [(40, 11, 300), (130, 9, 150), (2100, 13, 11)])
def test_winograd_in_chunks_of_tiles_and_channels(kernel: int, stride: int, c_out: int, h: int,
                                                  w: int) -> None:
    """Tile rows longer than one GEMM's chunk (32 tiles of up to 64 channels, fewer tiles of
    more) and more channels than one GEMM takes (2048: two groups, a partial block last)."""
    rng = np.random.default_rng(c_out)
    x = rng.normal(size=(1, 3, h, w)).astype(np.float32)
    weight = rng.normal(size=(c_out, 3, kernel, kernel)).astype(np.float32)
    bias, pad_value = rng.normal(size=c_out).astype(np.float32), np.zeros(3, np.float32)
    layer = bitops.direct_conv_layer(weight, bias, pad_value, stride, kernel // 2)
    assert layer.algorithm == "winograd"
    close(layer(x, 2), float64_conv(x, weight, bias, pad_value, kernel // 2, stride)
          .permute(0, 2, 3, 1).numpy())


@pytest.mark.parametrize("kernel,stride,c_out,size,pool", [
    (7, 2, 64, 224, POOL),  # Bi-Real-18's, pooled to 56x56
    (3, 1, 128, 32, ()),  # VGG-Small's and ReActNet-32's
])
def test_winograd_takes_the_stem_from_the_direct_kernel(kernel: int, stride: int, c_out: int,
                                                        size: int, pool: tuple) -> None:
    """1x3 x size^2 -> c_out channels (pooled), with signs, by default: close to the direct
    kernel's result; 2 threads give 1 thread's map and signs bit for bit."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(1, 3, size, size)).astype(np.float32)
    weight = (rng.normal(size=(c_out, 3, kernel, kernel)) * 0.1).astype(np.float32)
    bias = rng.normal(size=c_out).astype(np.float32)
    pad_value = rng.normal(size=3).astype(np.float32)
    extra = (*pool, (np.arange(c_out) % 5 == 0).astype(np.uint8)) if pool else ()
    args = (weight, bias, pad_value, stride, kernel // 2)
    fast, direct = (bitops.direct_conv_layer(*args, winograd=on) for on in (None, False))
    assert (fast.algorithm, direct.algorithm) == ("winograd", "direct")
    close(fast(x, 1, *extra), direct(x, 1, *extra))
    one = fast(x, 1, *extra, signs=True)
    two = fast(x, 2, *extra, signs=True)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("kernel,stride", ALGORITHMS)
@pytest.mark.parametrize("winograd", [False, True])
def test_fused_max_pool_is_the_pool_of_the_conv_on_either_algorithm(
        kernel: int, stride: int, winograd: bool) -> None:
    """The max-pool in the conv's pass gives maxpool2d_float of the conv's map bit for bit
    (min-pooled channels, a NaN input, two images, thread shares starting inside an image):
    Winograd's 4-row tiles made into the pool's ring as the direct kernel's single rows."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 3, 37, 30)).astype(np.float32)
    x[1, 2, 20, 7] = np.nan
    weight = rng.normal(size=(24, 3, kernel, kernel)).astype(np.float32)
    layer = bitops.direct_conv_layer(weight, rng.normal(size=24).astype(np.float32),
                                     np.zeros(3, np.float32), stride, kernel // 2, winograd)
    assert layer.algorithm == ("winograd" if winograd else "direct")
    lower = (np.arange(24) % 4 == 1).astype(np.uint8)
    for pool in (POOL, ((3, 3), (1, 1), (1, 1)), ((2, 2), (2, 2), (0, 0))):
        expected = bitops.maxpool2d_float(layer(x), *(p[0] for p in pool), lower)
        for threads in (1, 2, 3):
            got = layer(x, threads, *pool, lower)
            np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_which_layers_take_winograd() -> None:
    """7x7 stride 2 and 3x3 stride 1 (any padding) over 2-4 channels by default, over 1 on
    request (winograd=True); other geometries keep the direct kernel, refuse winograd=True,
    and count the nominal multiply-adds."""
    def layer(c_in: int, k: int, stride: int, winograd: bool | None = None, padding: int = -1):
        w = np.ones((20, c_in, k, k), np.float32)
        return bitops.direct_conv_layer(w, np.zeros(20, np.float32), np.zeros(c_in, np.float32),
                                        stride, k // 2 if padding < 0 else padding, winograd)
    assert [layer(c, 7, 2).algorithm for c in (1, 2, 3, 4, 5)] == [
        "direct", "winograd", "winograd", "winograd", "direct"]
    assert [layer(c, 3, 1).algorithm for c in (1, 2, 3, 4, 5)] == [
        "direct", "winograd", "winograd", "winograd", "direct"]
    assert layer(3, 3, 1, padding=0).algorithm == layer(3, 3, 1, padding=3).algorithm == (
        "winograd")
    assert layer(1, 7, 2, True).algorithm == layer(1, 3, 1, True).algorithm == "winograd"
    assert layer(3, 7, 1).algorithm == layer(3, 5, 2).algorithm == "direct"
    assert layer(3, 3, 2).algorithm == layer(3, 3, 1, False).algorithm == "direct"
    assert layer(3, 7, 2, False).algorithm == "direct"
    for refused in ((3, 3, 2), (5, 3, 1), (5, 7, 2), (3, 5, 1)):
        with pytest.raises(ValueError, match="winograd=True needs a 7x7 kernel, stride 2"):
            layer(*refused, True)
    # 37x30 -> 19x15 outputs: 5x4 tiles of 49 points, 4 * 3 phase channels, 20 outputs.
    assert layer(3, 7, 2).macs(2, 37, 30) == 2 * 5 * 4 * 49 * 12 * 20
    assert layer(3, 7, 2, False).macs(2, 37, 30) == 2 * 19 * 15 * 20 * 3 * 49
    # 37x30 -> 37x30 outputs: 10x8 tiles of 36 points, 3 channels, 20 outputs.
    assert layer(3, 3, 1).macs(2, 37, 30) == 2 * 10 * 8 * 36 * 3 * 20
    assert layer(3, 3, 1, False).macs(2, 37, 30) == 2 * 37 * 30 * 20 * 3 * 9


@pytest.mark.skipif(kernels.active_isa() not in DIRECT_CONV_ISAS,
                    reason="the direct conv is made where its kernel is native")
@pytest.mark.parametrize("kernel,stride,pool,label,macs,winograd_macs", [
    # 23x29 -> 12x15 outputs: 3x4 tiles of 49 points, 4 * 3 phase channels, 24 outputs.
    (7, 2, True, "float:conv7x7(winograd)+bn+maxpool", 24 * 12 * 15 * 3 * 49,
     3 * 4 * 49 * 12 * 24),
    # 23x29 outputs: 6x8 tiles of 36 points, 3 channels, 24 outputs (VGG-Small's stem).
    (3, 1, False, "float:conv3x3(winograd)+bn", 24 * 23 * 29 * 3 * 9, 6 * 8 * 36 * 3 * 24),
])
def test_folded_stem_runs_winograd_and_says_so(monkeypatch, kernel: int, stride: int,
                                               pool: bool, label: str, macs: int,
                                               winograd_macs: int) -> None:
    """The fast path's stems (normalisation, BatchNorm and the max-pool folded in) run by
    Winograd, their label and algorithm_macs say so, and they stay close to torch; made
    without the native kernel, they are direct."""
    ops, model = stem_ops(kernel, stride, pool)
    (op,) = fold_float_parts(ops)
    assert isinstance(op, DirectConv2dOp) and op.algorithm == "winograd"
    assert op.label == label
    shape = (3, 23, 29)
    assert op.macs(shape, op.output_shape(shape))[1] == macs
    assert op.algorithm_macs(shape) == winograd_macs
    x = torch.rand(2, *shape) * 4 - 1
    with torch.no_grad():
        close(op.run(x, 1).numpy(), model(x).numpy())
    monkeypatch.setattr(kernels.float_ops.bitops, "active_isa", lambda: "scalar")
    direct = DirectConv2dOp(op.name, op.params, op.tensors)
    assert direct.algorithm == "direct" and direct.label == label.replace("(winograd)", "")
    assert direct.algorithm_macs(shape) == macs
