"""The packed engine on every family, stem/head precision, activation and quantizer: the bits
at every binary layer's input equal torch's signs, logits match, files round-trip, and layers
the engine cannot run (full precision) are named."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from forward_hooks import run_hooked
from torch import nn

import kernels
import spaces
from kernels.binary_ops import PackOp
from kernels.block_ops import BinaryConvOp, BiRealBlockOp, BlockOp
from kernels.float_ops import BatchNormOp, MaxPool2dOp
from kernels.graph import Bits, Signed, SignRequest
from spaces.quantizers import Quantizer

FAMILIES = ("plain", "resnet", "bireal", "reactnet")
SHAPE = (3, 12, 12)


def randomise(model: nn.Module, seed: int, shape: tuple[int, ...] = SHAPE) -> nn.Module:
    """Realistic, non-trivial parameters: BN statistics from a batch (so thresholds fall inside
    the dot range) with negative and zero gammas; random RSign alphas, (R)PReLU slopes and
    shifts, learned scales. Returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average: after one batch, that batch's statistics
        model.train()(torch.randn(32, *shape, generator=g))
        for m in bns:
            c = m.num_features
            gamma = torch.randn(c, generator=g)
            gamma[::3] = -gamma[::3].abs()
            gamma[c // 2] = 0.0
            m.weight.copy_(gamma)
            m.bias.copy_(torch.randn(c, generator=g) * 0.3)
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("alpha", "gamma", "zeta") and "bn" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            elif name.endswith("prelu.weight") or (leaf == "weight" and p.dim() == 1
                                                   and "act" in name):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif leaf == "output_scale":
                p.copy_(torch.randn(p.shape, generator=g))
    return model.eval()


def family_model(family: str, seed: int = 0, shape: tuple[int, ...] = SHAPE,
                 **options: object) -> spaces.BinaryNet:
    torch.manual_seed(seed)
    quant = {k: options.pop(k) for k in list(options) if k in spaces.QuantConfig.__annotations__}
    config = spaces.Config.from_dict({
        "arch": {"family": family, "width": 16, "depth": 3, "blocks_per_stage": 2, **options},
        "quant": quant,
    })
    c = shape[0]
    model = spaces.build_model(config, c, 10, shape[1], mean=[0.1] * c, std=[0.9] * c)
    return randomise(model, seed, shape)


def torch_binary_inputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """torch's +-1 input of every binary layer, in execution order."""
    seen: list[torch.Tensor] = []
    run_hooked(model, x, [
        q.register_forward_hook(lambda _m, _a, out: seen.append(out.detach().clone()))
        for q in model.modules() if isinstance(q, Quantizer) and q.kind == "activation"])
    return seen


def packed_binary_inputs(packed: kernels.PackedModel, x: torch.Tensor,
                         monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """The packed bits every binary layer consumes, unpacked to +-1, in execution order."""
    seen: list[torch.Tensor] = []
    take_bits = BinaryConvOp._bits

    def recording_bits(self: BinaryConvOp, value, threads: int) -> np.ndarray:
        """The bits a float input became, packed here or handed over by the producer (Signed);
        packed inputs are recorded by the bits-input op that received them, below."""
        data = take_bits(self, value, threads)
        if not isinstance(value, Bits):
            seen.append(Bits(data, self.c_in).to_torch().clone())
        return data

    monkeypatch.setattr(BinaryConvOp, "_bits", recording_bits)
    for op in packed.ops:
        if op.input_encoding == "bits":  # plain blocks take the previous op's bits
            def run(value, threads, _run=op.run):
                seen.append(value.to_torch().clone())
                return _run(value, threads)

            monkeypatch.setattr(op, "run", run)
    packed(x)
    return seen


def sample(shape: tuple[int, ...] = SHAPE) -> torch.Tensor:
    """The batch every comparison runs on."""
    return torch.randn(16, *shape, generator=torch.Generator().manual_seed(1)) * 2


def assert_matches_torch(model: nn.Module, monkeypatch: pytest.MonkeyPatch,
                         exact_bits: bool = True,
                         shape: tuple[int, ...] = SHAPE) -> kernels.PackedModel:
    packed = kernels.compile(model, shape)
    x = sample(shape)
    with torch.no_grad():
        ref = model(x).numpy()
    expected = torch_binary_inputs(model, x)
    got = packed_binary_inputs(packed, x, monkeypatch)
    assert len(got) == len(expected) > 0
    if exact_bits:
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=f"binary input {i}")
    assert any(np.unique(b.numpy()).size == 2 for b in expected)  # both signs: checks have teeth
    scale = max(1.0, float(np.abs(ref).max()))
    out = packed(x)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * scale)
    np.testing.assert_array_equal(out.argmax(1), ref.argmax(1))
    return packed


