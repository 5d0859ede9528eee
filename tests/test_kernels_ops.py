"""Packed-bit kernels against torch references: exact integer dots, exact sign bits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from thread_pools import POOLS, run_on_pool

import kernels
from kernels.thresholds import apply_thresholds


def pm1(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


def torch_dots(x_nchw: np.ndarray, w: np.ndarray, stride: int, padding: int,
               pad_value: float) -> np.ndarray:
    """BinaryConv2d's arithmetic: pad the +-1 input with pad_value, then conv; NHWC int."""
    x = F.pad(torch.from_numpy(x_nchw), (padding,) * 4, value=pad_value)
    y = F.conv2d(x, torch.from_numpy(w), stride=stride)
    return y.permute(0, 2, 3, 1).numpy().astype(np.int64)


def packed(x_nchw: np.ndarray) -> np.ndarray:
    return kernels.pack_nchw(np.ascontiguousarray(x_nchw))


# (c_in, c_out, kernel, stride, padding, pad_value, h, w)
CONV_CASES = [
    (3, 5, 3, 1, 1, 0, 7, 6),
    (3, 5, 3, 1, 1, 1, 7, 6),
    (3, 5, 3, 1, 1, -1, 7, 6),
    (33, 17, 3, 2, 1, 0, 9, 8),
    (33, 17, 3, 2, 1, 1, 9, 8),
    (64, 64, 3, 1, 1, 0, 5, 5),
    (65, 70, 3, 1, 1, 1, 6, 5),
    (65, 3, 5, 2, 2, 0, 11, 10),
    (130, 129, 1, 1, 0, 0, 4, 3),
    (130, 33, 5, 1, 2, 1, 6, 7),
    (1, 1, 3, 2, 0, 0, 5, 5),
    (7, 9, 5, 2, 3, -1, 4, 4),  # padding > kernel // 2: some windows are mostly padding
    (16, 8, 3, 1, 0, 1, 3, 3),  # a single output pixel
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "-".join(map(str, c)))
def test_conv_dots_equal_torch_exactly(case: tuple[int, ...]) -> None:
    c_in, c_out, k, stride, pad, pad_value, h, w = case
    rng = np.random.default_rng(sum(case) + 7 * c_in)
    x = pm1(rng, (2, c_in, h, w))
    wt = pm1(rng, (c_out, c_in, k, k))
    expected = torch_dots(x, wt, stride, pad, pad_value)
    got = kernels.conv2d_dots(packed(x), kernels.pack_weight(wt), c_in, stride, pad, pad_value)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("isa", kernels.available_isas())
def test_every_isa_and_thread_count_agree(isa: str) -> None:
    rng = np.random.default_rng(1)
    x, wt = pm1(rng, (3, 65, 9, 7)), pm1(rng, (21, 65, 3, 3))
    expected = torch_dots(x, wt, 1, 1, 1)
    with kernels.use_isa(isa):
        assert kernels.active_isa() == isa
        for threads in (1, 4):
            got = kernels.conv2d_dots(packed(x), kernels.pack_weight(wt), 65, 1, 1, 1,
                                      threads=threads)
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("isa", kernels.available_isas())
@pytest.mark.parametrize("shape", [(1, 7, 7), (2, 16, 16), (1, 13, 11), (1, 1, 5)])
def test_pointwise_work_split_agrees_on_every_thread_count(isa: str,
                                                           shape: tuple[int, ...]) -> None:
    """A 1x1 conv runs as one long row on one thread; on more, as equal rows of it (a divisor of
    the pixel count) or, when the map is too small for that, channel groups: same dots."""
    n, h, w = shape
    rng = np.random.default_rng(h * w)
    x, wt = pm1(rng, (n, 70, h, w)), pm1(rng, (75, 70, 1, 1))
    expected = torch_dots(x, wt, 1, 0, 0)
    with kernels.use_isa(isa):
        for threads in (1, 2, 3):
            got = kernels.conv2d_dots(packed(x), kernels.pack_weight(wt), 70, 1, 0, 0,
                                      threads=threads)
            np.testing.assert_array_equal(got, expected)


