"""The direct float conv of stems (few input channels, NCHW in, NHWC out) on every ISA against
torch's conv, within float rounding (it sums in another order), and the folding that makes it:
BatchNorm and the input normalisation folded in, padded taps reading the normalisation's mean so
the borders match torch's zero padding of the normalised map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_kernels_families import assert_matches_torch, family_model, sample
from test_kernels_folding import folded_convs
from torch import nn

import kernels
from kernels import bitops
from kernels.block_ops import BlockOp
from kernels.float_ops import (
    DIRECT_CONV_ISAS,
    BatchNormOp,
    Conv2dOp,
    DirectConv2dOp,
    FoldedConv2dOp,
    MaxPool2dOp,
    NormalizeOp,
)
from kernels.folding import fold_float_parts
from spaces.layers import Normalize

ISAS = kernels.available_isas()


def close(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to float32 rounding of sums of a few hundred products."""
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5 * scale)


@pytest.mark.parametrize("seed", range(12))
def test_direct_conv_equals_torch_on_every_isa(seed: int) -> None:
    """Random geometry: 1-4 input channels, kernels 1-7, strides 1-3, padding 0 to past half
    the kernel, output widths that leave partial 6-pixel tiles, channel counts with partial
    16-channel blocks and 1-3 trailing blocks, batches; pad_value 0 is torch's conv."""
    rng = np.random.default_rng(seed)
    c_in, k = int(rng.integers(1, 5)), int(rng.choice([1, 3, 5, 7]))
    stride, padding = int(rng.integers(1, 4)), int(rng.integers(0, k // 2 + 2))
    c_out = int(rng.choice([1, 16, 17, 40, 64, 70, 128, 150]))
    h, w = (int(v) for v in rng.integers(max(1, k - 2 * padding), 30, size=2))
    x = rng.normal(size=(int(rng.integers(1, 3)), c_in, h, w)).astype(np.float32)
    weight = rng.normal(size=(c_out, c_in, k, k)).astype(np.float32)
    bias = rng.normal(size=c_out).astype(np.float32)
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias),
                        stride, padding).permute(0, 2, 3, 1).numpy()
    layer = bitops.direct_conv_layer(weight, bias, np.zeros(c_in, np.float32), stride, padding)
    for isa in ISAS:
        with kernels.use_isa(isa):
            for threads in (1, 3):
                close(layer(x, threads), expected)


@pytest.mark.parametrize("padding", [(2, 2), (0, 2), (1, 0)])
def test_pad_value_is_what_padded_taps_read(padding: tuple[int, int]) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 9, 13)).astype(np.float32)
    pad_value = np.array([0.5, -2.0, 3.0], np.float32)
    weight = rng.normal(size=(20, 3, 3, 3)).astype(np.float32)
    bias = rng.normal(size=20).astype(np.float32)
    ph, pw = padding
    padded = np.stack([np.pad(x[:, c], ((0, 0), (ph, ph), (pw, pw)), constant_values=v)
                       for c, v in enumerate(pad_value)], axis=1)
    expected = F.conv2d(torch.from_numpy(padded), torch.from_numpy(weight),
                        torch.from_numpy(bias), 2).permute(0, 2, 3, 1).numpy()
    for isa in ISAS:
        with kernels.use_isa(isa):
            close(bitops.direct_conv_layer(weight, bias, pad_value, 2, padding)(x), expected)


@pytest.mark.parametrize("c_in,c_out,h,w", [(64, 128, 28, 28), (256, 512, 7, 7), (3, 70, 5, 9),
                                           (130, 17, 1, 13)])
def test_pointwise_conv_equals_torch_on_every_isa(c_in: int, c_out: int, h: int, w: int) -> None:
    """A 1x1 layer on NHWC x (a shortcut's conv): all pixels one GEMM, split over threads."""
    rng = np.random.default_rng(c_in + w)
    x = rng.normal(size=(2, h, w, c_in)).astype(np.float32)
    weight = rng.normal(size=(c_out, c_in, 1, 1)).astype(np.float32)
    bias = rng.normal(size=c_out).astype(np.float32)
    expected = F.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(weight),
                        torch.from_numpy(bias)).permute(0, 2, 3, 1).numpy()
    layer = bitops.direct_conv_layer(weight, bias, np.zeros(c_in, np.float32))
    for isa in ISAS:
        with kernels.use_isa(isa):
            for threads in (1, 3):
                close(layer.pointwise(x, threads), expected)