@pytest.mark.parametrize(
    "family, activation, ends",
    list(itertools.product(FAMILIES, spaces.blocks.ACTIVATION_NAMES, ("float", "binary"))),
)
def test_families_activations_stem_and_head_are_bit_exact(family, activation, ends,
                                                          monkeypatch) -> None:
    quantizer = "rsign" if family == "reactnet" else "approx_sign"
    if family == "plain" and ends == "binary":
        quantizer = "ste"
    model = family_model(family, activation=activation, stem=ends, head=ends,
                         input_quantizer=quantizer)
    assert_matches_torch(model, monkeypatch)


@pytest.mark.parametrize(
    "family, options",
    [
        ("plain", {"learned_scale": True}),  # negative learned scales flip the thresholds
        ("plain", {"pool_order": "pool_bn"}),
        ("plain", {"pool_order": "pool_bn", "pad_value": 1.0, "kernel_size": 5}),
        ("plain", {"pool_order": "pool_bn", "learned_scale": True, "head": "binary"}),
        ("resnet", {"downsample": "strided_conv", "activation": "prelu"}),
        ("resnet", {"pad_value": 1.0, "kernel_size": 5, "input_quantizer": "swish_sign"}),
        ("bireal", {"downsample": "strided_conv", "learned_scale": True}),
        ("bireal", {"input_quantizer": "rsign", "stem": "binary", "pad_value": 1.0}),
        ("reactnet", {"kernel_size": 5, "input_quantizer": "ede", "learned_scale": True}),
        ("reactnet", {"depth": 4, "input_quantizer": "rsign", "head": "binary"}),
    ],
)
def test_family_options_are_bit_exact(family, options, monkeypatch) -> None:
    assert_matches_torch(family_model(family, seed=2, **dict(options)), monkeypatch)


@pytest.mark.parametrize("family", FAMILIES)
def test_digits_shaped_input_is_bit_exact(family, monkeypatch) -> None:
    shape = (1, 8, 8)
    quantizer = "clipped_ste" if family == "plain" else "rsign"
    model = family_model(family, seed=6, shape=shape, input_quantizer=quantizer,
                         activation="rprelu", stem="binary", head="binary")
    assert_matches_torch(model, monkeypatch, shape=shape)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("stem", ["float", "binary"])
def test_imagenet_stem_is_bit_exact(family, stem, monkeypatch) -> None:
    """7x7/2 conv -> BN -> 3x3/2 max-pool: an odd input size exercises the 'same' rounding."""
    shape = (3, 29, 29)
    model = family_model(family, seed=8, shape=shape, stem=stem, stem_layout="imagenet")
    assert isinstance(model.stem[-1], nn.MaxPool2d)
    assert_matches_torch(model, monkeypatch, shape=shape)


