"""Every ISA path against exact torch references on random layers, bit for bit.

Random geometry (channels off multiples of 8/64, odd sizes, kernel 1/3/5, stride 1/2, padding up
to past kernel // 2, pad_value 0/+-1, batch, threads) for each output form: int dots, packed
threshold bits, float scale * dot + bias (float32 multiply then add, so equal bits too) and that
followed by a residual unit's tail: a fused multiply-add BatchNorm, a residual add and a PReLU,
RPReLU or hardtanh, against torch's own ops, and the packed signs of that tail's output.
BNNX_FUZZ_CASES sets the number of cases (default 240; `make fuzz` runs 10,000). Paths this CPU
lacks are not listed by available_isas, so they are skipped rather than failed.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import kernels
from kernels import bitops
from kernels.thresholds import apply_thresholds

CASES = int(os.environ.get("BNNX_FUZZ_CASES", "240"))
CHUNKS = 12
ISAS = kernels.available_isas()


def random_conv(rng: np.random.Generator) -> dict:
    k = int(rng.choice([1, 3, 5]))
    stride = int(rng.choice([1, 2]))
    padding = int(rng.integers(0, k // 2 + 2))
    h, w = (int(v) for v in rng.integers(max(1, k - 2 * padding), 13, size=2))
    c_in = int(rng.choice([rng.integers(1, 80), rng.integers(60, 200)]))
    return {"n": int(rng.integers(1, 3)), "c_in": c_in, "c_out": int(rng.integers(1, 90)),
            "k": k, "stride": stride, "padding": padding, "pad_value": int(rng.integers(-1, 2)),
            "h": h, "w": w, "threads": int(rng.choice([1, 1, 2, 3]))}


def pm1(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


def unit_activation(rng: np.random.Generator, c_out: int) -> kernels.UnitActivation:
    """A random PReLU (one shared or per-channel slope), RPReLU (slopes of both signs and 0) or
    hardtanh (torch's default bounds or ReLU6's, which clamps at 0)."""
    def vector() -> np.ndarray:
        v = rng.normal(size=c_out).astype(np.float32)
        v[::5] = 0.0
        return v

    pick = rng.random()
    if pick < 0.2:
        return kernels.UnitActivation("hardtanh", bounds=(-1.0, 1.0) if pick < 0.1 else (0.0, 6.0))
    if pick < 0.6:
        slope = vector() if rng.random() < 0.5 else np.full(c_out, rng.normal(), np.float32)
        return kernels.UnitActivation("prelu", slope)
    return kernels.UnitActivation("rprelu", vector(), vector(), vector())


def torch_activation(act: kernels.UnitActivation, y: torch.Tensor) -> torch.Tensor:
    """What spaces.blocks.RPReLU / nn.PReLU / nn.Hardtanh compute on an NCHW map."""
    def view(v: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(v).view(1, -1, 1, 1)

    if act.kind == "hardtanh":
        return F.hardtanh(y, *act.bounds)
    if act.kind == "prelu":
        return F.prelu(y, torch.from_numpy(act.slope))
    return F.prelu(y - view(act.gamma), torch.from_numpy(act.slope)) + view(act.zeta)


GEOMETRY_FIELDS = ("c_in", "c_out", "k", "stride", "padding", "pad_value", "h", "w", "threads")


def check_conv_geometry(seed: int, geometry: tuple[int, ...], n: int) -> None:
    """check_conv on a batch of n maps of a (GEOMETRY_FIELDS) tuple."""
    check_conv(seed, {"n": n, **dict(zip(GEOMETRY_FIELDS, geometry, strict=True))})


def check_conv(seed: int, geometry: dict | None = None) -> None:
    rng = np.random.default_rng(seed)
    c = random_conv(rng) if geometry is None else geometry
    x, wt = pm1(rng, (c["n"], c["c_in"], c["h"], c["w"])), pm1(rng, (c["c_out"], c["c_in"],
                                                                    c["k"], c["k"]))
    xt = F.pad(torch.from_numpy(x), (c["padding"],) * 4, value=float(c["pad_value"]))
    dots = F.conv2d(xt, torch.from_numpy(wt), stride=c["stride"]).permute(0, 2, 3, 1).numpy()
    dots = dots.astype(np.int32)
    fan_in = c["c_in"] * c["k"] ** 2
    threshold = rng.integers(-fan_in - 1, fan_in + 2, size=c["c_out"]).astype(np.int32)
    direction = rng.choice(np.array([-1, 1], np.int8), size=c["c_out"])
    scale = rng.normal(size=c["c_out"]).astype(np.float32)
    bias = rng.normal(size=c["c_out"]).astype(np.float32)
    expected_bits = apply_thresholds(dots, threshold, direction)
    expected_float = scale * dots.astype(np.float32) + bias
    # BatchNorm and residual add after the float output: a scalar std::fma as the reference.
    alpha = rng.normal(size=c["c_out"]).astype(np.float32)
    beta = rng.normal(size=c["c_out"]).astype(np.float32)
    residual = rng.normal(size=expected_float.shape).astype(np.float32)
    flat = np.ascontiguousarray(expected_float).reshape(-1, c["c_out"])
    expected_bn = bitops.fma_channels(flat, alpha, beta).reshape(expected_float.shape)
    # Then the unit's activation, torch's own RPReLU / PReLU on the NCHW map, with or without
    # the residual add.
    activation = unit_activation(rng, c["c_out"])
    with_residual = bool(rng.random() < 0.5)
    expected_unit = torch.from_numpy(expected_bn + residual if with_residual else expected_bn)
    expected_unit = torch_activation(activation, expected_unit.permute(0, 3, 1, 2))
    expected_unit = expected_unit.permute(0, 2, 3, 1).numpy()
    # The next layer's input from the same pass: the sign of the unit's output minus an RSign
    # shift (or a plain sign), packed as kernels.pack_nhwc packs it.
    sign_shift = rng.normal(size=c["c_out"]).astype(np.float32) if rng.random() < 0.5 else None
    expected_signs = kernels.pack_nhwc(np.ascontiguousarray(
        expected_unit if sign_shift is None else expected_unit - sign_shift))

    bits_in, wp = kernels.pack_nchw(x), kernels.pack_weight(wt)
    blocked = bitops.block_weight(wp) if rng.random() < 0.5 else None
    geo = (c["stride"], c["padding"], c["pad_value"], c["threads"], blocked)
    for isa in ISAS:
        with kernels.use_isa(isa):
            where = f"seed {seed}, {isa}, {c}"
            got = kernels.conv2d_dots(bits_in, wp, c["c_in"], *geo)
            np.testing.assert_array_equal(got, dots, err_msg=where)
            got = kernels.conv2d_bits(bits_in, wp, c["c_in"], threshold, direction, *geo)
            np.testing.assert_array_equal(kernels.unpack_nhwc(got, c["c_out"]) < 0,
                                          expected_bits, err_msg=where)
            tail = c["c_out"] % 64
            assert tail == 0 or not (got[..., -1] >> np.uint64(tail)).any(), where
            got = kernels.conv2d_float(bits_in, wp, c["c_in"], scale, bias, *geo)
            np.testing.assert_array_equal(got, expected_float, err_msg=where)
            unit = (wp, c["c_in"], scale, bias, c["stride"], c["padding"], c["pad_value"],
                    blocked)
            got, signs = kernels.unit_layer(*unit, batchnorm=(alpha, beta))(
                bits_in, c["threads"], residual)
            assert signs is None, where
            np.testing.assert_array_equal(got, expected_bn + residual, err_msg=where)
            got, signs = kernels.unit_layer(*unit, batchnorm=(alpha, beta), activation=activation,
                                            sign_shift=sign_shift)(
                bits_in, c["threads"], residual if with_residual else None, True)
            np.testing.assert_array_equal(got.view(np.int32), expected_unit.view(np.int32),
                                          err_msg=where)
            np.testing.assert_array_equal(signs, expected_signs, err_msg=where)


def check_linear(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, c_in, c_out = int(rng.integers(1, 11)), int(rng.integers(1, 300)), int(rng.integers(1, 70))
    x, wt = pm1(rng, (n, c_in)), pm1(rng, (c_out, c_in))
    scale = rng.normal(size=c_out).astype(np.float32)
    bias = rng.normal(size=c_out).astype(np.float32)
    expected = scale * (x @ wt.T) + bias
    xb = kernels.pack_nhwc(x.reshape(n, 1, 1, c_in)).reshape(n, -1)
    wb = kernels.pack_nhwc(wt.reshape(c_out, 1, 1, c_in)).reshape(c_out, -1)
    threads = int(rng.choice([1, 2]))
    for isa in ISAS:
        with kernels.use_isa(isa):
            got = kernels.linear_float(xb, wb, c_in, scale, bias, threads)
            np.testing.assert_array_equal(got, expected, err_msg=f"seed {seed}, {isa}")


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_convs_every_isa(chunk: int) -> None:
    for seed in range(chunk, CASES, CHUNKS):
        check_conv(seed)


# Whole words per tap (64 and 128 channels: the shortest runs), on maps big enough for several
# full tiles along the rows and down the border columns.
@pytest.mark.parametrize("c_in", [64, 128])
@pytest.mark.parametrize(("k", "stride", "padding"),
                         [(1, 1, 0), (1, 2, 0), (3, 1, 0), (3, 1, 1), (3, 2, 1), (5, 1, 2),
                          (5, 2, 3)])
def test_word_aligned_convs_every_isa(c_in: int, k: int, stride: int, padding: int) -> None:
    for i, (pad_value, c_out, threads) in enumerate([(0, c_in, 1), (1, c_in - 27, 2),
                                                     (-1, c_in + 8, 1)]):
        check_conv(2 * 10**6 + i, {"n": 1 + i % 2, "c_in": c_in, "c_out": c_out, "k": k,
                                   "stride": stride, "padding": padding, "pad_value": pad_value,
                                   "h": 17, "w": 15, "threads": threads})


@pytest.mark.parametrize("c_out", [32, 64, 96, 160])
def test_half_width_residual_adds_to_both_halves_every_isa(c_out: int) -> None:
    """A residual of C_out / 2 channels is ReActNet's [y, y]: bit for bit what the concatenated
    map gives, floats and signs, on every ISA path, thread count and tile shape (3x3 rows and
    border columns, 1x1 pointwise); other widths are refused by name."""
    rng = np.random.default_rng(c_out)
    c_in, half = 40, c_out // 2
    x = kernels.pack_nchw(pm1(rng, (2, c_in, 9, 11)))
    for k in (3, 1):
        wp = kernels.pack_weight(pm1(rng, (c_out, c_in, k, k)))
        scale, bias, alpha, beta, shift = (rng.normal(size=c_out).astype(np.float32)
                                           for _ in range(5))
        act = unit_activation(rng, c_out)
        layer = kernels.unit_layer(wp, c_in, scale, bias, 1, k // 2, 0, batchnorm=(alpha, beta),
                                   activation=act, sign_shift=shift)
        y = rng.normal(size=(2, 9, 11, half)).astype(np.float32)
        both = np.ascontiguousarray(np.concatenate([y, y], axis=3))
        for isa in ISAS:
            with kernels.use_isa(isa):
                for threads in (1, 2):
                    where = f"{isa}, k {k}, {threads} threads"
                    got, signs = layer(x, threads, y, True)
                    want, want_signs = layer(x, threads, both, True)
                    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32),
                                                  err_msg=where)
                    np.testing.assert_array_equal(signs, want_signs, err_msg=where)
    with pytest.raises(ValueError, match=r"residual has shape .* C_out / 2"):
        layer(x, 1, np.zeros((2, 9, 11, half + 1), np.float32), True)


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_linears_every_isa(chunk: int) -> None:
    for seed in range(chunk, CASES // 4, CHUNKS):
        check_linear(10**6 + seed)


@pytest.mark.parametrize("channels", [1, 15, 16, 17, 63, 64, 65, 130, 200])
def test_packing_every_isa(channels: int) -> None:
    rng = np.random.default_rng(channels)
    x = rng.normal(size=(2, channels, 9, 13)).astype(np.float32)  # 117 pixels: 64 + 3 * 16 + 5
    specials = np.array([np.nan, -0.0, 0.0, np.inf, -np.inf], np.float32)
    x.flat[rng.integers(0, x.size, 40)] = rng.choice(specials, 40)
    expected = np.where(x >= 0, 1.0, -1.0).transpose(0, 2, 3, 1)  # NaN -> -1, -0 -> +1
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for isa in ISAS:
        with kernels.use_isa(isa):
            for bits in (kernels.pack_nchw(x), kernels.pack_nhwc(nhwc)):
                np.testing.assert_array_equal(kernels.unpack_nhwc(bits, channels), expected,
                                              err_msg=isa)
                tail = channels % 64
                assert tail == 0 or not (bits[..., -1] >> np.uint64(tail)).any(), isa


@pytest.mark.parametrize("channels", [1, 17, 63, 64, 65, 128, 130])
def test_packing_with_shift_and_threads_every_isa(channels: int) -> None:
    """An RSign's pack: the signs of x - shift[c], subtracted in float32 as torch does (values
    equal to their shift give +1, NaN -1), from NCHW and NHWC maps; NHWC on 1-3 threads over a
    map of several chunks, whole-word pixels (64 channels) included, gives the same bits."""
    rng = np.random.default_rng(1000 + channels)
    x = rng.normal(size=(2, channels, 37, 29)).astype(np.float32)
    shift = rng.normal(size=channels).astype(np.float32)
    x.flat[rng.integers(0, x.size, 300)] = np.repeat(shift, 1 + 300 // channels)[:300]
    specials = np.array([np.nan, -0.0, 0.0, np.inf, -np.inf], np.float32)
    x.flat[rng.integers(0, x.size, 40)] = rng.choice(specials, 40)
    shifted = torch.from_numpy(x) - torch.from_numpy(shift).view(1, -1, 1, 1)
    expected = torch.where(shifted >= 0, 1.0, -1.0).permute(0, 2, 3, 1).numpy()
    assert (expected > 0).any() and (expected < 0).any()
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    plain = np.where(nhwc >= 0, 1.0, -1.0)
    for isa in ISAS:
        with kernels.use_isa(isa):
            got = kernels.pack_nchw(x, shift)
            np.testing.assert_array_equal(kernels.unpack_nhwc(got, channels), expected,
                                          err_msg=isa)
            for threads in (1, 2, 3):
                where = f"{isa}, {threads} threads"
                np.testing.assert_array_equal(kernels.pack_nhwc(nhwc, threads, shift), got,
                                              err_msg=where)
                np.testing.assert_array_equal(
                    kernels.unpack_nhwc(kernels.pack_nhwc(nhwc, threads), channels), plain,
                    err_msg=where)


def test_blocked_weight_layout_and_validation() -> None:
    rng = np.random.default_rng(0)
    wp = kernels.pack_weight(pm1(rng, (11, 70, 3, 3)))  # (11, 3, 3, 2)
    blocked = bitops.block_weight(wp)
    assert blocked.shape == (2, 18, 8)
    np.testing.assert_array_equal(blocked[1, :, 2], wp[10].ravel())
    assert not blocked[1, :, 3:].any()  # channels past C_out are zero words
    x = kernels.pack_nchw(pm1(rng, (1, 70, 5, 5)))
    with pytest.raises(ValueError, match="blocked has shape"):
        kernels.conv2d_dots(x, wp, 70, blocked=np.ascontiguousarray(blocked[:, :9]))


def test_engine_reports_its_path_and_a_peak() -> None:
    if not os.environ.get("BNNX_ISA"):
        assert kernels.active_isa() == ISAS[0]  # the best path is the default
    for isa in ISAS:
        for arithmetic in bitops.PEAK_ARITHMETIC:
            assert bitops.measure_peak_gmacs(isa, 1000, arithmetic) > 0
            assert (bitops.peak_loop(2000, isa, arithmetic)
                    == 2 * bitops.peak_loop(1000, isa, arithmetic) > 0)
    with pytest.raises(ValueError, match="iterations must be >= 1"):
        bitops.peak_loop(0)
    with pytest.raises(ValueError, match="arithmetic must be one of binary, float"):
        bitops.peak_loop(10, arithmetic="int8")
    with pytest.raises(ValueError, match="unknown or unsupported ISA"):
        bitops.measure_peak_gmacs("avx9000")


def test_thread_round_trip_is_a_positive_time() -> None:
    """The bench's vCPU probe: a cache line to another thread and back takes some nanoseconds
    (tens to hundreds on real cores; a time slice where the two threads share one core, as on a
    busy machine, which its 50 ms budget bounds)."""
    assert 0 < bitops.thread_round_trip_ns(2000) < 1e8
    with pytest.raises(ValueError, match="trips must be >= 2"):
        bitops.thread_round_trip_ns(1)