def test_prepared_layers_equal_the_one_off_calls_on_any_input() -> None:
    """A layer keeps its blocked weights (the caller's array stays alive with it) and padded
    output parameters; run on inputs of several sizes it gives what a layer built for the one
    call (the conv2d_* functions, or a fresh unit layer) gives."""
    rng = np.random.default_rng(9)
    wt = kernels.pack_weight(pm1(rng, (21, 70, 3, 3)))
    th = rng.integers(-40, 40, 21).astype(np.int32)
    direction = np.where(rng.random(21) < 0.5, -1, 1).astype(np.int8)
    scale, bias = rng.standard_normal(21).astype(np.float32), rng.standard_normal(21).astype(
        np.float32)
    alpha, beta = rng.standard_normal(21).astype(np.float32), rng.standard_normal(21).astype(
        np.float32)
    act = kernels.UnitActivation("prelu", rng.standard_normal(21).astype(np.float32))
    blocked = kernels.bitops.block_weight(wt)
    layers = {"bits": kernels.bits_layer(wt, 70, th, direction, 1, 1, 1, blocked),
              "float": kernels.float_layer(wt, 70, scale, bias, 1, 1, -1),
              "unit": kernels.unit_layer(wt, 70, scale, bias, 1, 1, 0, blocked,
                                         batchnorm=(alpha, beta), activation=act)}
    del blocked  # the layers hold it
    for shape in [(1, 70, 5, 6), (2, 70, 9, 4)]:
        x = packed(pm1(rng, shape))
        residual = rng.standard_normal((shape[0], shape[2], shape[3], 21)).astype(np.float32)
        np.testing.assert_array_equal(
            layers["bits"](x, 2), kernels.conv2d_bits(x, wt, 70, th, direction, 1, 1, 1))
        np.testing.assert_array_equal(
            layers["float"](x), kernels.conv2d_float(x, wt, 70, scale, bias, 1, 1, -1))
        y, bits = layers["unit"](x, 1, residual, True)
        want_y, want_bits = kernels.unit_layer(wt, 70, scale, bias, 1, 1, 0,
                                               batchnorm=(alpha, beta),
                                               activation=act)(x, 1, residual, True)
        np.testing.assert_array_equal(y.view(np.uint32), want_y.view(np.uint32))
        np.testing.assert_array_equal(bits, want_bits)
    assert (layers["unit"].c_in, layers["unit"].c_out) == (70, 21)


