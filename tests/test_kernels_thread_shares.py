"""parallel_for gives each thread a contiguous share of the items and lets finished threads steal
from the others' ends (kernels/csrc/parallel.cpp): every split, on either thread team, must cover
each item, so every thread count gives the 1-thread result bit for bit. Cases span fewer items
than threads, one chunk per item, and uneven shares; thread counts go up and then down so the own
pool also runs with more workers than shares."""

from __future__ import annotations

import pytest
from thread_pools import POOLS, run_on_pool

SCRIPT = """
import numpy as np, kernels
rng = np.random.default_rng(3)
def pm1(shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)
for n, c_in, c_out, h, w in [(1, 70, 40, 1, 1), (1, 64, 16, 2, 3), (2, 70, 40, 13, 11),
                             (3, 33, 24, 17, 5), (1, 128, 64, 41, 9)]:
    x, wt = kernels.pack_nchw(pm1((n, c_in, h, w))), kernels.pack_weight(pm1((c_out, c_in, 3, 3)))
    one = kernels.conv2d_dots(x, wt, c_in, 1, 1, 0, threads=1)
    y = rng.normal(size=(n, 5, 4 * h + 3, w + 6)).astype(np.float32)
    pooled = kernels.maxpool2d_float_nchw(y, 3, 2, 1, None, 1)
    for threads in (2, 3, 5, 4, 2):
        got = kernels.conv2d_dots(x, wt, c_in, 1, 1, 0, threads=threads)
        assert np.array_equal(got, one), (n, c_in, c_out, h, w, threads)
        got = kernels.maxpool2d_float_nchw(y, 3, 2, 1, None, threads)
        assert np.array_equal(got.view(np.uint32), pooled.view(np.uint32)), (n, h, w, threads)
"""


@pytest.mark.parametrize("pool", POOLS)
def test_every_split_covers_every_item(pool: str) -> None:
    run_on_pool(SCRIPT, pool)
