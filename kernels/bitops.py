"""Packed-bit operators: thin wrappers over the C++ kernels that accept int-or-pair geometry.

Encoding (shared with the C++ side): activations NHWC with channels packed into uint64 words,
channel c is bit c % 64 of word c // 64; bit 1 means -1, i.e. NOT (x >= 0), so 0 packs to +1 and
NaN to -1 exactly like the quantizers' sign; bits past the channel count are 0. Binary weights
are (C_out, KH, KW, C_words), packed the same way. The microkernels read them "blocked"
(block_weight: 8 output channels side by side per word); every op blocks on the fly unless it is
handed the blocked copy, which engines make once at load time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np

from ._ext import ext

Pair = int | tuple[int, int]


def _pair(value: Pair, name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    return int(a), int(b)


def words_for(channels: int) -> int:
    """uint64 words needed for `channels` bits."""
    return (int(channels) + 63) // 64


def active_isa() -> str:
    """Name of the microkernel table the kernels dispatch to (e.g. 'popcnt', 'scalar')."""
    return ext.active_isa()


def available_isas() -> list[str]:
    """Microkernel tables compiled in and usable on this CPU, best first."""
    return list(ext.available_isas())


PEAK_ARITHMETIC = ("binary", "float")


def peak_loop(iterations: int, isa: str | None = None, arithmetic: str = "binary") -> int:
    """Runs an ISA's register-only loop (default: the active one's) and returns the MACs it did:
    "binary", the microkernel's XOR/popcount/add recipe (the ceiling of a packed conv without
    memory traffic); "float", independent fp32 multiply-adds at the ISA's full width (the
    ceiling of any float conv or GEMM on this core)."""
    if arithmetic not in PEAK_ARITHMETIC:
        raise ValueError(f"arithmetic must be one of {', '.join(PEAK_ARITHMETIC)}, got "
                         f"{arithmetic!r}")
    return int(ext.peak_loop(iterations, isa, arithmetic == "float"))


def thread_round_trip_ns(trips: int = 20000) -> float:
    """ns a cache line takes from this thread to a new one and back (mean of `trips`): how far
    apart two cores are, which on a VM changes over time and moves every 2-thread timing."""
    return float(ext.thread_round_trip_ns(int(trips)))


def measure_peak_gmacs(isa: str | None = None, iterations: int = 1 << 20,
                       arithmetic: str = "binary") -> float:
    """MAC/s (G) of peak_loop, best of five runs, measured now."""
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        macs = peak_loop(iterations, isa, arithmetic)
        best = max(best, macs / (time.perf_counter() - start) / 1e9)
    return best


@contextmanager
def use_isa(name: str) -> Iterator[None]:
    """Temporarily dispatch to another microkernel table (to cross-check ISA paths)."""
    previous = ext.set_isa(name)
    try:
        yield
    finally:
        ext.set_isa(previous)


def pack_nhwc(x: np.ndarray, threads: int = 1, shift: np.ndarray | None = None) -> np.ndarray:
    """float32 (N, H, W, C) -> uint64 (N, H, W, C_words); a large map on up to `threads`
    threads, with the same result. With `shift` (float32 (C,), an RSign's alpha) the signs of
    x - shift[c], subtracted in float32 as torch does."""
    return ext.pack_nhwc(x, int(threads), shift)


def pack_nchw(x: np.ndarray, shift: np.ndarray | None = None) -> np.ndarray:
    """float32 (N, C, H, W) -> uint64 (N, H, W, C_words), without an NHWC copy of the floats;
    `shift` as in pack_nhwc."""
    return ext.pack_nchw(x, shift)


def unpack_nhwc(bits: np.ndarray, channels: int) -> np.ndarray:
    """uint64 (N, H, W, C_words) -> float32 (N, H, W, C) of +-1."""
    return ext.unpack_nhwc(bits, int(channels))


def pack_weight(weight: np.ndarray) -> np.ndarray:
    """Binary conv weight (C_out, C_in, KH, KW), torch layout -> packed (C_out, KH, KW, C_words)."""
    w = np.ascontiguousarray(np.asarray(weight, dtype=np.float32).transpose(0, 2, 3, 1))
    return ext.pack_nhwc(w)


def block_weight(weight: np.ndarray) -> np.ndarray:
    """Packed (C_out, KH, KW, C_words) or (C_out, C_words) -> blocked (ceil(C_out / 8), K, 8)."""
    return ext.block_weight(weight)


# A binary conv prepared for many inputs (weights blocked and per-channel output parameters
# padded once): layer(x, threads=1, residual=None, signs=False) on packed NHWC x; residual and
# signs only for unit layers.
ConvLayer = ext.ConvLayer


def dots_layer(weight: np.ndarray, channels: int, stride: Pair = 1, padding: Pair = 0,
               pad_value: int = 0, blocked: np.ndarray | None = None) -> ConvLayer:
    """A conv whose output is its exact integer dots, int32 (N, OH, OW, C_out)."""
    return ext.dots_layer(weight, int(channels), *_geometry(stride, padding, pad_value), blocked)


def float_layer(weight: np.ndarray, channels: int, scale: np.ndarray, bias: np.ndarray,
                stride: Pair = 1, padding: Pair = 0, pad_value: int = 0,
                blocked: np.ndarray | None = None) -> ConvLayer:
    """A conv whose output is scale[c] * dot + bias[c], float32 (N, OH, OW, C_out)."""
    return ext.float_layer(weight, int(channels), *_geometry(stride, padding, pad_value), scale,
                           bias, blocked)


def bits_layer(weight: np.ndarray, channels: int, threshold: np.ndarray, direction: np.ndarray,
               stride: Pair = 1, padding: Pair = 0, pad_value: int = 0,
               blocked: np.ndarray | None = None) -> ConvLayer:
    """A conv whose output is packed bits: 1 where direction * dot >= direction * threshold
    (see thresholds.py)."""
    return ext.bits_layer(weight, int(channels), *_geometry(stride, padding, pad_value),
                          threshold, direction, blocked)


class UnitActivation(NamedTuple):
    """The activation closing a fused unit, computed per value as torch computes it:
    "prelu": y > 0 ? y : slope[c] * y; "rprelu" (ReActNet): the same on y - gamma[c], plus
    zeta[c]; "hardtanh": y clamped to `bounds` (NaN stays NaN). Per-channel float32 arrays of
    C_out."""

    kind: str
    slope: np.ndarray | None = None
    gamma: np.ndarray | None = None
    zeta: np.ndarray | None = None
    bounds: tuple[float, float] = (-1.0, 1.0)


def unit_layer(weight: np.ndarray, channels: int, scale: np.ndarray, bias: np.ndarray,
               stride: Pair = 1, padding: Pair = 0, pad_value: int = 0,
               blocked: np.ndarray | None = None, *, batchnorm: tuple[np.ndarray, np.ndarray],
               activation: UnitActivation | None = None,
               sign_shift: np.ndarray | None = None) -> ConvLayer:
    """A residual unit's conv with its tail in the output pass: y = float_layer's output, then
    fma(y, alpha[c], beta[c]) for `batchnorm` = (alpha, beta) (an eval BatchNorm as torch
    computes it, one fused multiply-add), + the call's `residual` (float32 NHWC of the output's
    shape) when given, then `activation` when given. Called with signs=True it also returns the
    next binary layer's input from the same pass: the packed NHWC bits !(y - sign_shift[c] >= 0)
    (its RSign; a plain sign without sign_shift), as that layer's pack computes them. A call,
    layer(x, threads, residual, signs), returns (y, bits or None)."""
    act = activation or UnitActivation("none")
    return ext.unit_layer(weight, int(channels), *_geometry(stride, padding, pad_value), scale,
                          bias, *batchnorm, act.kind, act.gamma, act.slope, act.zeta, act.bounds,
                          sign_shift, blocked)


def conv2d_dots(
    x: np.ndarray,
    weight: np.ndarray,
    channels: int,
    stride: Pair = 1,
    padding: Pair = 0,
    pad_value: int = 0,
    threads: int = 1,
    blocked: np.ndarray | None = None,
) -> np.ndarray:
    """Exact integer dots of a binary conv, int32 (N, OH, OW, C_out) (dots_layer, once)."""
    return dots_layer(weight, channels, stride, padding, pad_value, blocked)(x, int(threads))


def conv2d_float(
    x: np.ndarray,
    weight: np.ndarray,
    channels: int,
    scale: np.ndarray,
    bias: np.ndarray,
    stride: Pair = 1,
    padding: Pair = 0,
    pad_value: int = 0,
    threads: int = 1,
    blocked: np.ndarray | None = None,
) -> np.ndarray:
    """scale[c] * dot + bias[c], float32 (N, OH, OW, C_out) (float_layer, once)."""
    return float_layer(weight, channels, scale, bias, stride, padding, pad_value,
                       blocked)(x, int(threads))


def fma_channels(y: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """fma(y[i, c], alpha[c], beta[c]) on float32 (N, C): conv2d_float's BatchNorm step."""
    return ext.fma_channels(y, alpha, beta)


