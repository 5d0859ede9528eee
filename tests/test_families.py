"""The architecture families in torch: every family x quantizer pair builds, runs and trains one
step; each family has its paper's structure; the knobs reach the layers."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spaces
from spaces import BinaryConv2d, build_model
from spaces.config import FAMILIES
from spaces.quantizers import ACTIVATION_QUANTIZERS, FULL_PRECISION, WEIGHT_QUANTIZERS

INPUTS = [(1, 8), (3, 32)]  # digits-shaped and CIFAR-shaped


def config(family: str, **options: object) -> spaces.Config:
    quant = {k: options.pop(k) for k in list(options) if k in spaces.QuantConfig.__annotations__}
    return spaces.Config.from_dict({"arch": {"family": family, "width": 8, "depth": 2, **options},
                                    "quant": quant})


def binary_convs(module: nn.Module) -> list[BinaryConv2d]:
    return [m for m in module.modules() if isinstance(m, BinaryConv2d)]


@pytest.mark.parametrize("channels, size", INPUTS)
@pytest.mark.parametrize(
    "family, input_quantizer, weight_quantizer",
    list(itertools.product(FAMILIES, [*ACTIVATION_QUANTIZERS, FULL_PRECISION],
                           [*WEIGHT_QUANTIZERS, FULL_PRECISION])),
)
def test_every_family_and_quantizer_builds_runs_and_trains(family, input_quantizer,
                                                           weight_quantizer, channels, size):
    torch.manual_seed(0)
    c = config(family, input_quantizer=input_quantizer, weight_quantizer=weight_quantizer,
               activation="rprelu", stem="binary", head="binary", learned_scale=True)
    model = build_model(c, channels, 10, size)
    x, y = torch.rand(4, channels, size, size), torch.randint(0, 10, (4,))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    assert model(x).shape == (4, 10) and torch.isfinite(loss)
    convs = binary_convs(model.body)
    assert convs and all(conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
                         for conv in convs)  # every latent weight learns
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    assert "body.0." + ("conv.weight" if family in ("plain", "bireal") else "conv1.weight") \
        in changed
    expected = 32 if FULL_PRECISION == input_quantizer else 1
    assert {conv.precision for conv in convs} == {expected}


def test_plain_pool_order_puts_the_pool_before_bn():
    model = build_model(config("plain", pool_order="pool_bn"), 1, 10, 8).eval()
    block = model.body[0]
    assert isinstance(block, spaces.PoolFirstBlock)
    with torch.no_grad():
        block.bn.weight.fill_(-1.0)
        x = torch.randn(2, 8, 8, 8)
        conv = block.conv(x)
        assert torch.equal(block(x), block.bn(block.pool(conv)))
        assert not torch.equal(block(x), block.pool(block.bn(conv)))


@pytest.mark.parametrize("mode, kinds", [("avgpool_conv", ["AvgPool2d", "Conv2d", "BatchNorm2d"]),
                                         ("strided_conv", ["Conv2d", "BatchNorm2d"])])
def test_resnet_has_two_binary_convs_per_real_shortcut(mode, kinds):
    model = build_model(config("resnet", blocks_per_stage=2, downsample=mode), 3, 10, 16)
    blocks = list(model.body)
    assert all(isinstance(b, spaces.ResNetBlock) for b in blocks) and len(blocks) == 4
    assert all(len(binary_convs(b)) == 2 for b in blocks)
    assert isinstance(blocks[0].shortcut, nn.Identity)
    down = blocks[2].shortcut
    assert [type(m).__name__ for m in down] == kinds
    assert blocks[2].conv1.stride == (2, 2) and blocks[2].conv2.stride == (1, 1)
    assert all(type(m).__name__ != "BinaryConv2d" for m in down.modules())  # real-valued
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 10)


def test_bireal_has_a_real_shortcut_around_every_binary_conv():
    model = build_model(config("bireal", blocks_per_stage=2, depth=3), 3, 10, 15)
    blocks = list(model.body)
    assert all(isinstance(b, spaces.BiRealBlock) and len(binary_convs(b)) == 1 for b in blocks)
    down = blocks[2].shortcut  # AvgPool -> fp 1x1 conv -> BN (Bi-Real's downsampling)
    assert [type(m).__name__ for m in down] == ["AvgPool2d", "Conv2d", "BatchNorm2d"]
    assert model(torch.rand(2, 3, 15, 15)).shape == (2, 10)  # odd maps: ceil-mode pooling


def test_reactnet_duplicates_activations_when_the_1x1_doubles_width():
    model = build_model(config("reactnet", depth=3, input_quantizer="rsign",
                               activation="rprelu"), 3, 10, 16).eval()
    first, down = model.body[0], model.body[1]
    assert (first.conv1.kernel_size, first.conv2.kernel_size) == ((3, 3), (1, 1))
    assert (down.conv1.in_channels, down.conv1.out_channels, down.conv1.stride) == (8, 8, (2, 2))
    assert (down.conv2.in_channels, down.conv2.out_channels) == (8, 16)
    assert isinstance(down.shortcut, nn.AvgPool2d)
    assert isinstance(down.act1, spaces.RPReLU) and down.conv1.input_quantizer.name == "rsign"
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        y = down.act1(down.bn1(down.conv1(x)) + down.shortcut(x))
        z = down.bn2(down.conv2(y))
        assert torch.equal(down(x), down.act2(z + torch.cat([y, y], dim=1)))


def test_rprelu_is_shifted_prelu():
    act = spaces.RPReLU(3)
    with torch.no_grad():
        act.gamma.copy_(torch.tensor([0.5, -1.0, 0.0]))
        act.zeta.copy_(torch.tensor([1.0, 0.0, -2.0]))
        act.prelu.weight.copy_(torch.tensor([0.25, 0.1, 2.0]))
    x = torch.randn(2, 3, 4, 4)
    g, z, a = (t.view(1, 3, 1, 1) for t in (act.gamma, act.zeta, act.prelu.weight))
    expected = torch.where(x - g >= 0, x - g, a * (x - g)) + z
    assert torch.allclose(act(x), expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_knobs_reach_the_layers(family):
    c = config(family, kernel_size=5, pad_value=1.0, bn_momentum=0.01, stem="binary",
               head="binary", activation="prelu", input_quantizer="swish_sign", beta=2.0,
               weight_quantizer="xnor", learned_scale=True, width=12)
    model = build_model(c, 3, 10, 16)
    assert all(bn.momentum == 0.01 for bn in model.modules() if isinstance(bn, nn.BatchNorm2d))
    stem_conv, head_conv = model.stem[1], model.head[-2]
    assert isinstance(stem_conv, BinaryConv2d) and isinstance(head_conv, BinaryConv2d)
    assert stem_conv.out_channels == 12 and head_conv.out_channels == 10
    body = binary_convs(model.body)
    assert any(conv.kernel_size == (5, 5) for conv in body)
    assert all(conv.pad_value == 1.0 and conv.output_scale is not None for conv in body)
    assert all(conv.input_quantizer.config() == {"beta": 2.0} for conv in body)
    assert all(conv.weight_quantizer.name == "xnor" for conv in body)
    if family != "plain":
        assert any(isinstance(m, nn.PReLU) for m in model.body.modules())


def test_full_precision_twin_has_no_binary_layer():
    model = build_model(config("resnet", input_quantizer="none", weight_quantizer="none"), 3,
                        10, 8)
    convs = binary_convs(model)
    assert convs and all(c.input_quantizer is None and c.weight_quantizer is None for c in convs)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("stem, head", [("float", "float"), ("binary", "binary")])
def test_full_precision_twin_has_a_relu_where_the_sign_was(family, stem, head):
    """Without it a Bi-Real or ResNet twin (no activation between units) is one affine map: a
    useless baseline and distillation teacher. The stem never gets it: it reads raw pixels."""
    model = build_model(config(family, stem=stem, head=head, input_quantizer=FULL_PRECISION,
                               weight_quantizer=FULL_PRECISION), 1, 10, 8).eval()
    convs = binary_convs(model)
    assert [c.fp_relu for c in convs] == [c is not model.stem[1] for c in convs]
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
    with torch.no_grad():
        affine_gap = model(a) + model(b) - model(a + b) - model(torch.zeros_like(a))
    assert affine_gap.abs().max() > 1e-3  # an affine map would give 0 up to rounding
    with pytest.raises(ValueError, match="fp_relu is for full-precision inputs"):
        BinaryConv2d(4, 4, 3, input_quantizer="ste", fp_relu=True)
