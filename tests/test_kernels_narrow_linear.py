"""The narrow kernel (bitops.narrow_linear: a linear layer of few outputs over long rows, the
fast path's classifier head) against float64 numpy, within float32 rounding of its own order,
and MapLinearOp's use of it on every input a head receives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kernels import bitops
from kernels.float_ops import MapLinearOp
from kernels.graph import Bits, Signed, as_float

# (rows, features, outputs): features off and on multiples of 16 (the kernel's chunk), every
# output count a pass takes, and 40000 x 16 on 1 row, enough work for a second thread (which
# then takes half the outputs).
SHAPES = [(1, 8192, 10), (1, 8190, 10), (3, 17, 1), (2, 1, 5), (1, 15, 16), (4, 100, 7),
          (1, 40000, 16), (5, 300, 3)] + [(2, 33 + 7 * m, m) for m in range(1, 17)]


def within_rounding(got: np.ndarray, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                    alpha: float) -> None:
    """got equals alpha * x @ weight.T + bias in float64 within float32 rounding: 1e-5 of the
    sum of the terms' magnitudes (dropping one of 8192 terms would miss by 1e-4 of it)."""
    want = alpha * (x.astype(np.float64) @ weight.T.astype(np.float64))
    scale = abs(alpha) * (np.abs(x).astype(np.float64) @ np.abs(weight).T.astype(np.float64))
    if bias is not None:
        want += bias
        scale += np.abs(bias)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.all(np.abs(got - want) <= 1e-5 * scale + 1e-30), np.abs(got - want).max()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("rows, features, outputs", SHAPES)
def test_narrow_linear_matches_float64(rows: int, features: int, outputs: int,
                                       threads: int) -> None:
    rng = np.random.default_rng(rows * 100003 + features * 17 + outputs)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    weight = rng.normal(size=(outputs, features)).astype(np.float32)
    bias = rng.normal(size=outputs).astype(np.float32)
    chunked = bitops.narrow_weight(weight)
    assert chunked.shape == (-(-features // 16), outputs, 16)
    for b, alpha in ((bias, 1.0), (None, 0.25)):
        got = bitops.narrow_linear(x, chunked, b, alpha, threads)
        within_rounding(got, x, weight, b, alpha)


def test_narrow_linear_rejects_a_weight_of_other_columns() -> None:
    x = np.zeros((1, 40), np.float32)
    with pytest.raises(ValueError, match=r"expected \(3, out, 16\)"):
        bitops.narrow_linear(x, bitops.narrow_weight(np.zeros((4, 32), np.float32)))
    with pytest.raises(ValueError, match="bias has 3 entries"):
        bitops.narrow_linear(x, bitops.narrow_weight(np.zeros((4, 40), np.float32)),
                             np.zeros(3, np.float32))


@pytest.mark.parametrize("global_pool", [True, False], ids=["avgpool", "flatten"])
def test_map_linear_head_reads_signed_maps_and_rows(global_pool: bool) -> None:
    """A narrow head gives the same logits from a Signed map (its NHWC array, as a fused unit
    hands it over), from that map's NCHW view and, flattened, from (N, features) rows."""
    c, h, w = 24, 3, 5
    rng = np.random.default_rng(5)
    features = c if global_pool else c * h * w
    head = MapLinearOp("head", {"bias": True, "global_pool": global_pool},
                       {"weight": rng.normal(size=(10, features)).astype(np.float32),
                        "bias": rng.normal(size=10).astype(np.float32)})
    nhwc = rng.normal(size=(2, h, w, c)).astype(np.float32)
    signed = Signed(nhwc, Bits(bitops.pack_nhwc(nhwc), c))
    view = torch.from_numpy(nhwc).permute(0, 3, 1, 2)
    got = as_float(head.run(signed, 1))
    np.testing.assert_array_equal(got.numpy(), as_float(head.run(view, 1)).numpy())
    pooled = view.mean((2, 3)) if global_pool else view.reshape(2, -1)
    want = torch.nn.functional.linear(pooled.double(), head.weight.double(), head.bias.double())
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    if not global_pool:  # rows in the flatten's (NCHW) order, read with the plain weight
        torch.testing.assert_close(as_float(head.run(view.reshape(2, -1), 1)).double(), want,
                                   rtol=1e-5, atol=1e-5)
