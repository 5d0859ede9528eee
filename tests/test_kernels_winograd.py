"""Winograd's F(4x4, 4x4) on the polyphase form of a 7x7 stride-2 conv over 1-4 input channels
(an ImageNet stem; the fast path's DirectConv2dOp runs it where the direct kernel is native):
against torch's float64 conv on random geometries (odd sizes, partial tiles and 16-channel
blocks, any padding and pad value, batches), with its max-pool (min-pooled channels) and the
signs it packs for the next layer, on every ISA and thread count; the Bi-Real stem against the
direct kernel; which layers take it.

Tolerance: `close` (atol 2e-5 * max(1, |y|max), as the direct kernel's tests): Winograd's
transforms multiply the inputs and outputs by up to 8 and sum up to 49 terms, and measured its
error against float64 is at most 5e-6 * |y|max over 300 random geometries (the direct
kernel's 5e-7), 4x inside it."""

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


def float64_conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, pad_value: np.ndarray,
                 padding: int) -> torch.Tensor:
    """The stride-2 conv of x padded with pad_value[c], in float64, NCHW."""
    padded = np.stack([np.pad(x[:, c], ((0, 0), (padding, padding), (padding, padding)),
                              constant_values=v) for c, v in enumerate(pad_value)], axis=1)
    return F.conv2d(torch.from_numpy(padded).double(), torch.from_numpy(weight).double(),
                    torch.from_numpy(bias).double(), 2)


def pooled(y: torch.Tensor, lower: np.ndarray) -> torch.Tensor:
    """torch's max-pool of y, the minimum on channels with lower[c] != 0."""
    sign = torch.from_numpy(np.where(lower != 0, -1.0, 1.0))[None, :, None, None]
    return F.max_pool2d(y * sign, 3, 2, 1) * sign


@pytest.mark.parametrize("seed", range(12))
def test_winograd_equals_float64_conv_on_every_isa(seed: int) -> None:
    """Random geometry: 1-4 input channels, padding 0-4, sizes 7-40 leaving partial 4x4
    tiles, channel counts with partial 16-channel blocks, batches, non-zero pad values; plain,
    max-pooled (some channels min-pooled) and with the signs of map - shift, which are
    pack_nhwc's of the floats returned; 3 threads give 1 thread's result bit for bit."""
    rng = np.random.default_rng(seed)
    c_in, padding = int(rng.integers(1, 5)), int(rng.integers(0, 5))
    c_out = int(rng.choice([1, 16, 17, 40, 64, 70]))
    h, w = (int(v) for v in rng.integers(max(1, 7 - 2 * padding), 41, size=2))
    x = rng.normal(size=(int(rng.integers(1, 3)), c_in, h, w)).astype(np.float32)
    weight = rng.normal(size=(c_out, c_in, 7, 7)).astype(np.float32)
    bias = rng.normal(size=c_out).astype(np.float32)
    pad_value = rng.normal(size=c_in).astype(np.float32)
    lower = (rng.random(c_out) < 0.3).astype(np.uint8)
    shift = rng.normal(size=c_out).astype(np.float32)
    layer = bitops.direct_conv_layer(weight, bias, pad_value, 2, padding, winograd=True)
    assert layer.algorithm == "winograd"
    conv = float64_conv(x, weight, bias, pad_value, padding)
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


@pytest.mark.parametrize("c_out,h,w", [(40, 11, 300), (130, 9, 150), (2100, 13, 11)])
def test_winograd_in_chunks_of_tiles_and_channels(c_out: int, h: int, w: int) -> None:
    """Tile rows longer than one GEMM's chunk (32 tiles of up to 64 channels, fewer tiles of
    more) and more channels than one GEMM takes (2048: two groups, a partial block last)."""
    rng = np.random.default_rng(c_out)
    x = rng.normal(size=(1, 2, h, w)).astype(np.float32)
    weight = rng.normal(size=(c_out, 2, 7, 7)).astype(np.float32)
    bias, pad_value = rng.normal(size=c_out).astype(np.float32), np.zeros(2, np.float32)
    layer = bitops.direct_conv_layer(weight, bias, pad_value, 2, 3)
    assert layer.algorithm == "winograd"
    close(layer(x, 2), float64_conv(x, weight, bias, pad_value, 3).permute(0, 2, 3, 1).numpy())