@pytest.mark.parametrize("gammas", ["non-negative", "mixed"])
def test_stem_pools_before_batchnorm(gammas, monkeypatch, tmp_path) -> None:
    """BN -> max-pool runs as pool -> BN (BN on a quarter of the map), bit exact: BN is monotone
    per channel, so channels with a negative gamma are min-pooled and the others max-pooled."""
    shape = (3, 29, 29)
    model = family_model("bireal", seed=9, shape=shape, stem_layout="imagenet")
    bn = model.stem[2]
    assert isinstance(bn, nn.BatchNorm2d) and bool((bn.weight < 0).any())  # randomise's mix
    if gammas == "non-negative":
        with torch.no_grad():
            bn.weight.abs_()
    packed = assert_matches_torch(model, monkeypatch, shape=shape)
    assert [row.name for row in packed.layers_info()][:4] == ["stem.0", "stem.1", "stem.3",
                                                              "stem.2"]
    pool = packed.ops[2]
    if gammas == "non-negative":
        assert pool.lower is None
    else:
        np.testing.assert_array_equal(pool.lower, (bn.weight < 0).numpy())
    packed.save(tmp_path / "m.bnnx")
    loaded = kernels.load(tmp_path / "m.bnnx")
    x = sample(shape)
    np.testing.assert_array_equal(loaded(x), packed(x))


@pytest.mark.parametrize("family", FAMILIES)
def test_two_threads_give_one_threads_logits(family) -> None:
    """Fused units, handed-over signs and row bands split across threads change no value."""
    model = family_model(family, seed=3, activation="rprelu",
                         input_quantizer="rsign" if family == "reactnet" else "approx_sign")
    x = sample()
    np.testing.assert_array_equal(kernels.compile(model, SHAPE, threads=2)(x),
                                  kernels.compile(model, SHAPE, threads=1)(x))


def test_a_file_asking_torchs_pool_for_min_channels_is_refused() -> None:
    params = {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1], "dilation": [1, 1],
              "ceil_mode": True}
    with pytest.raises(ValueError, match="min-pooled channels need dilation 1 and no ceil_mode"):
        MaxPool2dOp("stem.3", params, {"lower": np.ones(4, np.uint8)})