FORK_SCRIPT = """
import os, sys, numpy as np, torch, kernels
rng = np.random.default_rng(2)
x = kernels.pack_nchw(np.where(rng.random((2, 70, 13, 11)) < 0.5, -1.0, 1.0).astype(np.float32))
w = kernels.pack_weight(np.where(rng.random((40, 70, 3, 3)) < 0.5, -1.0, 1.0).astype(np.float32))
one = kernels.conv2d_dots(x, w, 70, 1, 1, 0, threads=1)
torch.set_num_threads(2)
torch.mm(torch.randn(64, 64), torch.randn(64, 64))  # torch's OpenMP team is up and spinning
assert np.array_equal(kernels.conv2d_dots(x, w, 70, 1, 1, 0, threads=3), one)
pid = os.fork()
if pid == 0:  # the child has neither team's workers: it must still finish, and agree
    os._exit(0 if np.array_equal(kernels.conv2d_dots(x, w, 70, 1, 1, 0, threads=3), one) else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize("pool", POOLS)
def test_thread_teams_agree_and_survive_fork(pool: str) -> None:
    """Jobs run on the loaded libgomp's team (torch's) unless BNNX_THREAD_POOL=bnnx forces the
    own pool; a forked child falls back to a fresh own pool instead of hanging on dead threads."""
    run_on_pool(FORK_SCRIPT, pool)


def test_use_isa_restores_and_rejects_unknown() -> None:
    before = kernels.active_isa()
    with kernels.use_isa("scalar"):
        pass
    assert kernels.active_isa() == before
    with pytest.raises(ValueError, match="unknown or unsupported ISA"):
        with kernels.use_isa("avx9000"):
            pass


def random_bn(rng: np.random.Generator, c: int, k: int) -> torch.nn.BatchNorm2d:
    """BatchNorm with thresholds inside the dot range, negative and zero gammas, and some means
    on exact integers (where sign(0) = +1 decides the bit)."""
    bn = torch.nn.BatchNorm2d(c).eval()
    spread = max(1.0, np.sqrt(k))
    with torch.no_grad():
        gamma = rng.normal(size=c)
        gamma[::4] *= -1.0
        if c > 1:
            gamma[1] = 0.0
        bn.weight.copy_(torch.from_numpy(gamma))
        mean = rng.normal(scale=spread, size=c)
        mean[::3] = np.round(mean[::3])
        bn.running_mean.copy_(torch.from_numpy(mean))
        bn.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, size=c) * spread**2))
        beta = rng.normal(scale=0.5, size=c)
        beta[::3] = 0.0
        bn.bias.copy_(torch.from_numpy(beta))
    return bn


def thresholds_for(bn: torch.nn.BatchNorm2d, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = torch.arange(-k, k + 1, dtype=torch.float32).view(1, 1, -1, 1).expand(1, bn.num_features,
                                                                               -1, 1)
    with torch.no_grad():
        post = bn(d.contiguous())
    return kernels.sign_thresholds((~(post >= 0))[0, :, :, 0].T.numpy())


@pytest.mark.parametrize("case", CONV_CASES[::2], ids=lambda c: "-".join(map(str, c)))
def test_conv_bits_equal_torch_sign_of_batchnorm(case: tuple[int, ...]) -> None:
    c_in, c_out, k, stride, pad, pad_value, h, w = case
    rng = np.random.default_rng(100 + sum(case))
    x, wt = pm1(rng, (3, c_in, h, w)), pm1(rng, (c_out, c_in, k, k))
    bn = random_bn(rng, c_out, c_in * k * k)
    threshold, direction = thresholds_for(bn, c_in * k * k)
    bits = kernels.conv2d_bits(packed(x), kernels.pack_weight(wt), c_in, threshold, direction,
                               stride, pad, pad_value)
    xt = F.pad(torch.from_numpy(x), (pad,) * 4, value=pad_value)
    with torch.no_grad():
        y = bn(F.conv2d(xt, torch.from_numpy(wt), stride=stride))
    expected = torch.where(y >= 0, 1.0, -1.0).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(kernels.unpack_nhwc(bits, c_out), expected)
    # Bits past C_out stay zero, so the next layer's XOR ignores them.
    if c_out % 64:
        assert not (bits[..., -1] >> np.uint64(c_out % 64)).any()


def test_conv_float_is_scale_times_dot_plus_bias() -> None:
    rng = np.random.default_rng(3)
    x, wt = pm1(rng, (2, 33, 6, 6)), pm1(rng, (10, 33, 3, 3))
    scale = rng.normal(size=10).astype(np.float32)
    bias = rng.normal(size=10).astype(np.float32)
    got = kernels.conv2d_float(packed(x), kernels.pack_weight(wt), 33, scale, bias, 1, 1, 0)
    dots = torch_dots(x, wt, 1, 1, 0).astype(np.float32)
    np.testing.assert_allclose(got, scale * dots + bias, rtol=1e-6, atol=1e-5)


def test_sign_thresholds_cover_every_shape() -> None:
    k = 4
    d = np.arange(-k, k + 1)[:, None]
    table = np.concatenate(
        [d >= 2, d <= -1, d < -k, d >= -k, d >= k, d <= -k], axis=1
    )
    threshold, direction = kernels.sign_thresholds(table)
    np.testing.assert_array_equal(apply_thresholds(d, threshold, direction), table)
    np.testing.assert_array_equal(direction, [1, -1, 1, 1, 1, -1])
    with pytest.raises(kernels.NonMonotonicError, match="channel 0"):
        kernels.sign_thresholds(np.abs(d) <= 1)


def test_pack_encoding_matches_quantizer_sign() -> None:
    values = np.array([-2.0, -0.0, 0.0, 1e-30, -1e-30, np.nan, np.inf, -np.inf], np.float32)
    bits = kernels.pack_nhwc(values.reshape(1, 1, 1, -1))
    unpacked = kernels.unpack_nhwc(bits, values.size).ravel()
    expected = torch.where(torch.from_numpy(values) >= 0, 1.0, -1.0).numpy()
    np.testing.assert_array_equal(unpacked, expected)
    assert int(bits[0, 0, 0, 0]) >> values.size == 0


@pytest.mark.parametrize("channels", [1, 3, 63, 64, 65, 130])
def test_pack_nchw_equals_pack_nhwc_and_roundtrips(channels: int) -> None:
    rng = np.random.default_rng(channels)
    x = rng.normal(size=(2, channels, 5, 3)).astype(np.float32)
    from_nchw = kernels.pack_nchw(x)
    from_nhwc = kernels.pack_nhwc(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    np.testing.assert_array_equal(from_nchw, from_nhwc)
    assert from_nchw.shape == (2, 5, 3, kernels.words_for(channels))
    np.testing.assert_array_equal(
        kernels.unpack_nhwc(from_nchw, channels), np.where(x >= 0, 1.0, -1.0).transpose(0, 2, 3, 1)
    )


@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0)])
def test_maxpool_on_bits_is_sign_of_maxpool(kernel: int, stride: int, padding: int) -> None:
    rng = np.random.default_rng(kernel * 10 + stride)
    y = torch.from_numpy(rng.normal(size=(2, 70, 7, 9)).astype(np.float32))
    pooled = F.max_pool2d(y, kernel, stride, padding)
    expected = torch.where(pooled >= 0, 1.0, -1.0).permute(0, 2, 3, 1).numpy()
    got = kernels.maxpool2d_bits(packed(y.numpy()), kernel, stride, padding)
    np.testing.assert_array_equal(kernels.unpack_nhwc(got, 70), expected)
    nhwc = np.ascontiguousarray(y.permute(0, 2, 3, 1).numpy())
    np.testing.assert_array_equal(kernels.maxpool2d_float(nhwc, kernel, stride, padding),
                                  pooled.permute(0, 2, 3, 1).numpy())


@pytest.mark.parametrize("isa", kernels.available_isas())
@pytest.mark.parametrize("shape", [(2, 35, 9, 8), (1, 17, 11, 75)])
@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), (2, 2, 0), (3, 1, 1), (3, 3, 1)])
def test_maxpool_float_nchw_equals_torch_with_ties_and_nans(kernel: int, stride: int,
                                                           padding: int, shape: tuple,
                                                           isa: str) -> None:
    """NCHW in, NHWC out; +-0 ties keep torch's first tap and NaNs propagate, bit for bit, on
    every ISA's row and interleave steps (the wide shape reaches their 16-lane bodies)."""
    rng = np.random.default_rng(kernel * 10 + stride)
    y = rng.normal(size=shape).astype(np.float32)
    y[np.abs(y) < 0.4] = 0.0
    y[np.abs(y) > 2.0] = -0.0
    y.reshape(-1)[::53] = np.nan
    expected = F.max_pool2d(torch.from_numpy(y), kernel, stride, padding).permute(0, 2, 3, 1)
    with kernels.use_isa(isa):
        got = kernels.maxpool2d_float_nchw(y, kernel, stride, padding)
    np.testing.assert_array_equal(got.view(np.uint32), expected.numpy().view(np.uint32))


