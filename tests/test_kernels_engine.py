"""The packed engine against torch models built by spaces: bits, logits, files, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from forward_hooks import run_hooked
from safetensors.numpy import save_file
from torch import nn

import kernels
import spaces
from spaces.models import BinaryNet


def randomise(model: nn.Module, seed: int, ties: bool = True) -> nn.Module:
    """Non-trivial BatchNorm statistics (negative and zero gammas, thresholds inside the dot
    range) so that bits and logits depend on every part of the epilogue; returns eval mode.

    `ties` puts some thresholds exactly on integer dots. Only meaningful for unit weight scales:
    with xnor scales torch's conv sums +-s in fp32, so at an exact tie its sign is rounding noise.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if not isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                continue
            c = m.num_features
            spread = 1.0
            if name.startswith("body."):  # follows a binary conv: dots are O(sqrt(K))
                conv = model.get_submodule(name.rsplit(".", 1)[0] + ".conv")
                spread = float(np.sqrt(conv.in_channels * conv.kernel_size[0] ** 2))
            gamma = torch.randn(c, generator=g)
            gamma[::3] = -gamma[::3].abs()
            gamma[c // 2] = 0.0
            m.weight.copy_(gamma)
            m.bias.copy_(torch.randn(c, generator=g) * 0.3)
            m.running_mean.copy_(torch.randn(c, generator=g) * spread)
            m.running_var.copy_(torch.rand(c, generator=g) * spread**2 + 0.1)
            if ties and spread > 1.0:  # BN(dot) == 0 at an integer mean, where sign(0) = +1
                m.running_mean[::4] = m.running_mean[::4].round()
                m.bias[::4] = 0.0
    return model.eval()


def plain_model(seed: int = 0, in_channels: int = 3, image_size: int = 12,
                **arch: object) -> BinaryNet:
    torch.manual_seed(seed)
    quant = {k: arch.pop(k) for k in ("weight_quantizer", "input_quantizer") if k in arch}
    config = spaces.Config.from_dict({"arch": {"family": "plain", "width": 16, "depth": 2,
                                               **arch}, "quant": quant})
    model = spaces.build_model(config, in_channels, 10, image_size, mean=[0.1] * in_channels,
                               std=[0.9] * in_channels)
    return randomise(model, seed, ties=quant.get("weight_quantizer", "sign") == "sign")


def block_inputs(model: BinaryNet, x: torch.Tensor) -> dict[int, torch.Tensor]:
    """torch's binarised activation at each body block's input."""
    seen: dict[int, torch.Tensor] = {}
    run_hooked(model, x, [block.register_forward_pre_hook(
        lambda _m, args, i=i: seen.__setitem__(i, torch.where(args[0] >= 0, 1.0, -1.0)))
        for i, block in enumerate(model.body)])
    return seen


def assert_logits_close(got: np.ndarray, expected: torch.Tensor) -> None:
    ref = expected.detach().numpy()
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * scale)
    np.testing.assert_array_equal(got.argmax(1), ref.argmax(1))


MODEL_CASES = [
    {},
    {"pad_value": 1.0},
    {"kernel_size": 5, "depth": 3},
    {"blocks_per_stage": 2, "width": 33},
    {"weight_quantizer": "xnor", "input_quantizer": "ste"},
    {"width": 65, "depth": 1, "pad_value": 1.0, "input_quantizer": "approx_sign"},
]


@pytest.mark.parametrize("arch", MODEL_CASES, ids=lambda a: json.dumps(a, sort_keys=True))
def test_packed_bits_and_logits_match_torch(arch: dict) -> None:
    model = plain_model(seed=len(arch), **dict(arch))
    packed = kernels.compile(model, (3, 12, 12))
    x = torch.randn(16, 3, 12, 12, generator=torch.Generator().manual_seed(1)) * 2
    acts = packed.activations(x)
    expected_bits = block_inputs(model, x)
    names = [op.name for op in packed.ops]
    for i, bits in expected_bits.items():
        producer = names[names.index(f"body.{i}") - 1]  # the pack op or the previous block
        np.testing.assert_array_equal(acts[producer], bits.numpy(), err_msg=f"body.{i} input")
        assert np.unique(acts[producer]).size == 2  # both signs occur: the check has teeth
    with torch.no_grad():
        assert_logits_close(packed(x), model(x))


