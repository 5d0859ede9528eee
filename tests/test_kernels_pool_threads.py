"""The pools split large maps over threads: every thread count gives torch's values, bit for
bit (ties, NaNs and min-pooled channels included), and the engine's pools use the threads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import kernels
from kernels.bitops import pack_nhwc
from kernels.float_ops import MaxPool2dOp

# Over 2^16 values per thread for 2 and 3 threads (the pools' threshold), an odd channel count
# (a partial group of planes) and two images, so the work is cut inside and across images.
SHAPE = (2, 37, 61, 67)


def hostile_map(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = rng.normal(size=SHAPE).astype(np.float32)
    y[np.abs(y) < 0.4] = 0.0
    y[np.abs(y) > 2.0] = -0.0
    y.reshape(-1)[::41] = np.nan
    return y


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), (2, 2, 0)])
def test_threaded_float_pools_equal_torch(threads: int, kernel: int, stride: int,
                                          padding: int) -> None:
    y = hostile_map(kernel + threads)
    lower = (np.arange(SHAPE[1]) % 3 == 0).astype(np.uint8)
    t = torch.from_numpy(y)
    expected = torch.where(torch.from_numpy(lower.astype(bool)).view(1, -1, 1, 1),
                           -F.max_pool2d(-t, kernel, stride, padding),
                           F.max_pool2d(t, kernel, stride, padding)).permute(0, 2, 3, 1).numpy()
    nhwc = np.ascontiguousarray(y.transpose(0, 2, 3, 1))
    from_nchw = kernels.maxpool2d_float_nchw(y, kernel, stride, padding, lower, threads)
    from_nhwc = kernels.maxpool2d_float(nhwc, kernel, stride, padding, lower, threads)
    np.testing.assert_array_equal(from_nchw.view(np.uint32), expected.view(np.uint32))
    np.testing.assert_array_equal(from_nhwc.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("threads", [2, 3])
def test_threaded_bit_pool_equals_one_thread(threads: int) -> None:
    bits = pack_nhwc(np.ascontiguousarray(hostile_map(5).transpose(0, 2, 3, 1)))
    big = np.ascontiguousarray(np.tile(bits, (1, 1, 1, 40)))  # enough words to split
    np.testing.assert_array_equal(kernels.maxpool2d_bits(big, 3, 2, 1, threads),
                                  kernels.maxpool2d_bits(big, 3, 2, 1))


def test_pool_op_runs_on_its_threads(monkeypatch) -> None:
    calls: list[int] = []
    pool = kernels.bitops.maxpool2d_float_nchw
    monkeypatch.setattr(kernels.bitops, "maxpool2d_float_nchw",
                        lambda *a: calls.append(a[-1]) or pool(*a))
    op = MaxPool2dOp.from_module("pool", torch.nn.MaxPool2d(3, 2, 1), False)
    x = torch.from_numpy(hostile_map(6))
    np.testing.assert_array_equal(op.run(x, 2).numpy().view(np.uint32),
                                  F.max_pool2d(x, 3, 2, 1).numpy().view(np.uint32))
    assert calls == [2]


def test_bad_thread_count_is_refused() -> None:
    with pytest.raises(ValueError, match="threads must be >= 1"):
        kernels.maxpool2d_float_nchw(hostile_map(7), 3, 2, 1, None, 0)