@pytest.mark.parametrize("isa", kernels.available_isas())
@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), (2, 2, 0), (3, 1, 1)])
def test_maxpool_float_lower_channels_take_torchs_min(kernel: int, stride: int, padding: int,
                                                      isa: str) -> None:
    """Channels marked `lower` pool as -max_pool(-x) in torch, bit for bit (+-0 ties, NaNs),
    from NCHW and from NHWC; the others stay max-pools."""
    rng = np.random.default_rng(kernel * 10 + stride + 7)
    y = rng.normal(size=(2, 37, 11, 19)).astype(np.float32)
    y[np.abs(y) < 0.4] = 0.0
    y[np.abs(y) > 2.0] = -0.0
    y.reshape(-1)[::41] = np.nan
    lower = (rng.random(37) < 0.5).astype(np.uint8)
    t = torch.from_numpy(y)
    expected = torch.where(torch.from_numpy(lower.astype(bool)).view(1, -1, 1, 1),
                           -F.max_pool2d(-t, kernel, stride, padding),
                           F.max_pool2d(t, kernel, stride, padding)).permute(0, 2, 3, 1).numpy()
    nhwc = np.ascontiguousarray(y.transpose(0, 2, 3, 1))
    with kernels.use_isa(isa):
        from_nchw = kernels.maxpool2d_float_nchw(y, kernel, stride, padding, lower)
        from_nhwc = kernels.maxpool2d_float(nhwc, kernel, stride, padding, lower)
    np.testing.assert_array_equal(from_nchw.view(np.uint32), expected.view(np.uint32))
    np.testing.assert_array_equal(from_nhwc.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("isa", kernels.available_isas())
def test_layout_transposes_move_every_value(isa: str) -> None:
    """NCHW <-> NHWC by the register transpose: 16-row blocks, tails, single rows and columns,
    empty maps; values moved bit for bit (NaNs and -0 included)."""
    rng = np.random.default_rng(5)
    with kernels.use_isa(isa):
        for shape in [(1, 64, 28, 28), (2, 17, 5, 7), (1, 33, 1, 1), (3, 1, 4, 19), (1, 5, 0, 3)]:
            x = rng.standard_normal(shape).astype(np.float32)
            x.reshape(-1)[::7] = np.float32("nan")
            x.reshape(-1)[3::11] = np.float32(-0.0)
            for got, want in [(kernels.nchw_to_nhwc(x), x.transpose(0, 2, 3, 1)),
                              (kernels.nhwc_to_nchw(x), x.transpose(0, 3, 1, 2))]:
                assert got.flags.c_contiguous and got.shape == want.shape
                np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("shape", [(1, 64, 56, 56), (2, 16, 6, 6), (1, 24, 5, 7), (3, 40, 3, 3)])
def test_torch_float_ops_on_channels_last_equal_nchw(shape: tuple[int, ...]) -> None:
    """The engine keeps float maps channels-last between ops; it relies on torch's BatchNorm and
    avg-pooling giving the NCHW values on them, bit for bit."""
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=g) * 3
    cl = x.contiguous(memory_format=torch.channels_last)
    c = shape[1]
    stats = (torch.randn(c, generator=g), torch.rand(c, generator=g) + 0.01,
             torch.randn(c, generator=g), torch.randn(c, generator=g))
    assert torch.equal(F.batch_norm(cl, *stats, False, 0.0, 1e-5),
                       F.batch_norm(x, *stats, False, 0.0, 1e-5))
    for args in [(2, 2, 0, True, False), (2, 2, 0, False, True), (3, 2, 1, True, False)]:
        assert torch.equal(F.avg_pool2d(cl, *args), F.avg_pool2d(x, *args)), args