def conv2d_bits(
    x: np.ndarray,
    weight: np.ndarray,
    channels: int,
    threshold: np.ndarray,
    direction: np.ndarray,
    stride: Pair = 1,
    padding: Pair = 0,
    pad_value: int = 0,
    threads: int = 1,
    blocked: np.ndarray | None = None,
) -> np.ndarray:
    """Packed output bits: 1 where direction * dot >= direction * threshold (bits_layer, once)."""
    return bits_layer(weight, channels, threshold, direction, stride, padding, pad_value,
                      blocked)(x, int(threads))


def maxpool2d_bits(x: np.ndarray, kernel_size: Pair, stride: Pair | None = None,
                   padding: Pair = 0, threads: int = 1) -> np.ndarray:
    """Max-pool on packed bits: the AND of each window (padded taps are skipped). Every pool
    splits a large enough map over `threads` threads, with the same result."""
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None else _pair(stride, "stride")
    return ext.maxpool2d_bits(x, k, s, _pair(padding, "padding"), int(threads))


def maxpool2d_float(x: np.ndarray, kernel_size: Pair, stride: Pair | None = None,
                    padding: Pair = 0, lower: np.ndarray | None = None,
                    threads: int = 1) -> np.ndarray:
    """Max-pool on float32 NHWC (padded taps are skipped); channels where the uint8 mask
    `lower` is set take the minimum instead (-maxpool(-x), sign flips exact for NaN and 0)."""
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None else _pair(stride, "stride")
    return ext.maxpool2d_float(x, k, s, _pair(padding, "padding"), lower, int(threads))