def test_dilated_pool_after_a_negative_gamma_keeps_torchs_order(monkeypatch) -> None:
    """torch's dilated pool has no min form here: with a negative gamma the order stays."""
    shape = (3, 29, 29)
    model = family_model("bireal", seed=9, shape=shape, stem_layout="imagenet")
    model.stem[3].dilation = 2
    packed = assert_matches_torch(model, monkeypatch, shape=shape)
    assert [row.name for row in packed.layers_info()][:4] == ["stem.0", "stem.1", "stem.2",
                                                              "stem.3"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("weights", ["xnor", "dorefa", "libra_pb"])
def test_scaled_weights_match_logits(family, weights, monkeypatch) -> None:
    """torch sums +-scale in fp32, so only exact ties could differ: logits and argmax must match."""
    model = family_model(family, seed=3, weight_quantizer=weights, activation="rprelu")
    assert_matches_torch(model, monkeypatch, exact_bits=False)


@pytest.mark.parametrize("family", FAMILIES[1:])
def test_block_ops_save_and_load(family: str, tmp_path: Path) -> None:
    model = family_model(family, seed=4, input_quantizer="rsign", activation="rprelu",
                         stem="binary", head="binary")
    packed = kernels.compile(model, SHAPE)
    packed.save(tmp_path / "m.bnnx")
    loaded = kernels.load(tmp_path / "m.bnnx")
    x = torch.randn(5, *SHAPE)
    np.testing.assert_array_equal(loaded(x), packed(x))
    assert loaded.layers_info() == packed.layers_info()
    info = {row.name: row for row in packed.layers_info()}
    assert info["body.0"].binary_macs > 0 and info["body.0"].kind.endswith("_block")


def residual_blocks(packed: kernels.PackedModel) -> list[BlockOp]:
    return [op for op in packed.ops if isinstance(op, BlockOp) and op.units]


@pytest.mark.parametrize("family, options", [
    ("bireal", {"downsample": "avgpool_conv"}),
    ("bireal", {"downsample": "strided_conv", "activation": "prelu"}),
    ("bireal", {"activation": "rprelu", "input_quantizer": "rsign"}),
    ("resnet", {"downsample": "avgpool_conv", "activation": "rprelu"}),
    ("resnet", {"downsample": "strided_conv", "activation": "none"}),
    ("reactnet", {"activation": "rprelu", "input_quantizer": "rsign"}),
    ("reactnet", {"activation": "prelu", "kernel_size": 5}),
    ("reactnet", {"activation": "hardtanh", "depth": 4}),
    ("resnet", {"activation": "hardtanh"}),
])
def test_residual_units_run_fused(family, options, monkeypatch, tmp_path) -> None:
    """Every conv -> BN [-> + shortcut] -> PReLU / RPReLU / hardtanh / no activation unit runs
    in its conv's output pass, bit exact with identity, downsampling and duplicating shortcuts, and
    again after a save and load."""
    model = family_model(family, seed=6, **options)
    packed = assert_matches_torch(model, monkeypatch)
    blocks = residual_blocks(packed)
    assert len(blocks) >= 6 and all(u is not None for op in blocks for u in op.units.values())
    packed.save(tmp_path / "m.bnnx")
    loaded = kernels.load(tmp_path / "m.bnnx")
    assert all(u is not None for op in residual_blocks(loaded) for u in op.units.values())
    x = sample()
    np.testing.assert_array_equal(loaded(x), packed(x))


@pytest.mark.parametrize("family", FAMILIES[1:])
def test_fused_units_pack_their_consumers_input(family, monkeypatch) -> None:
    """Each fused unit writes the packed signs its consumer takes (RSign shift subtracted) in
    its own pass, to the next unit's conv or the next block's: only the first conv packs."""
    model = family_model(family, seed=6, activation="rprelu", input_quantizer="rsign")
    packed = assert_matches_torch(model, monkeypatch)
    monkeypatch.undo()
    blocks = residual_blocks(packed)
    assert all(b.signs_out is not None for b in blocks[:-1]) and blocks[-1].signs_out is None
    packs: list[str] = []
    pack = BinaryConvOp.pack
    monkeypatch.setattr(BinaryConvOp, "pack",
                        lambda self, x, threads: packs.append(self.name) or pack(self, x, threads))
    x = sample()
    with torch.no_grad():
        np.testing.assert_allclose(packed(x), model(x).numpy(), rtol=1e-4, atol=1e-4)
    assert packs == [f"body.0.conv{blocks[0].units_of[0]}"]


@pytest.mark.parametrize("isa", kernels.available_isas())
@pytest.mark.parametrize("family", FAMILIES[1:])
def test_fused_signs_equal_a_separate_pack_every_isa(family, isa, monkeypatch) -> None:
    """Every fused unit's Signed output on every ISA path, at widths off multiples of 64 (24,
    48, 96) and with RSign shifts: its bits are the pack of its own map minus the consumer's
    shift (PackOp, as an unfused consumer packs), its torch map is its NHWC array, and the
    network still sees torch's bits and logits."""
    model = family_model(family, seed=8, width=24, activation="rprelu", input_quantizer="rsign")
    outputs: list[tuple[Signed, SignRequest]] = []
    run_unit = BinaryConvOp.run_unit

    def recording(self, x, unit, residual, threads, signs=None):
        y = run_unit(self, x, unit, residual, threads, signs)
        if signs is not None:
            outputs.append((y, signs))
        return y

    with kernels.use_isa(isa):
        assert_matches_torch(model, monkeypatch, shape=SHAPE)
        monkeypatch.setattr(BinaryConvOp, "run_unit", recording)
        packed = kernels.compile(model, SHAPE)
        packed.threads = 2
        packed(sample())
        assert outputs and any(s.shift is not None for _, s in outputs)
        for y, signs in outputs:
            separate = PackOp.subtracting("pack", None if signs.shift is None
                                          else torch.from_numpy(signs.shift)).run(y.map, 1)
            np.testing.assert_array_equal(y.bits.data, separate.data)
            assert y.bits.channels == y.map.shape[1] and y.shape == tuple(y.map.shape)
            np.testing.assert_array_equal(y.map.permute(0, 2, 3, 1).numpy(), y.nhwc)


def test_bireal_batchnorm_not_reproduced_stays_composite(monkeypatch) -> None:
    """A BatchNorm whose torch output no fma(y, alpha, beta) gives keeps the torch chain."""
    forward = BatchNormOp.forward
    monkeypatch.setattr(BatchNormOp, "forward", lambda self, x: torch.nextafter(
        forward(self, x), torch.tensor(float("inf"))))
    packed = kernels.compile(family_model("bireal", seed=6, activation="none"), SHAPE)
    blocks = [op for op in packed.ops if isinstance(op, BiRealBlockOp)]
    assert blocks and all(op.units[""] is None for op in blocks)


def test_block_macs_count_every_binary_conv() -> None:
    packed = kernels.compile(family_model("bireal", seed=5, downsample="strided_conv"), SHAPE)
    info = {row.name: row for row in packed.layers_info()}
    assert info["body.0"].binary_macs == 12 * 12 * 16 * 16 * 9
    stride2 = info["body.2"]  # 16 -> 32 channels, 12x12 -> 6x6, with a 1x1 fp shortcut
    assert stride2.binary_macs == 6 * 6 * 32 * 16 * 9
    assert stride2.float_macs >= 6 * 6 * 32 * 16


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("which", ["input_quantizer", "weight_quantizer"])
def test_full_precision_body_is_rejected_naming_the_layer(family, which) -> None:
    model = family_model(family, **{which: "none"})
    with pytest.raises(kernels.UnsupportedLayerError,
                       match=rf"body\.0\.conv1?: BinaryConv2d with {which}=None"):
        kernels.compile(model, SHAPE)


def alphas_on_reachable_values(model: nn.Module, x: torch.Tensor, seed: int) -> nn.Module:
    """Set each body RSign's alpha_c to a value its input really takes on x (layer by layer,
    since each alpha changes the layers after it), so x - alpha_c hits exactly 0: the ties
    where a threshold off by one dot would flip a bit. (Not the head's: a plain block feeding a
    float consumer ends in a folded affine, close to torch's BN but not bit-identical.)"""
    g = torch.Generator().manual_seed(seed)
    for q in [m for m in model.body.modules() if hasattr(m, "shifted")]:
        seen: list[torch.Tensor] = []
        run_hooked(model, x, [q.register_forward_pre_hook(
            lambda _m, args, seen=seen: seen.append(args[0].detach()))])
        values = seen[0].transpose(0, 1).flatten(1)  # (C, everything else)
        pick = torch.randint(values.shape[1], (values.shape[0],), generator=g)
        with torch.no_grad():
            q.alpha.copy_(values[torch.arange(values.shape[0]), pick])
    return model


@pytest.mark.parametrize("pool_order", spaces.config.POOL_ORDERS)
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("ties", [False, True])
def test_plain_blocks_with_rsign_are_bit_exact(pool_order, depth, ties, monkeypatch) -> None:
    """Packed inputs carry sign(x - alpha_c): the stem's pack subtracts alpha_c, and each block
    thresholds (or packs) BN - alpha_c of the next block, before or after its max-pool."""
    model = family_model("plain", seed=depth, input_quantizer="rsign", pool_order=pool_order,
                         depth=depth, head="binary" if depth == 2 else "float")
    if ties:
        alphas_on_reachable_values(model, sample(), seed=depth)
    assert_matches_torch(model, monkeypatch)


def test_plain_rsign_save_and_load(tmp_path: Path) -> None:
    for i, pool_order in enumerate(spaces.config.POOL_ORDERS):
        model = family_model("plain", seed=7, input_quantizer="rsign", pool_order=pool_order)
        packed = kernels.compile(model, SHAPE)
        packed.save(tmp_path / f"{i}.bnnx")
        loaded = kernels.load(tmp_path / f"{i}.bnnx")
        x = sample()
        np.testing.assert_array_equal(loaded(x), packed(x))