@pytest.mark.parametrize("size,pool", [(33, (3, 2, 1)), (20, (2, 2, 0)), (15, (3, 1, 1)),
                                       (17, (3, 3, 1))])
def test_fused_max_pool_equals_conv_then_pool(size: int, pool: tuple) -> None:
    """The max-pool in the conv's pass gives maxpool2d_float of the conv's map, bit for bit
    (min-pooled channels, NaN inputs), on every ISA and thread count: windows that share conv
    rows, thread ranges that start inside an image, two images."""
    rng = np.random.default_rng(size)
    x = rng.normal(size=(2, 3, size, size + 4)).astype(np.float32)
    x[0, 1, 3, 5] = np.nan
    weight = rng.normal(size=(40, 3, 7, 7)).astype(np.float32)
    bias = rng.normal(size=40).astype(np.float32)
    layer = bitops.direct_conv_layer(weight, bias, np.zeros(3, np.float32), 2, 3)
    k, s, p = pool
    for lower in (None, (np.arange(40) % 3 == 0).astype(np.uint8)):
        for isa in ISAS:
            with kernels.use_isa(isa):
                expected = bitops.maxpool2d_float(layer(x), k, s, p, lower)
                for threads in (1, 2, 3):
                    got = layer(x, threads, (k, k), (s, s), (p, p), lower)
                    np.testing.assert_array_equal(got.view(np.uint32),
                                                  expected.view(np.uint32))


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("pool,h,w", [((2, 2), 28, 28), ((2, 2), 7, 9), ((3, 2), 9, 8)])
def test_average_pooled_pointwise_conv_equals_torch(pool: tuple, h: int, w: int,
                                                    ceil_mode: bool) -> None:
    """avg_pool: torch's AvgPool2d (stride = kernel; odd sizes drop the last row or column, or
    with ceil_mode average the clipped window's taps) then the 1x1 conv, on every ISA and
    thread count."""
    rng = np.random.default_rng(h * w)
    x = rng.normal(size=(2, h, w, 64)).astype(np.float32)
    weight = rng.normal(size=(96, 64, 1, 1)).astype(np.float32)
    bias = rng.normal(size=96).astype(np.float32)
    pooled = F.avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), pool, pool,
                          ceil_mode=ceil_mode, count_include_pad=False)
    expected = F.conv2d(pooled, torch.from_numpy(weight),
                        torch.from_numpy(bias)).permute(0, 2, 3, 1).numpy()
    layer = bitops.direct_conv_layer(weight, bias, np.zeros(64, np.float32))
    for isa in ISAS:
        with kernels.use_isa(isa):
            for threads in (1, 2):
                close(layer.pointwise(x, threads, pool, ceil_mode), expected)