def test_pad_value_minus_one_and_float_head_ops() -> None:
    """A hand-built net: -1 padding, a stride-2 block and the other float stem/head ops."""
    torch.manual_seed(3)
    stem = nn.Sequential(spaces.Normalize([0.5], [0.25]), nn.Conv2d(1, 24, 3, padding=1),
                         nn.BatchNorm2d(24), nn.Hardtanh(), nn.MaxPool2d(3, 1, 1))
    blocks = [spaces.PlainBlock(24, 40, 3, pool=False, pad_value=-1.0),
              spaces.PlainBlock(40, 40, 3, pool=True, pad_value=-1.0)]
    blocks[0].conv.stride = (2, 2)
    body = nn.Sequential(*blocks)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.BatchNorm1d(160), nn.ReLU(),
                         nn.Dropout(0.5), nn.Linear(160, 7))
    model = randomise(BinaryNet(stem, body, head), 3)
    packed = kernels.compile(model, (1, 15, 15))
    assert [op.label for op in packed.ops if op.name.startswith("body")] == [
        "pack", "bconv3x3s2", "bconv3x3+maxpool"]
    x = torch.rand(8, 15, 15)  # (N, H, W): the channel axis is added
    acts, expected = packed.activations(x.numpy()), block_inputs(model, x[:, None])
    np.testing.assert_array_equal(acts["body.0"], expected[1].numpy())
    with torch.no_grad():
        assert_logits_close(packed(x.numpy()), model(x[:, None]))


def test_binary_linear_head() -> None:
    torch.manual_seed(4)
    model = plain_model(seed=4)
    model.head = nn.Sequential(nn.Flatten(), spaces.BinaryLinear(32 * 3 * 3, 10))
    packed = kernels.compile(model, (3, 12, 12))
    assert [op.kind for op in packed.ops[-3:]] == ["flatten", "pack", "binary_linear"]
    x = torch.randn(6, 3, 12, 12)
    with torch.no_grad():
        assert_logits_close(packed(x), model(x))


def test_threads_give_identical_logits() -> None:
    model = plain_model(seed=5)
    x = torch.randn(5, 3, 12, 12)
    one = kernels.compile(model, (3, 12, 12))(x)
    np.testing.assert_array_equal(kernels.compile(model, (3, 12, 12), threads=3)(x), one)


def test_compile_leaves_the_model_untouched_and_uses_eval_semantics() -> None:
    model = plain_model(seed=6).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    packed = kernels.compile(model, (3, 12, 12))
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    x = torch.randn(4, 3, 12, 12)
    with torch.no_grad():
        assert_logits_close(packed(x), model.eval()(x))


def test_layers_info_and_sizes() -> None:
    packed = kernels.compile(plain_model(seed=7), (3, 12, 12))
    info = {row.name: row for row in packed.layers_info()}
    block = info["body.0"]
    assert (block.input_shape, block.output_shape) == ((16, 12, 12), (16, 6, 6))
    assert block.output_encoding == "bits" and info["body.1"].output_encoding == "float"
    assert block.binary_macs == 12 * 12 * 16 * 16 * 9 and block.float_macs == 0
    # packed weight (16 x 3 x 3 x 1 words) + int32 threshold + int8 direction per channel
    assert block.packed_bytes == 16 * 9 * 8 + 16 * 4 + 16
    assert info["head.1"].float_macs == 32 * 3 * 3 * 10
    assert packed.packed_size_bytes == sum(row.packed_bytes for row in info.values())
    assert packed.output_shape == (10,)
    assert "body.1" in packed.summary()


def test_profile_layers_add_up_and_threads_are_restored() -> None:
    packed = kernels.compile(plain_model(seed=8), (3, 12, 12))
    threads_before = torch.get_num_threads()
    prof = packed.profile(threads=2, repeats=5, warmup=1, batch_size=4)
    assert torch.get_num_threads() == threads_before
    assert prof.isa == kernels.active_isa() and prof.threads == 2 and prof.batch_size == 4
    assert [layer.name for layer in prof.layers] == [op.name for op in packed.ops]
    assert all(layer.median_ms > 0 and layer.iqr_ms >= 0 for layer in prof.layers)
    # Medians of parts vs median of sums: close, but a shared CI machine adds noise, so the
    # sum may miss once or twice; a systematic gap (an untimed step) misses every time.
    for _ in range(3):
        prof = packed.profile(threads=1, repeats=30, warmup=3)
        layer_sum = sum(layer.median_ms for layer in prof.layers)
        if 0.85 * prof.total_ms <= layer_sum <= 1.15 * prof.total_ms:
            break
    else:
        pytest.fail(f"layer medians sum to {layer_sum:.4f} ms, total is {prof.total_ms:.4f} ms")
    assert prof.to_dict()["layers"][0]["name"] == "stem.0"
    assert "total" in prof.format()


def test_input_validation() -> None:
    packed = kernels.compile(plain_model(seed=9), (3, 12, 12))
    with pytest.raises(ValueError, match=r"\(N, 3, 12, 12\)"):
        packed(np.zeros((2, 3, 10, 12), np.float32))
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        packed([[0.0]])
    with pytest.raises(ValueError, match="threads"):
        packed.profile(threads=0)