def maxpool2d_float_nchw(x: np.ndarray, kernel_size: Pair, stride: Pair | None = None,
                         padding: Pair = 0, lower: np.ndarray | None = None,
                         threads: int = 1) -> np.ndarray:
    """Max-pool on float32 NCHW, written NHWC (N, OH, OW, C): no transpose of the larger input.
    `lower` and `threads` as in maxpool2d_float."""
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None else _pair(stride, "stride")
    return ext.maxpool2d_float_nchw(x, k, s, _pair(padding, "padding"), lower, int(threads))


def avgpool2d_float(x: np.ndarray, kernel_size: Pair, stride: Pair | None = None,
                    padding: Pair = 0, ceil_mode: bool = False, count_include_pad: bool = True,
                    divisor_override: int | None = None, threads: int = 1,
                    nchw_out: bool = True) -> np.ndarray:
    """torch's AvgPool2d on a float32 NHWC map, summed and divided as its CPU kernel does,
    written as a new NCHW map (the layout torch's conv after it takes), or NHWC with
    nchw_out=False (a fused unit's residual); on up to `threads` threads."""
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None else _pair(stride, "stride")
    return ext.avgpool2d_float(x, k, s, _pair(padding, "padding"), bool(ceil_mode),
                               bool(count_include_pad), divisor_override, int(threads),
                               bool(nchw_out))


def nchw_to_nhwc(x: np.ndarray, threads: int = 1) -> np.ndarray:
    """float32 (N, C, H, W) -> a new C-contiguous (N, H, W, C), the same values moved; a large
    map on up to `threads` threads."""
    n, c, h, w = _map_shape(x)
    return ext.transpose_float(x.reshape(n, c, h * w), int(threads)).reshape(n, h, w, c)


def nhwc_to_nchw(x: np.ndarray, threads: int = 1) -> np.ndarray:
    """float32 (N, H, W, C) -> a new C-contiguous (N, C, H, W), the same values moved; a large
    map on up to `threads` threads."""
    n, h, w, c = _map_shape(x)
    return ext.transpose_float(x.reshape(n, h * w, c), int(threads)).reshape(n, c, h, w)


def batchnorm_float(x: np.ndarray, alpha: np.ndarray, beta: np.ndarray, nchw: bool = False,
                    threads: int = 1) -> np.ndarray:
    """fma(x, alpha[c], beta[c]) on a float32 NHWC map (NCHW with `nchw`), a new NHWC map: the
    eval BatchNorm torch computes with that alpha and beta, on up to `threads` threads."""
    return ext.batchnorm_float(x, alpha, beta, bool(nchw), int(threads))


