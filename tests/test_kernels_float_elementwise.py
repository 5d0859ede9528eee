"""bnnx's threaded float kernels on the exact path (eval BatchNorm, input normalisation, the
average pool written NCHW, the threaded NCHW <-> NHWC moves) give torch's bits: on many shapes
and values, NaN, infinities, signed zeros and subnormals included, on 1 and 2 threads."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from test_kernels_families import family_model
from torch import nn

import kernels
from kernels import bitops
from kernels.block_ops import BiRealBlockOp
from kernels.float_ops import DIRECT_CONV_ISAS, AvgPool2dOp, BatchNormOp, NormalizeOp
from kernels.graph import MODULE_OPS

MAPS = [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7), (13, 9, 7), (3, 5, 1),
        (20, 12, 10)]
IDS = ["x".join(map(str, s)) for s in MAPS]


def spread(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Values over many binades with NaN, +-inf, -0 and subnormals sprinkled in."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * torch.pow(
        10.0, torch.randint(-3, 4, shape, generator=g).float())
    flat = x.view(-1)
    for step, value in ((97, -0.0), (101, float("inf")), (103, float("nan")),
                        (107, float("-inf")), (109, 1e-40), (113, -1e-42), (127, 0.0)):
        flat[::step] = value
    return x


def same_bits(got: torch.Tensor, want: torch.Tensor) -> bool:
    return got.shape == want.shape and torch.equal(got.contiguous().view(torch.int32),
                                                   want.contiguous().view(torch.int32))


def same_values(got: torch.Tensor, want: torch.Tensor) -> bool:
    """Bit for bit except that any NaN matches any NaN: which NaN a sum of a NaN and an
    inf - inf gives follows the operand order the compiler picked, for torch's kernel too."""
    if got.shape != want.shape or not torch.equal(torch.isnan(got), torch.isnan(want)):
        return False
    keep = ~torch.isnan(want)
    return torch.equal(got[keep].view(torch.int32), want[keep].view(torch.int32))


def compiled(module: nn.Module):
    return MODULE_OPS[type(module).__name__].from_module("op", module, False)


def batchnorm(c: int, seed: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g) * 3)
        bn.running_var.copy_(torch.rand(c, generator=g) * 4 + 1e-3)
        bn.weight.copy_(torch.randn(c, generator=g))
        bn.bias.copy_(torch.randn(c, generator=g))
    return bn


def fma_torch() -> bool:
    """torch's CPU kernels here are built with FMA (its BatchNorm's multiply-add is fused)."""
    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


@pytest.mark.parametrize("shape", MAPS, ids=IDS)
def test_batchnorm_kernel_gives_torchs_bits_in_both_layouts(shape) -> None:
    bn = batchnorm(shape[0], seed=shape[0])
    op = compiled(bn)
    assert isinstance(op, BatchNormOp)
    x = spread((2, *shape), seed=shape[1])
    with torch.inference_mode():
        want = bn(x)
    for threads in (1, 2):
        for layout in (torch.contiguous_format, torch.channels_last):
            got = op.run(x.contiguous(memory_format=layout), threads)
            assert got.permute(0, 2, 3, 1).is_contiguous() or op.kernel_terms is None
            assert same_bits(got, want), (threads, layout)


def test_batchnorm_kernel_runs_where_torch_fuses_its_multiply_add() -> None:
    if not fma_torch():
        pytest.skip("torch's CPU kernels here are built without FMA")
    assert compiled(batchnorm(64, seed=1)).kernel_terms is not None


def test_batchnorm_falls_back_to_torch_when_the_probe_disagrees(monkeypatch) -> None:
    """Terms that do not reproduce torch's bits on the probe leave the op to torch."""
    bn = batchnorm(16, seed=2)
    op = compiled(bn)
    alpha, beta = op.linear_terms()
    monkeypatch.setattr(BatchNormOp, "linear_terms",
                        lambda self: (np.nextafter(alpha, np.float32(np.inf)), beta))
    assert op.kernel_terms is None
    x = spread((1, 16, 9, 9), seed=2)
    with torch.inference_mode():
        assert same_bits(op.run(x, 2), bn(x))


class Normalize(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "one-value"])
@pytest.mark.parametrize("shape", [(3, 224, 224), (3, 17, 5), (1, 28, 28)],
                         ids=["3x224x224", "3x17x5", "1x28x28"])
def test_normalize_kernel_gives_torchs_bits(shape, per_channel, monkeypatch) -> None:
    c = shape[0] if per_channel else 1
    module = Normalize(torch.rand(c, 1, 1) - 0.2, torch.rand(c, 1, 1) * 0.5 + 0.1)
    op = NormalizeOp.from_module("op", module, False)
    assert op.kernel_channels is not None
    calls = []
    kernel = bitops.normalize_float
    monkeypatch.setattr(bitops, "normalize_float", lambda *a: calls.append(1) or kernel(*a))
    x = spread((2, *shape), seed=c)
    for threads in (1, 2):
        assert same_bits(op.run(x, threads), module(x)), threads
    assert len(calls) == 2  # the kernel ran, torch did not