def test_every_input_form_gives_the_same_logits() -> None:
    """A float32 contiguous tensor is taken as it comes; every other form is converted first.
    Inside inference mode or out of it, with a tensor that requires grad or not."""
    packed = kernels.compile(plain_model(seed=9), (3, 12, 12))
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    want = packed(x)
    forms = [x.numpy(), x.double(), x.clone().requires_grad_(), x.transpose(2, 3).contiguous()
             .transpose(2, 3), x.numpy().astype(np.float64), x[:, :, :, :]]
    for form in forms:
        np.testing.assert_array_equal(packed(form), want)
        with torch.inference_mode():
            np.testing.assert_array_equal(packed(form), want)
    with pytest.raises(ValueError, match=r"\(N, 3, 12, 12\)"):
        packed(torch.zeros(2, 3, 12, 13))
# -- files ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[kernels.PackedModel, Path]:
    packed = kernels.compile(plain_model(seed=10, pad_value=1.0), (3, 12, 12))
    path = tmp_path_factory.mktemp("packed") / "model.bnnx"
    packed.save(path)
    return packed, path


def test_save_load_roundtrip(saved: tuple[kernels.PackedModel, Path]) -> None:
    packed, path = saved
    loaded = kernels.load(path)
    x = torch.randn(7, 3, 12, 12)
    np.testing.assert_array_equal(loaded(x), packed(x))
    assert loaded.layers_info() == packed.layers_info()
    assert loaded.packed_size_bytes == packed.packed_size_bytes
    assert path.stat().st_size < packed.packed_size_bytes + 16384  # tensors + a JSON header


def test_file_is_safetensors_with_bnnx_metadata(saved: tuple[kernels.PackedModel, Path]) -> None:
    from safetensors import safe_open

    with safe_open(str(saved[1]), framework="np") as f:
        meta = f.metadata()
        graph = json.loads(meta["graph"])
        assert meta["format"] == "bnnx-packed" and meta["version"] == "1"
        assert graph["input_shape"] == [3, 12, 12]
        refs = [ref for op in graph["ops"] for ref in op["tensors"].values()]
        assert sorted(refs) == sorted(f.keys())


def rewrite(path: Path, target: Path, **changes: str) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        meta = {**f.metadata(), **changes}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    save_file(tensors, str(target), metadata=meta)


@pytest.mark.parametrize(
    "damage,message",
    [
        ("missing", "no such file"),
        ("garbage", "not a readable safetensors file"),
        ("truncated", "not a readable safetensors file"),
        ("format", "not a bnnx packed model"),
        ("version", "unsupported bnnx-packed version '99'"),
        ("graph", "not valid JSON"),
        ("kind", "unknown op kind 'warp_drive'"),
        ("shape", "weight shape"),
    ],
)
def test_bad_files_raise_packed_model_error(saved: tuple[kernels.PackedModel, Path],
                                            tmp_path: Path, damage: str, message: str) -> None:
    path = saved[1]
    bad = tmp_path / "bad.bnnx"
    graph = json.loads(_metadata(path)["graph"])
    if damage == "garbage":
        bad.write_bytes(b"\x00\x01not a safetensors file at all" * 10)
    elif damage == "truncated":
        bad.write_bytes(path.read_bytes()[:-100])
    elif damage == "format":
        rewrite(path, bad, format="onnx")
    elif damage == "version":
        rewrite(path, bad, version="99")
    elif damage == "graph":
        rewrite(path, bad, graph="{not json")
    elif damage == "kind":
        graph["ops"][0]["kind"] = "warp_drive"
        rewrite(path, bad, graph=json.dumps(graph))
    elif damage == "shape":
        block = next(op for op in graph["ops"] if op["kind"] == "plain_block")
        block["params"]["c_in"] = 200
        rewrite(path, bad, graph=json.dumps(graph))
    with pytest.raises(kernels.PackedModelError, match=message) as info:
        kernels.load(bad)
    assert str(bad) in str(info.value)
    assert isinstance(info.value, ValueError)


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        return f.metadata()


# -- unsupported layers ---------------------------------------------------------------------


def test_full_precision_input_is_rejected_with_its_path() -> None:
    model = plain_model(seed=11, depth=3)
    model.body[2].conv.input_quantizer = None
    with pytest.raises(kernels.UnsupportedLayerError,
                       match=r"body\.2\.conv: BinaryConv2d with input_quantizer=None"):
        kernels.compile(model, (3, 12, 12))


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda m: m.head.append(nn.Softmax(dim=1)), r"head\.2: Softmax is not supported"),
        (lambda m: setattr(m.body[0], "pool", nn.AvgPool2d(2)), r"body\.0\.pool: AvgPool2d"),
        (lambda m: setattr(m.body[1].conv, "weight_quantizer", None),
         r"body\.1\.conv: BinaryConv2d with weight_quantizer=None"),
        (lambda m: setattr(m.body[0].conv, "input_quantizer", nn.Tanh()),
         r"body\.0\.conv: input quantizer Tanh is not a plain sign"),
        (lambda m: delattr(m, "stem"), "has no 'stem' module"),
    ],
)
def test_unsupported_layers_raise_clear_errors(mutate, message: str) -> None:
    model = plain_model(seed=12)
    mutate(model)
    with pytest.raises(kernels.UnsupportedLayerError, match=message):
        kernels.compile(model, (3, 12, 12))