def normalize_float(x: np.ndarray, mean: np.ndarray, std: np.ndarray,
                    threads: int = 1) -> np.ndarray:
    """(x - mean[c]) / std[c] on a float32 NCHW map, a new NCHW map: torch's input
    normalisation (each operation rounded once), on up to `threads` threads."""
    return ext.normalize_float(x, mean, std, int(threads))


def _map_shape(x: np.ndarray) -> tuple[int, ...]:
    if np.ndim(x) != 4:
        raise ValueError(f"x must be a 4-D map, got shape {np.shape(x)}")
    return tuple(int(s) for s in x.shape)


# A float conv over few input channels (a stem) prepared for many inputs: layer(x, threads=1)
# on float32 NCHW x, written NHWC.
DirectConvLayer = ext.DirectConvLayer


def direct_conv_layer(weight: np.ndarray, bias: np.ndarray, pad_value: np.ndarray,
                      stride: Pair = 1, padding: Pair = 0, winograd: bool | None = None,
                      channels_outer: bool = False) -> DirectConvLayer:
    """float32 weight (C_out, C_in, KH, KW): bias + the conv of x padded with pad_value[c_in]
    (zeros for a plain conv; a folded normalisation's mean), by bnnx's direct kernel or, for a
    stem, Winograd's algorithm with float rounding of its own: F(4x4, 4x4) on a 7x7 stride-2
    conv over 1-4 channels (a quarter of the multiply-adds), F(4x4, 3x3) on a 3x3 stride-1 conv
    over 1-4 (a quarter over 3). winograd None uses it where it pays (over 2-4 input channels),
    True wherever it applies, False never; layer.algorithm says which runs. The direct kernel
    sums each output's taps row by row, column by column, channel by channel (torch's 7x7 stem
    order here), or with channels_outer channel by channel first (its 3x3 stem order)."""
    return ext.direct_conv_layer(weight, bias, pad_value, _pair(stride, "stride"),
                                 _pair(padding, "padding"), winograd, bool(channels_outer))


def linear_float(x: np.ndarray, weight: np.ndarray, channels: int, scale: np.ndarray,
                 bias: np.ndarray, threads: int = 1,
                 blocked: np.ndarray | None = None) -> np.ndarray:
    """Binary linear on packed rows (N, C_words) x (C_out, C_words): scale * dot + bias."""
    return ext.linear_float(x, weight, int(channels), scale, bias, int(threads), blocked)


NARROW_CHUNK = 16  # the weight columns narrow_linear reads together


def narrow_weight(weight: np.ndarray) -> np.ndarray:
    """A float32 (out, K) weight in narrow_linear's layout, made once per weight: chunks of 16
    columns, all outputs' 16 floats of a chunk together, (ceil(K / 16), out, 16), zeros past K
    (one stream to read, where out rows a power-of-two size apart would share cache sets)."""
    out, features = np.shape(weight)
    chunks = -(-features // NARROW_CHUNK)
    padded = np.zeros((out, chunks * NARROW_CHUNK), np.float32)
    padded[:, :features] = weight
    return np.ascontiguousarray(padded.reshape(out, chunks, NARROW_CHUNK).transpose(1, 0, 2))


def narrow_linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
                  alpha: float = 1.0, threads: int = 1) -> np.ndarray:
    """alpha * x @ W.T + bias for float32 rows x (N, K) and a linear layer of few outputs (a
    classifier head: 8192 -> 10), W given as narrow_weight(W): float32 (N, out). Each output
    sums in 16 lanes and several partial sums, multiply-adds fused, so it rounds in its own
    order, not torch's; on `threads` threads only where the work repays a second one."""
    return ext.narrow_linear(x, weight, bias, float(alpha), int(threads))


def _geometry(stride: Pair, padding: Pair, pad_value: float) -> tuple:
    """The (stride, padding, pad_value) arguments every conv entry point takes, checked."""
    return _pair(stride, "stride"), _pair(padding, "padding"), _pad_value(pad_value)


def _pad_value(value: float) -> int:
    if value not in (-1, 0, 1):
        raise ValueError(f"pad_value must be -1, 0 or 1, got {value!r}")
    return int(value)