def test_winograd_takes_the_bireal_stem_from_the_direct_kernel() -> None:
    """1x3x224x224 -> 64 channels, pooled to 56x56, with signs: close to the direct kernel's
    result; 2 threads give 1 thread's map and signs bit for bit."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(1, 3, 224, 224)).astype(np.float32)
    weight = (rng.normal(size=(64, 3, 7, 7)) * 0.1).astype(np.float32)
    bias, pad_value = rng.normal(size=64).astype(np.float32), rng.normal(size=3).astype(np.float32)
    lower = (np.arange(64) % 5 == 0).astype(np.uint8)
    args = (weight, bias, pad_value, 2, 3)
    fast, direct = (bitops.direct_conv_layer(*args, winograd=on) for on in (True, False))
    assert (fast.algorithm, direct.algorithm) == ("winograd", "direct")
    close(fast(x, 1, *POOL, lower), direct(x, 1, *POOL, lower))
    one = fast(x, 1, *POOL, lower, signs=True)
    two = fast(x, 2, *POOL, lower, signs=True)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("winograd", [False, True])
def test_fused_max_pool_is_the_pool_of_the_conv_on_either_algorithm(winograd: bool) -> None:
    """The max-pool in the conv's pass gives maxpool2d_float of the conv's map bit for bit
    (min-pooled channels, a NaN input, two images, thread shares starting inside an image):
    Winograd's 4-row tiles made into the pool's ring as the direct kernel's single rows."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 3, 37, 30)).astype(np.float32)
    x[1, 2, 20, 7] = np.nan
    weight = rng.normal(size=(24, 3, 7, 7)).astype(np.float32)
    layer = bitops.direct_conv_layer(weight, rng.normal(size=24).astype(np.float32),
                                     np.zeros(3, np.float32), 2, 3, winograd)
    lower = (np.arange(24) % 4 == 1).astype(np.uint8)
    for pool in (POOL, ((3, 3), (1, 1), (1, 1)), ((2, 2), (2, 2), (0, 0))):
        expected = bitops.maxpool2d_float(layer(x), *(p[0] for p in pool), lower)
        for threads in (1, 2, 3):
            got = layer(x, threads, *pool, lower)
            np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_which_layers_take_winograd() -> None:
    """7x7 stride 2 over 2-4 channels by default, over 1 on request (winograd=True); other
    geometries keep the direct kernel, refuse winograd=True, and count the nominal
    multiply-adds."""
    def layer(c_in: int, k: int, stride: int, winograd: bool | None = None):
        w = np.ones((20, c_in, k, k), np.float32)
        return bitops.direct_conv_layer(w, np.zeros(20, np.float32), np.zeros(c_in, np.float32),
                                        stride, k // 2, winograd)

    assert [layer(c, 7, 2).algorithm for c in (1, 2, 3, 4, 5)] == [
        "direct", "winograd", "winograd", "winograd", "direct"]
    assert layer(1, 7, 2, True).algorithm == "winograd"
    assert layer(3, 7, 1).algorithm == layer(3, 5, 2).algorithm == "direct"
    assert layer(3, 7, 2, False).algorithm == "direct"
    with pytest.raises(ValueError, match="winograd=True needs a 7x7 kernel, stride 2"):
        layer(3, 3, 2, True)
    # 37x30 -> 19x15 outputs: 5x4 tiles of 49 points, 4 * 3 phase channels, 20 outputs.
    assert layer(3, 7, 2).macs(2, 37, 30) == 2 * 5 * 4 * 49 * 12 * 20
    assert layer(3, 7, 2, False).macs(2, 37, 30) == 2 * 19 * 15 * 20 * 3 * 49


@pytest.mark.skipif(kernels.active_isa() not in DIRECT_CONV_ISAS,
                    reason="the direct conv is made where its kernel is native")
def test_folded_stem_runs_winograd_and_says_so(monkeypatch) -> None:
    """The fast path's 7x7 stem (normalisation, BatchNorm and max-pool folded in) runs by
    Winograd, its label and algorithm_macs say so, and it stays close to torch; made without
    the native kernel, it is direct."""
    ops, model = stem_ops(7, 2, True)
    (op,) = fold_float_parts(ops)
    assert isinstance(op, DirectConv2dOp) and op.algorithm == "winograd"
    assert op.label == "float:conv7x7(winograd)+bn+maxpool"
    shape = (3, 23, 29)
    assert op.macs(shape, op.output_shape(shape))[1] == 24 * 12 * 15 * 3 * 49
    assert op.algorithm_macs(shape) == 3 * 4 * 49 * 12 * 24
    x = torch.rand(2, *shape) * 4 - 1
    with torch.no_grad():
        close(op.run(x, 1).numpy(), model(x).numpy())
    monkeypatch.setattr(kernels.float_ops.bitops, "active_isa", lambda: "scalar")
    direct = DirectConv2dOp(op.name, op.params, op.tensors)
    assert direct.algorithm == "direct" and direct.label == "float:conv7x7+bn+maxpool"
    assert direct.algorithm_macs(shape) == 24 * 12 * 15 * 3 * 49