def test_linear_float_matches_torch() -> None:
    rng = np.random.default_rng(5)
    x, wt = pm1(rng, (4, 130)), pm1(rng, (7, 130))
    scale = rng.uniform(0.5, 2, size=7).astype(np.float32)
    bias = rng.normal(size=7).astype(np.float32)
    xb = kernels.pack_nhwc(x.reshape(4, 1, 1, 130)).reshape(4, -1)
    wb = kernels.pack_nhwc(wt.reshape(7, 1, 1, 130)).reshape(7, -1)
    got = kernels.linear_float(xb, wb, 130, scale, bias)
    np.testing.assert_allclose(got, (x @ wt.T) * scale + bias, rtol=1e-6, atol=1e-5)


# -- bad input raises, never crashes ------------------------------------------------------------

X = np.zeros((1, 4, 4, 1), np.uint64)
W = np.zeros((2, 3, 3, 1), np.uint64)
TH, DIR = np.zeros(2, np.int32), np.ones(2, np.int8)
ONES2 = np.ones(2, np.float32)


@pytest.mark.parametrize(
    "call,error,message",
    [
        (lambda: kernels.pack_nhwc(np.zeros((1, 2, 2, 3))), TypeError, "float32"),
        (lambda: kernels.pack_nhwc(np.zeros((2, 3), np.float32)), ValueError, "4-D"),
        (lambda: kernels.pack_nchw(np.zeros((1, 3, 4, 4), np.float32)[:, :, ::2]), ValueError,
         "C-contiguous"),
        (lambda: kernels.pack_nhwc([[1.0]]), TypeError, "incompatible function arguments"),
        (lambda: kernels.unpack_nhwc(X, 65), ValueError, "need 2"),
        (lambda: kernels.conv2d_dots(X.astype(np.int64), W, 3), TypeError, "uint64"),
        (lambda: kernels.conv2d_dots(X, np.zeros((2, 3, 3, 2), np.uint64), 3), ValueError,
         "words"),
        (lambda: kernels.conv2d_dots(X, W, 0), ValueError, "channels"),
        (lambda: kernels.conv2d_dots(X, W, 65), ValueError, "need 2"),
        (lambda: kernels.conv2d_dots(np.zeros((1, 2, 2, 1), np.uint64), W, 3), ValueError,
         "larger than"),
        (lambda: kernels.conv2d_dots(X, W, 3, stride=0), ValueError, "stride"),
        (lambda: kernels.conv2d_dots(X, W, 3, padding=-1), ValueError, "padding"),
        (lambda: kernels.conv2d_dots(X, W, 3, pad_value=2), ValueError, "pad_value"),
        (lambda: kernels.conv2d_dots(X, W, 3, threads=0), ValueError, "threads"),
        (lambda: kernels.conv2d_bits(X, W, 3, TH[:1], DIR), ValueError, "threshold"),
        (lambda: kernels.conv2d_bits(X, W, 3, TH, DIR * 0), ValueError, "direction"),
        (lambda: kernels.conv2d_bits(X, W, 3, TH.astype(np.float32), DIR), TypeError, "int32"),
        (lambda: kernels.conv2d_float(X, W, 3, np.ones(3, np.float32), np.ones(2, np.float32)),
         ValueError, "scale"),
        (lambda: kernels.unit_layer(W, 3, ONES2, ONES2, batchnorm=(ONES2, ONES2),
                                     activation=kernels.UnitActivation("relu", ONES2)),
         ValueError, "unknown activation 'relu'; allowed: none, prelu, rprelu, hardtanh"),
        (lambda: kernels.unit_layer(W, 3, ONES2, ONES2, batchnorm=(ONES2, ONES2),
                                     activation=kernels.UnitActivation("hardtanh",
                                                                       bounds=(1.0, -1.0))),
         ValueError, "hardtanh bounds must be ordered"),
        (lambda: kernels.unit_layer(W, 3, ONES2, ONES2, batchnorm=(ONES2, ONES2),
                                     activation=kernels.UnitActivation("rprelu", ONES2)),
         ValueError, "activation rprelu needs gamma"),
        (lambda: kernels.unit_layer(W, 3, ONES2, ONES2, batchnorm=(ONES2, ONES2),
                                     activation=kernels.UnitActivation("prelu", ONES2, ONES2)),
         ValueError, "activation prelu takes no gamma"),
        (lambda: kernels.unit_layer(W, 3, ONES2, ONES2, batchnorm=(ONES2, ONES2),
                                     activation=kernels.UnitActivation("prelu", ONES2[:1])),
         ValueError, "slope"),
        (lambda: kernels.unit_layer(W, 3, ONES2, ONES2, batchnorm=(ONES2, ONES2))(
            X, residual=np.zeros((1, 3, 3, 2), np.float32)),
         ValueError, "residual"),
        (lambda: kernels.unit_layer(W, 3, ONES2, ONES2, batchnorm=(ONES2, ONES2),
                                     sign_shift=ONES2)(X),
         ValueError, "sign_shift is only used with signs=True"),
        (lambda: kernels.maxpool2d_bits(X, 5, 1, 0), ValueError, "larger than"),
        (lambda: kernels.maxpool2d_bits(X, 2, 2, 2), ValueError, "half the kernel"),
        (lambda: kernels.maxpool2d_float(X, 2), TypeError, "float32"),
        (lambda: kernels.maxpool2d_float(np.zeros((1, 4, 4, 3), np.float32), 2,
                                         lower=np.zeros(2, np.uint8)),
         ValueError, "lower has 2 entries, expected C = 3"),
        (lambda: kernels.maxpool2d_float(np.zeros((1, 4, 4, 3), np.float32), 2,
                                         lower=np.zeros(3, np.int8)),
         TypeError, "uint8"),
        (lambda: kernels.linear_float(X, W, 3, TH, TH), ValueError, "2-D"),
        (lambda: kernels.nchw_to_nhwc(np.zeros((2, 3, 4), np.float32)), ValueError, "4-D map"),
        (lambda: kernels.bits_layer(W, 3, TH, DIR)(X, residual=np.zeros((1, 2, 2, 2), np.float32)),
         ValueError, "residual and signs are only used by unit layers"),
        (lambda: kernels.float_layer(W, 3, ONES2, ONES2)(X, signs=True), ValueError,
         "only used by unit layers"),
        (lambda: kernels.dots_layer(W, 3)(X[..., :0]), ValueError, "words per pixel"),
        (lambda: kernels.dots_layer(W, 3)(X, threads=0), ValueError, "threads"),
        (lambda: kernels.nhwc_to_nchw(np.zeros((1, 2, 2, 3))), TypeError, "float32"),
    ],
)
def test_bad_arguments_raise(call, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


def test_torch_tensors_are_accepted() -> None:
    x = torch.randn(1, 5, 3, 3)
    np.testing.assert_array_equal(kernels.pack_nchw(x), kernels.pack_nchw(x.numpy()))


@pytest.mark.parametrize("isa", kernels.available_isas())
@pytest.mark.parametrize("channels", [1, 16, 64, 75, 144])
@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), (2, 2, 0), (3, 1, 1), (1, 1, 0)])
def test_maxpool_float_nhwc_equals_torch_with_ties_and_nans(kernel: int, stride: int,
                                                           padding: int, channels: int,
                                                           isa: str) -> None:
    """NHWC in and out, every ISA's row step: channel counts that fill 64-channel register
    passes, 16-channel ones and a masked tail; +-0 ties keep torch's first tap and the last NaN
    wins, bit for bit (NaNs with distinct payloads)."""
    rng = np.random.default_rng(kernel * 10 + stride + channels)
    y = rng.normal(size=(2, channels, 9, 11)).astype(np.float32)
    y[np.abs(y) < 0.4] = 0.0
    y[np.abs(y) > 2.0] = -0.0
    bits = y.reshape(-1).view(np.uint32)
    bits[::37] = 0x7FC00000 | rng.integers(1, 1 << 22, size=bits[::37].shape, dtype=np.uint32)
    expected = F.max_pool2d(torch.from_numpy(y), kernel, stride, padding).permute(0, 2, 3, 1)
    nhwc = np.ascontiguousarray(y.transpose(0, 2, 3, 1))
    with kernels.use_isa(isa):
        got = kernels.maxpool2d_float(nhwc, kernel, stride, padding)
    np.testing.assert_array_equal(got.view(np.uint32), expected.numpy().view(np.uint32))