def test_bad_direct_conv_input_is_refused() -> None:
    w, b, v = np.zeros((8, 3, 3, 3), np.float32), np.zeros(8, np.float32), np.zeros(3, np.float32)
    layer = bitops.direct_conv_layer(w, b, v, 1, 1)
    with pytest.raises(ValueError, match="x has 4 channels, the layer takes 3"):
        layer(np.zeros((1, 4, 8, 8), np.float32))
    with pytest.raises(ValueError, match="larger than the padded input"):
        bitops.direct_conv_layer(w, b, v, 1, 0)(np.zeros((1, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="pad_value has 2 entries, expected C_in = 3"):
        bitops.direct_conv_layer(w, b, v[:2], 1, 1)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        bitops.direct_conv_layer(w, b, v, 0, 1)
    with pytest.raises(TypeError, match="float32"):
        layer(np.zeros((1, 3, 8, 8), np.float64))
    with pytest.raises(ValueError, match="pool_stride and lower need pool_kernel"):
        layer(np.zeros((1, 3, 8, 8), np.float32), 1, None, (2, 2))
    with pytest.raises(ValueError, match="pool_padding must be at most half the pool kernel"):
        layer(np.zeros((1, 3, 8, 8), np.float32), 1, (2, 2), (2, 2), (2, 2))
    with pytest.raises(ValueError, match="lower has 3 entries, expected C_out = 8"):
        layer(np.zeros((1, 3, 8, 8), np.float32), 1, (2, 2), None, (0, 0),
              np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="avg_pool window is larger than the input"):
        bitops.direct_conv_layer(np.zeros((8, 3, 1, 1), np.float32), b, v).pointwise(
            np.zeros((1, 1, 4, 3), np.float32), 1, (2, 2))
    with pytest.raises(ValueError, match="ceil_mode needs avg_pool"):
        bitops.direct_conv_layer(np.zeros((8, 3, 1, 1), np.float32), b, v).pointwise(
            np.zeros((1, 4, 4, 3), np.float32), 1, None, True)
    with pytest.raises(ValueError, match="pointwise needs a 1x1 kernel"):
        layer.pointwise(np.zeros((1, 8, 8, 3), np.float32))
    one = bitops.direct_conv_layer(np.zeros((8, 3, 1, 1), np.float32), b, v)
    with pytest.raises(ValueError, match="x has 4 channels, the layer takes 3"):
        one.pointwise(np.zeros((1, 8, 8, 4), np.float32))


def stem_ops(kernel: int, stride: int, pool: bool) -> tuple[list, nn.Module]:
    """Normalize -> conv -> [max-pool ->] BatchNorm as ops (the compiler's stem order: the pool
    takes the minimum where gamma < 0) and as torch modules in the model's order (BatchNorm
    before the pool), random statistics with negative gammas."""
    torch.manual_seed(kernel + stride)
    norm = Normalize([0.45, -0.2, 1.5], [0.25, 2.0, 0.5])
    conv = nn.Conv2d(3, 24, kernel, stride, kernel // 2, bias=False)
    bn = nn.BatchNorm2d(24).eval()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
    ops = [NormalizeOp.from_module("norm", norm, False), Conv2dOp.from_module("conv", conv, False)]
    modules = [norm, conv, bn]
    if pool:
        moved = MaxPool2dOp.from_module("pool", nn.MaxPool2d(3, 2, 1), False)
        ops.append(moved.with_lower(bn.weight.detach().numpy() < 0))  # as the compiler moves it
        modules.append(nn.MaxPool2d(3, 2, 1))
    ops.append(BatchNormOp.from_module("bn", bn, False))
    return ops, nn.Sequential(*modules).eval()


@pytest.mark.skipif(kernels.active_isa() not in DIRECT_CONV_ISAS,
                    reason="the direct conv is made where its kernel is native")
@pytest.mark.parametrize("kernel,stride,pool", [(7, 2, True), (3, 1, False), (3, 2, True)])
def test_stem_folds_into_one_direct_conv_with_torchs_borders(kernel: int, stride: int,
                                                             pool: bool) -> None:
    """Normalize, conv, BatchNorm (and the max-pool, in the conv's pass) become one
    DirectConv2dOp; border pixels (padded taps) included, it gives torch's stem up to
    rounding, and on any ISA once made."""
    ops, model = stem_ops(kernel, stride, pool)
    folded = fold_float_parts(ops)
    assert [type(op) for op in folded] == [DirectConv2dOp]
    assert (folded[0].pool is not None) == pool and folded[0].name == ops[-2 if pool else 1].name
    x = torch.rand(2, 3, 23, 29) * 4 - 1
    with torch.no_grad():
        expected = model(x).numpy()
    for isa in ISAS:
        with kernels.use_isa(isa):
            y = x
            for op in folded:
                y = op.run(y, 1)
        close(y.numpy(), expected)


def test_normalisation_stays_where_the_conv_is_not_direct(monkeypatch) -> None:
    """Without the native kernel (or with many input channels) the conv folds as before, onto
    oneDNN, and the normalisation runs on its own."""
    monkeypatch.setattr(bitops, "active_isa", lambda: "scalar")
    ops, _ = stem_ops(3, 1, False)
    assert [type(op) for op in fold_float_parts(ops)] == [NormalizeOp, FoldedConv2dOp]


@pytest.mark.skipif(kernels.active_isa() not in DIRECT_CONV_ISAS,
                    reason="the direct conv is made where its kernel is native")
def test_shortcut_convs_run_as_one_gemm() -> None:
    """A Bi-Real downsampling shortcut (average pool, 1x1 conv, BatchNorm) folds into one
    pointwise DirectConv2dOp, and the fast model keeps torch's predictions."""
    model = family_model("bireal", seed=4, shape=(3, 32, 32), stem_layout="imagenet",
                         downsample="avgpool_conv")
    fast = kernels.compile(model, (3, 32, 32), exact_float=False)
    direct = [op for op in folded_convs(fast) if isinstance(op, DirectConv2dOp)]
    assert len(direct) == 3 and sum(DirectConv2dOp.pointwise(op) for op in direct) == 2
    assert all(op.avg_pool.kernel_size == (2, 2) for op in direct if DirectConv2dOp.pointwise(op))
    assert [len(op.chains["shortcut"]) for op in fast.ops if isinstance(op, BlockOp)
            and op.chains["shortcut"]] == [1, 1]  # the average pool went into the conv
    assert not any(isinstance(op, NormalizeOp) for op in fast.ops)
    x = torch.randn(32, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_array_equal(fast(x).argmax(1), model(x).numpy().argmax(1))


# A Bi-Real network's ImageNet stem (7x7 / 2) and shortcut 1x1 convs; a VGG-style 3x3 stem.
EXACT_CONVS = [("bireal", {"stem_layout": "imagenet", "downsample": "avgpool_conv"}, 48, 3),
               ("plain", {}, 16, 1)]


@pytest.mark.skipif(kernels.active_isa() not in DIRECT_CONV_ISAS,
                    reason="the direct conv is made where its kernel is native")
@pytest.mark.parametrize("family, options, size, convs", EXACT_CONVS,
                         ids=[c[0] for c in EXACT_CONVS])
def test_exact_convs_run_on_the_direct_kernel_where_it_gives_torchs_bits(
        family: str, options: dict, size: int, convs: int, monkeypatch) -> None:
    """The exact path's stem convs and shortcut 1x1 convs run on bnnx's direct kernel, in
    whichever of its tap orders gave torch's bits on a random map of the input's shape (checked
    per shape, torch thread count and ISA; on the AMD EPYC here the 7x7 stem's row-first and
    the 3x3 stem's channel-first orders did, some 1x1 shapes did not), else torch's conv: every
    binary layer's input bits stay torch's, on 1 and 2 threads, whichever conv ran."""
    model = family_model(family, seed=6, shape=(3, size, size), **options)
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            exact = assert_matches_torch(model, monkeypatch, shape=(3, size, size))
            found = [op for op in exact.ops if type(op) is Conv2dOp] + [
                op.chains["shortcut"][-2] for op in exact.ops
                if isinstance(op, BlockOp) and len(op.chains["shortcut"]) > 1]
            assert len(found) == convs and all(conv.directs for conv in found)
            assert all(layer.algorithm == "direct" for conv in found for layer in conv.directs)
            batch = sample((3, size, size)).shape[0]  # what assert_matches_torch ran
            assert all(any(key[0][0] == batch and key[1] == threads for key in conv._verdicts)
                       for conv in found)
    finally:
        torch.set_num_threads(previous)


def test_exact_stem_keeps_torchs_conv_where_the_kernel_differs(monkeypatch) -> None:
    """A shape whose check finds a bit apart in every tap order runs torch's conv."""
    op = Conv2dOp.from_module("stem.1", nn.Conv2d(3, 16, 7, 2, 3, bias=False), False)
    x = torch.randn(1, 3, 20, 20)
    if not op.directs:
        pytest.skip("the direct conv is made where its kernel is native")
    monkeypatch.setattr(Conv2dOp, "direct_conv",
                        lambda self, layer, a, threads: np.zeros((1, 7, 7, 16), np.float32))
    assert op.torchs_bits(x) is None
    np.testing.assert_array_equal(op.run(x, 1).numpy(), op.conv(x).numpy())


def test_exact_conv_leaves_large_batches_to_torch(monkeypatch) -> None:
    """A batch past CHECKED_BATCH is neither checked nor run on the direct kernel."""
    op = Conv2dOp.from_module("stem.1", nn.Conv2d(3, 16, 7, 2, 3, bias=False), False)
    monkeypatch.setattr(Conv2dOp, "CHECKED_BATCH", 2)
    x = torch.randn(3, 3, 20, 20)
    assert op.torchs_bits(x) is None and not op._verdicts
    np.testing.assert_array_equal(op.run(x, 1).numpy(), op.conv(x).numpy())
