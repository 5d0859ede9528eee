"""Pattern fusion: bare binary layers (a Larq-style Sequential, no space blocks) compile to the
same fused ops as the space's units, and every binary layer still sees torch's signs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_kernels_families import assert_matches_torch, randomise, sample
from torch import nn

import kernels
import spaces
from kernels.block_ops import BinaryUnitOp
from kernels.float_ops import BatchNormOp
from spaces.blocks import RPReLU
from spaces.models import BinaryNet

ACTIVATIONS = {"prelu": lambda c: nn.PReLU(c), "hardtanh": lambda c: nn.Hardtanh(),
               "rprelu": RPReLU}


def bare_model(activation: str, quantizer: str, seed: int) -> BinaryNet:
    """Every pattern the compiler fuses, written as bare layers: conv -> BN (bits out),
    conv -> BN -> max-pool, conv -> max-pool -> BN, conv -> BN -> activation (its bits from the
    fused pass) and conv -> BN feeding the float head."""
    torch.manual_seed(seed)

    def conv(c_in: int, c_out: int) -> nn.Module:
        return spaces.BinaryConv2d(c_in, c_out, 3, padding=1, input_quantizer=quantizer)

    stem = nn.Sequential(spaces.Normalize([0.1] * 3, [0.9] * 3), nn.Conv2d(3, 16, 3, padding=1),
                         nn.BatchNorm2d(16))
    body = nn.Sequential(
        conv(16, 16), nn.BatchNorm2d(16),
        conv(16, 24), nn.BatchNorm2d(24), nn.MaxPool2d(2),
        conv(24, 24), nn.MaxPool2d(2, padding=1), nn.BatchNorm2d(24),
        nn.Sequential(conv(24, 32), nn.BatchNorm2d(32)), ACTIVATIONS[activation](32),
        conv(32, 32), nn.BatchNorm2d(32))
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    return randomise(BinaryNet(stem, body, head), seed)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("quantizer", ["ste", "rsign"])
def test_bare_layers_fuse_and_stay_bit_exact(activation, quantizer, monkeypatch) -> None:
    model = bare_model(activation, quantizer, seed=len(activation))
    packed = assert_matches_torch(model, monkeypatch)
    body = [(op.name, op.kind, op.output_encoding) for op in packed.ops
            if op.name.startswith("body")]
    assert body == [("body.0.pack", "pack", "bits"), ("body.0", "plain_block", "bits"),
                    ("body.2", "plain_block", "bits"), ("body.5", "pool_first_block", "bits"),
                    ("body.8.0", "binary_unit", "bits"), ("body.10", "binary_unit", "float")]
    units = [op for op in packed.ops if isinstance(op, BinaryUnitOp)]
    assert all(op.units[""] is not None for op in units)  # conv, BN and act in one pass
    assert units[0].signs_out is not None  # which also wrote the next conv's bits


def test_fused_bare_layers_save_and_load(tmp_path: Path) -> None:
    packed = kernels.compile(bare_model("rprelu", "rsign", seed=3), (3, 12, 12))
    packed.save(tmp_path / "m.bnnx")
    loaded = kernels.load(tmp_path / "m.bnnx")
    x = sample()
    np.testing.assert_array_equal(loaded(x), packed(x))
    assert [op.label for op in loaded.ops] == [op.label for op in packed.ops]


def test_unit_whose_batchnorm_no_fma_reproduces_runs_torchs_chain(monkeypatch) -> None:
    """Where fused_batchnorm finds no exact fma, the unit runs conv, BN and activation as
    torch does and packs the result: still torch's signs (here of a BN nudged up an ulp, in
    torch and in the engine alike)."""
    forward = BatchNormOp.forward
    monkeypatch.setattr(BatchNormOp, "forward", lambda self, x: torch.nextafter(
        forward(self, x), torch.tensor(float("inf"))))
    model = bare_model("prelu", "rsign", seed=4)
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.register_forward_hook(
                lambda _m, _a, out: torch.nextafter(out, torch.tensor(float("inf"))))
    packed = assert_matches_torch(model, monkeypatch)
    units = [op for op in packed.ops if isinstance(op, BinaryUnitOp)]
    assert len(units) == 2 and all(op.units[""] is None for op in units)


def test_batchnorm_without_statistics_is_not_fused_and_named() -> None:
    model = bare_model("prelu", "ste", seed=5)
    model.body[1] = nn.BatchNorm2d(16, track_running_stats=False)
    with pytest.raises(kernels.UnsupportedLayerError, match=r"body\.1: BatchNorm2d without"):
        kernels.compile(model, (3, 12, 12))


def test_units_before_a_block_and_a_float_pool(monkeypatch) -> None:
    """A float-output unit hands a residual block its packed input from the fused pass
    (Signed); a unit ending in a max-pool before a float consumer pools the exact float map."""
    torch.manual_seed(6)
    spec = spaces.blocks.BinarySpec(input_quantizer="ste")
    stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16))
    body = nn.Sequential(spec.conv(16, 16, 3), nn.BatchNorm2d(16), nn.PReLU(16),
                         spaces.BiRealBlock(16, 16, spec),
                         spec.conv(16, 24, 3), nn.BatchNorm2d(24), nn.MaxPool2d(2))
    head = nn.Sequential(nn.Flatten(), nn.Linear(24 * 6 * 6, 10))
    model = randomise(BinaryNet(stem, body, head), 6)
    packed = assert_matches_torch(model, monkeypatch)
    units = {op.name: op for op in packed.ops if isinstance(op, BinaryUnitOp)}
    assert [op.label for op in units.values()] == ["bconv3x3+bn+prelu", "bconv3x3+bn+maxpool2d"]
    assert units["body.0"].signs_out is not None and units["body.4"].signs_out is None


@pytest.mark.parametrize("which", ["input_quantizer", "weight_quantizer"])
def test_unpackable_bare_conv_is_named_by_its_own_path(which) -> None:
    model = bare_model("prelu", "ste", seed=7)
    setattr(model.body[2], which, None)
    with pytest.raises(kernels.UnsupportedLayerError,
                       match=rf"^body\.2: BinaryConv2d with {which}=None"):
        kernels.compile(model, (3, 12, 12))
