"""maxpool2d_bits on every kind of geometry its kernel tells apart (word counts compiled in or
not, 2- and 3-wide windows side by side or overlapping, other widths, padded edges, windows of
1, 2 or more rows, 1 and 2 threads) against the AND of each window's taps in numpy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import kernels


def and_pool(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
             padding: tuple[int, int]) -> np.ndarray:
    """The AND of each window's words, padded taps all ones (skipped)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, h, w, c = x.shape
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    padded = np.full((n, h + 2 * ph, w + 2 * pw, c), ~np.uint64(0))
    padded[:, ph:ph + h, pw:pw + w] = x
    out = np.full((n, oh, ow, c), ~np.uint64(0))
    for i, j in itertools.product(range(kh), range(kw)):
        out &= padded[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
    return out


GEOMETRIES = [  # (kernel, stride, padding)
    ((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((3, 3), (3, 3), (1, 1)),
    ((2, 2), (1, 1), (1, 1)), ((3, 3), (1, 1), (0, 0)), ((2, 3), (2, 3), (1, 0)),
    ((3, 2), (1, 2), (0, 1)), ((4, 4), (4, 4), (2, 2)), ((5, 4), (2, 3), (2, 1)),
    ((1, 1), (1, 1), (0, 0)), ((1, 3), (2, 1), (0, 1)),
]


@pytest.mark.parametrize("words", [1, 2, 3, 4, 8, 9])
@pytest.mark.parametrize("kernel, stride, padding", GEOMETRIES)
def test_bit_pool_is_the_and_of_each_window(words: int, kernel: tuple, stride: tuple,
                                            padding: tuple) -> None:
    rng = np.random.default_rng(words * 1000 + kernel[0] * 100 + kernel[1] * 10 + stride[1])
    for h, w in ((7, 9), (kernel[0], kernel[1] + 1), (12, 5)):
        # Dense bits, so each AND of 4-25 taps keeps some ones to compare.
        x = rng.integers(0, 2**64, size=(2, h, w, words), dtype=np.uint64)
        x |= rng.integers(0, 2**64, size=x.shape, dtype=np.uint64)
        np.testing.assert_array_equal(kernels.maxpool2d_bits(x, kernel, stride, padding),
                                      and_pool(x, kernel, stride, padding))


@pytest.mark.parametrize("kernel, stride, padding", [((2, 2), (2, 2), (0, 0)),
                                                     ((3, 3), (2, 2), (1, 1))])
def test_bit_pool_on_two_threads(kernel: tuple, stride: tuple, padding: tuple) -> None:
    """A map large enough for the pool to split it over 2 threads (2^16 words each), cut
    inside and across its 2 images."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2**64, size=(2, 128, 130, 4), dtype=np.uint64)
    x |= rng.integers(0, 2**64, size=x.shape, dtype=np.uint64)
    np.testing.assert_array_equal(kernels.maxpool2d_bits(x, kernel, stride, padding, 2),
                                  and_pool(x, kernel, stride, padding))


@pytest.mark.parametrize("channels", [64, 72, 130])
@pytest.mark.parametrize("kernel, stride, padding", GEOMETRIES[:4])
def test_a_layer_pools_its_output_as_the_pool_does(channels: int, kernel: tuple, stride: tuple,
                                                   padding: tuple) -> None:
    """layer(x, pool=...) of a bits or float layer is the max-pool of layer(x), on 1 and 2
    threads; dots and unit layers refuse a pool."""
    rng = np.random.default_rng(channels)
    w = np.where(rng.standard_normal((channels, 40, 3, 3)) > 0, 1.0, -1.0).astype(np.float32)
    packed = kernels.bitops.pack_weight(w)
    x = kernels.bitops.pack_nhwc(rng.standard_normal((2, 9, 11, 40)).astype(np.float32))
    bits = kernels.bitops.bits_layer(packed, 40, rng.integers(-9, 9, channels).astype(np.int32),
                                     np.where(rng.random(channels) > 0.3, 1, -1).astype(np.int8),
                                     1, 1)
    floats = kernels.bitops.float_layer(packed, 40, rng.standard_normal(channels).astype(
        np.float32), rng.standard_normal(channels).astype(np.float32), 1, 1)
    pool = (kernel, stride, padding)
    for threads in (1, 2):
        np.testing.assert_array_equal(bits(x, threads, pool=pool),
                                      kernels.bitops.maxpool2d_bits(bits(x), *pool))
        np.testing.assert_array_equal(floats(x, threads, pool=pool),
                                      kernels.bitops.maxpool2d_float(floats(x), *pool))
    with pytest.raises(ValueError, match="only for bits and float layers"):
        kernels.bitops.dots_layer(packed, 40, 1, 1)(x, pool=pool)
