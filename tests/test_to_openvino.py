"""The OpenVINO export: every family and stem/head variant gives torch's and the packed model's
predictions, the binary convs really run as OpenVINO's u1 BinaryConvolution, signs at exact
ties and every pad value are torch's, and what cannot be built is named."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from test_kernels_families import family_model, sample
from torch import nn

import kernels
import spaces
from kernels.to_openvino import to_openvino

ov = pytest.importorskip("openvino")

DIGITS = (1, 8, 8)
# Logits agree to float rounding (folded BatchNorms, OpenVINO's summation order): measured
# within 4e-7 of the largest logit; allowed 1e-4 of it, as the packed engine's tests allow.
TOLERANCE = 1e-4


def compiled(model: nn.Module, shape: tuple[int, ...], batch: int):
    """The OpenVINO model of `model` for `batch` images, compiled on CPU in f32."""
    ov_model = to_openvino(model, shape)
    ov_model.reshape([batch, *shape])
    return ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                     "INFERENCE_NUM_THREADS": 1})


def binary_conv_exec_types(model) -> list[str]:
    """The primitive each BinaryConvolution of a compiled model runs on."""
    return [node.get_rt_info()["primitiveType"].astype(str)
            for node in model.get_runtime_model().get_ordered_ops()
            if node.get_rt_info()["layerType"].astype(str) == "BinaryConvolution"]


def assert_matches(model: nn.Module, shape: tuple[int, ...] = DIGITS) -> None:
    x = sample(shape)
    ov_logits = compiled(model, shape, x.shape[0])(x.numpy())["logits"]
    with torch.no_grad():
        ref = model(x).numpy()
    packed = kernels.compile(model, shape)(x)
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(ov_logits, ref, rtol=0, atol=TOLERANCE * scale)
    np.testing.assert_allclose(ov_logits, packed, rtol=0, atol=TOLERANCE * scale)
    np.testing.assert_array_equal(ov_logits.argmax(1), ref.argmax(1))
    np.testing.assert_array_equal(ov_logits.argmax(1), packed.argmax(1))


VARIANTS = [
    ("plain", {"stem": "binary", "head": "binary", "input_quantizer": "ste"}),
    ("plain", {"input_quantizer": "rsign", "pool_order": "pool_bn", "learned_scale": True}),
    ("plain", {"pool_order": "pool_bn", "pad_value": 1.0, "kernel_size": 5,
               "weight_quantizer": "xnor"}),
    ("resnet", {"activation": "prelu", "downsample": "strided_conv", "head": "binary"}),
    ("resnet", {"activation": "hardtanh", "stem": "binary", "weight_quantizer": "libra_pb"}),
    ("bireal", {"activation": "none", "stem": "binary", "head": "binary"}),
    ("bireal", {"activation": "rprelu", "input_quantizer": "rsign", "pad_value": 1.0,
                "weight_quantizer": "dorefa"}),
    ("reactnet", {"activation": "rprelu", "input_quantizer": "rsign", "stem": "binary",
                  "head": "binary"}),
    ("reactnet", {"activation": "prelu", "learned_scale": True, "input_quantizer": "ede"}),
]


@pytest.mark.parametrize("family, options", VARIANTS)
def test_digits_networks_predict_as_torch_and_packed(family, options) -> None:
    assert_matches(family_model(family, seed=6, shape=DIGITS, **dict(options)))


@pytest.mark.parametrize("family, stem", [("bireal", "float"), ("reactnet", "binary")])
def test_imagenet_stem_on_rgb(family, stem) -> None:
    """7x7/2 conv -> BN -> 3x3/2 max-pool on an odd RGB map; a binary stem on 3 channels takes
    the float-conv-on-signs path (OpenVINO's BinaryConvolution needs channels in whole bytes)."""
    shape = (3, 29, 29)
    assert_matches(family_model(family, seed=8, shape=shape, stem=stem,
                                stem_layout="imagenet"), shape)


@pytest.mark.parametrize("channels", [3, 5, 16])
@pytest.mark.parametrize("pad_value", spaces.layers.PAD_VALUES)
@pytest.mark.parametrize("quantizer", ["ste", "rsign"])
def test_binary_conv_dots_are_torchs_exactly(channels, pad_value, quantizer) -> None:
    """One binary conv with sign weights: integer dots, so equal to torch's bit for bit, with
    zeros, -0.0 and values equal to alpha_c in the input, at every pad value. (Deeper in a
    network a sign's input is a float OpenVINO rounds its own way: ties there may differ.)"""
    conv = spaces.layers.BinaryConv2d(channels, 8, 3, padding=1, input_quantizer=quantizer,
                                      pad_value=pad_value)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, channels, 6, 6, generator=g)
    with torch.no_grad():
        if quantizer == "rsign":
            conv.input_quantizer.alpha.copy_(torch.randn(channels, generator=g) * 0.3)
            x[0, :, 0, 0] = conv.input_quantizer.alpha
        x[1, :, 0, 0], x[1, :, 0, 1] = 0.0, -0.0
    model = spaces.models.BinaryNet(nn.Sequential(conv), nn.Sequential(), nn.Sequential())
    out = compiled(model, (channels, 6, 6), 2)(x.numpy())["logits"]
    with torch.no_grad():
        np.testing.assert_array_equal(out, model(x).numpy())