def test_normalize_with_a_full_map_of_statistics_runs_torchs() -> None:
    module = Normalize(torch.rand(3, 4, 4), torch.rand(3, 4, 4) + 0.5)
    op = NormalizeOp.from_module("op", module, False)
    assert op.kernel_channels is None
    x = spread((1, 3, 4, 4), seed=0)
    assert same_bits(op.run(x, 2), module(x))


# Every geometry (kernel, stride, padding, ceil_mode, count_include_pad, divisor_override) on
# small maps; on the Bi-Real-18 ones, a shortcut's pool and a few others.
POOLS = [(k, s, p, ceil, pad, div) for k, s, p, ceil, pad, div in itertools.product(
    (1, 2, 3), (1, 2, 3), (0, 1), (False, True), (False, True), (None, 3)) if 2 * p <= k]
LARGE_POOLS = [(2, 2, 0, False, True, None), (2, 2, 0, True, False, None),
               (3, 2, 1, True, False, None), (3, 1, 1, False, True, 5)]


@pytest.mark.parametrize("nchw_out", [True, False], ids=["nchw", "channels-last"])
@pytest.mark.parametrize("shape", MAPS, ids=IDS)
def test_average_pool_kernel_gives_torchs_values(shape, nchw_out, monkeypatch) -> None:
    """On a channels-last map, torch's values from bnnx's kernel, written NCHW for a conv
    (nchw_out) or channels-last, as torch's pool writes it (a fused unit's residual)."""
    small = shape[0] * shape[1] * shape[2] < 4096
    x = spread((2 if small else 1, *shape), seed=shape[2])
    channels_last = x.contiguous(memory_format=torch.channels_last)
    calls = []
    kernel = bitops.avgpool2d_float
    monkeypatch.setattr(bitops, "avgpool2d_float", lambda *a: calls.append(1) or kernel(*a))
    for k, s, p, ceil, pad, div in POOLS if small else LARGE_POOLS:
        if shape[1] + 2 * p < k or shape[2] + 2 * p < k:
            continue
        module = nn.AvgPool2d(k, s, p, ceil, pad, div)
        op = compiled(module)
        assert isinstance(op, AvgPool2dOp)
        op.nchw_out = nchw_out
        want = module(x)
        for threads in (1, 2):
            got = op.run(channels_last, threads)
            assert got.is_contiguous(memory_format=torch.contiguous_format if nchw_out
                                     else torch.channels_last)
            assert same_values(got, want), (k, s, p, ceil, pad, div, threads)
    assert calls  # the kernel ran, not torch


def test_average_pool_rejects_a_bad_divisor() -> None:
    x = np.zeros((1, 4, 4, 8), np.float32)
    with pytest.raises(ValueError, match="divisor_override"):
        bitops.avgpool2d_float(x, 2, divisor_override=0)


@pytest.mark.parametrize("shape", [(2, 37, 53, 19), (1, 56, 56, 64), (1, 7, 7, 512),
                                   (3, 1, 1, 5)], ids=["odd", "64@56", "512@7", "1x1"])
def test_threaded_transposes_move_every_value(shape) -> None:
    x = np.random.default_rng(0).standard_normal(shape, np.float32)
    for threads in (1, 2):
        np.testing.assert_array_equal(bitops.nchw_to_nhwc(x, threads), x.transpose(0, 2, 3, 1))
        np.testing.assert_array_equal(bitops.nhwc_to_nchw(x, threads), x.transpose(0, 3, 1, 2))


def test_batchnorm_kernel_checks_its_vectors() -> None:
    x = np.zeros((1, 4, 4, 8), np.float32)
    with pytest.raises(ValueError, match="alpha has 7 entries, expected C = 8"):
        bitops.batchnorm_float(x, np.ones(7, np.float32), np.zeros(8, np.float32))


def test_a_downsampling_shortcuts_pool_writes_what_its_conv_reads() -> None:
    """NCHW for torch's conv; channels-last where the direct kernel may run the 1x1 conv (it
    does where it gives torch's bits)."""
    packed = kernels.compile(family_model("bireal", seed=1), (3, 32, 32))
    chains = [op.chains["shortcut"] for op in packed.ops if isinstance(op, BiRealBlockOp)]
    pairs = [(c[0], c[1]) for c in chains if len(c) > 1 and isinstance(c[0], AvgPool2dOp)]
    assert pairs and all(pool.nchw_out == (not conv.directs) for pool, conv in pairs)
    native = kernels.active_isa() in DIRECT_CONV_ISAS
    assert all(bool(conv.directs) == native for _, conv in pairs)