def test_binary_convs_run_as_u1_binary_convolutions() -> None:
    """Every binary conv of a model on whole bytes of channels is a BinaryConvolution on a jit u1
    kernel (the AVX-512 one where bnnx's own dispatch found AVX-512); the model takes 'input',
    gives 'logits', batch 1 as built."""
    model = family_model("bireal", seed=6, shape=DIGITS, head="binary", stem="binary")
    ov_model = to_openvino(model, DIGITS)
    assert ov_model.input().get_any_name() == "input"
    assert ov_model.output().get_any_name() == "logits"
    assert list(ov_model.input().get_partial_shape().to_shape()) == [1, *DIGITS]
    compiled_model = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    binary = [m for m in model.modules() if isinstance(m, spaces.layers.BinaryConv2d)
              and m.in_channels % 8 == 0]  # not the stem's, on 1 channel
    assert model.stem[1] not in binary
    types = binary_conv_exec_types(compiled_model)
    assert len(types) == len(binary) > 0
    assert all(t.startswith("jit_") and t.endswith("_u1") for t in types), types
    if kernels.active_isa().startswith("avx512"):
        assert set(types) == {"jit_avx512_u1"}
    x = sample(DIGITS)[:1]
    with torch.no_grad():
        np.testing.assert_array_equal(compiled_model(x.numpy())["logits"].argmax(1),
                                      model(x).argmax(1).numpy())


def test_unsupported_layers_are_named() -> None:
    model = family_model("plain", shape=DIGITS)
    model.head.append(nn.Sigmoid())
    with pytest.raises(kernels.UnsupportedLayerError, match=r"head\.\d+: Sigmoid is not"):
        to_openvino(model, DIGITS)
    full_precision = family_model("bireal", shape=DIGITS, input_quantizer="none")
    with pytest.raises(kernels.UnsupportedLayerError,
                       match=r"body\.0\.conv: BinaryConv2d with input_quantizer=None"):
        to_openvino(full_precision, DIGITS)
    pooled = family_model("bireal", shape=DIGITS)
    pooled.body[2].shortcut[0].divisor_override = 3
    with pytest.raises(kernels.UnsupportedLayerError,
                       match=r"body\.2\.shortcut\.0: AvgPool2d with divisor_override"):
        to_openvino(pooled, DIGITS)


def test_missing_openvino_names_the_deploy_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    with pytest.raises(ImportError, match=r"^to_openvino needs the openvino package: "
                                          r"pip install -e '\.\[deploy\]'$"):
        to_openvino(family_model("plain", shape=DIGITS), DIGITS)
