"""Deploy formats: ONNX and OpenVINO IR exports agree with the packed model, from the library,
the CLI and the explorer's export; bad formats, missing packages and unrepresentable layers fail
in one clear line."""

import dataclasses
import importlib.util
import json
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

import app
import kernels
from kernels.to_onnx import ExportSign, to_onnx
from search import deploy
from search.datasets import get_dataset
from search.deploy import DeployError, RuntimeModel, chosen_formats, validation_images
from search.export import ModelFolderError, write_model_folder
from search.settings import SearchSettings
from search.study import run_search
from search.training import train
from spaces import Config, build_model
from spaces.quantizers import SteSign

HAS_OPENVINO = importlib.util.find_spec("kernels.to_openvino") is not None
needs_openvino = pytest.mark.skipif(
    not HAS_OPENVINO, reason="kernels/to_openvino.py (the OpenVINO exporter) is not in this "
    "checkout yet")
FORMATS = ["onnx", pytest.param("openvino", marks=needs_openvino)]
FILES = {"onnx": "model.onnx", "openvino": "model.xml"}
SMALL = {"width": 8, "depth": 2}
# Every family with a float and a binary stem/head, over the quantizers and block options.
FAMILIES = {
    "plain-fp": ({"family": "plain"}, {}),
    "plain-binary": ({"family": "plain", "stem": "binary", "head": "binary",
                      "pool_order": "pool_bn"}, {"weight_quantizer": "xnor"}),
    "resnet-fp": ({"family": "resnet", "activation": "hardtanh", "downsample": "strided_conv"},
                  {"weight_quantizer": "dorefa", "learned_scale": True}),
    "resnet-binary": ({"family": "resnet", "stem": "binary", "head": "binary"},
                      {"input_quantizer": "ste"}),
    "bireal-fp": ({"family": "bireal", "activation": "prelu"},
                  {"input_quantizer": "ede", "weight_quantizer": "libra_pb"}),
    "bireal-binary": ({"family": "bireal", "stem": "binary", "head": "binary", "pad_value": 1.0},
                      {"input_quantizer": "approx_sign"}),
    "reactnet-fp": ({"family": "reactnet", "activation": "rprelu", "stem_layout": "imagenet"},
                    {"input_quantizer": "rsign", "weight_quantizer": "xnor"}),
    "reactnet-binary": ({"family": "reactnet", "stem": "binary", "head": "binary"},
                        {"input_quantizer": "swish_sign"}),
}


def config(name: str) -> Config:
    arch, quant = FAMILIES[name]
    return Config.from_dict({"arch": {**SMALL, **arch}, "quant": quant, "train": {"epochs": 1}})


@pytest.fixture(scope="module")
def digits():
    return get_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits):
    """family name -> its model trained one epoch on 128 digits (two batches), cached."""
    few = dataclasses.replace(digits, x_train=digits.x_train[:128],
                              y_train=digits.y_train[:128])
    models: dict[str, torch.nn.Module] = {}

    def get(name: str) -> torch.nn.Module:
        if name not in models:
            models[name] = train(config(name), few).model
        return models[name]

    return get


def untrained(name: str) -> torch.nn.Module:
    """A family's model with BatchNorm statistics and RSign thresholds far from their init."""
    torch.manual_seed(0)
    model = build_model(config(name), 1, 10, 8, [4.9], [6.0]).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-2, 2)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(-1, 1)
            if hasattr(m, "alpha"):
                m.alpha.uniform_(-0.5, 0.5)
    return model


META = {"dataset": "digits", "in_channels": 1, "num_classes": 10, "image_size": 8,
        "mean": [4.9], "std": [6.0]}


def export(out: Path, model: torch.nn.Module, formats: tuple[str, ...], meta=None) -> Path:
    return write_model_folder(out, config("plain-fp"), model, meta or META, {"val_accuracy": 0.5},
                              "t", formats=formats)


# -- the ONNX graph ---------------------------------------------------------------------------


def test_onnx_graph_is_signs_and_convs_on_pm1_weights_with_a_dynamic_batch():
    model = untrained("plain-binary")
    proto = to_onnx(model, (1, 8, 8))
    onnx.checker.check_model(proto)
    assert [o.version for o in proto.opset_import if o.domain == ""] == [21]
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert (inp.name, out.name) == ("input", "logits")
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 8, 8]
    ops = [n.op_type for n in proto.graph.node]
    assert {"GreaterOrEqual", "Where", "Conv"} <= set(ops)
    weights = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    body = [weights[n.input[1]] for n in proto.graph.node if n.op_type == "Conv"][:-1]
    assert body and all(set(np.unique(w)) == {-1.0, 1.0} for w in body)  # xnor's scale: a Mul
    session = ort.InferenceSession(proto.SerializeToString())
    # A zero image normalised by mean 0: the binary stem's sign sees exact zeros (sign(0) = +1).
    zero = build_model(config("plain-binary"), 1, 10, 8).eval()
    zero.load_state_dict({k: v for k, v in model.state_dict().items()
                          if not k.startswith("stem.0.")}, strict=False)
    zero_session = ort.InferenceSession(to_onnx(zero, (1, 8, 8)).SerializeToString())
    x = np.zeros((3, 1, 8, 8), np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(zero_session.run(None, {"input": x})[0],
                                   zero(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)
    for n in (1, 5):  # any batch
        x = np.random.default_rng(n).uniform(0, 16, (n, 1, 8, 8)).astype(np.float32)
        np.testing.assert_allclose(session.run(None, {"input": x})[0],
                                   kernels.compile(model, (1, 8, 8))(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_onnx_of_every_family_matches_the_packed_model(name):
    model = untrained(name)
    session = ort.InferenceSession(to_onnx(model, (1, 8, 8)).SerializeToString())
    x = np.random.default_rng(0).uniform(0, 16, (64, 1, 8, 8)).astype(np.float32)
    ref = kernels.compile(model, (1, 8, 8))(x)
    got = session.run(None, {"input": x})[0]
    assert (got.argmax(1) == ref.argmax(1)).all()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(ref).max()))
    assert not any(isinstance(m, ExportSign) for m in model.modules())  # the model is untouched


class OwnSign(SteSign):
    """A quantizer bnnx does not know: its inference function is its own forward."""

    name = "own"


def test_a_quantizer_the_export_does_not_know_is_refused_by_name():
    model = untrained("plain-fp")
    model.body[1].conv.input_quantizer = OwnSign()
    with pytest.raises(kernels.UnsupportedLayerError, match=r"^body\.1\.conv\.input_quantizer: "
                       r"OwnSign is not a bnnx quantizer"):
        to_onnx(model, (1, 8, 8))


# -- formats, packages and refusals -----------------------------------------------------------


def test_format_lists_are_checked_and_bnnx_always_comes_along():
    assert chosen_formats(["onnx"]) == ("bnnx", "onnx")
    assert chosen_formats("onnx,bnnx".split(",")) == ("bnnx", "onnx")
    with pytest.raises(ValueError, match=r"unknown --format 'tflite'; allowed: bnnx, openvino, "
                       "onnx"):
        chosen_formats(["bnnx", "tflite"])


def test_a_missing_package_names_the_deploy_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(DeployError, match=r"--format onnx needs onnxruntime, the deploy extra: "
                       r"pip install -e '\.\[deploy\]'"):
        chosen_formats(["onnx"])


def test_bad_format_on_the_cli_is_one_line(tmp_path, capsys):
    code = app.main(["export", "--storage", str(tmp_path / "none.journal"), "--study", "s",
                     "--out", str(tmp_path / "m"), "--format", "bnnx,tflite"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["error: unknown --format 'tflite'; allowed: bnnx, openvino, onnx "
                                 "(comma-separated)"]


def test_a_format_that_disagrees_is_refused_and_nothing_is_left(tmp_path, monkeypatch):
    monkeypatch.setattr(deploy, "RTOL", -1.0)  # no logit can be within a negative tolerance
    with pytest.raises(DeployError, match=r"^--format onnx: 0 of 256 validation predictions "
                       r"differ .* not exported$"):
        export(tmp_path / "m", untrained("plain-fp"), ("bnnx", "onnx"))
    assert list(tmp_path.iterdir()) == []


def test_export_folder_with_onnx_is_a_model_folder_that_force_replaces(tmp_path):
    out = export(tmp_path / "m", untrained("plain-fp"), ("bnnx", "onnx"))
    assert {p.name for p in out.iterdir()} == {"config.json", "weights.safetensors", "model.bnnx",
                                               "README.md", "model.onnx"}
    with pytest.raises(ModelFolderError, match="--force"):
        export(out, untrained("plain-fp"), ("bnnx",))
    write_model_folder(out, config("plain-fp"), untrained("plain-fp"), META, {}, "t", force=True)
    assert not (out / "model.onnx").exists()  # replaced whole: no stale format left behind


def test_runtime_model_takes_predict_input_and_says_what_shape_it_needs(tmp_path):
    out = export(tmp_path / "m", untrained("plain-fp"), ("bnnx", "onnx"))
    runtime = RuntimeModel(out / "model.onnx")
    x = np.random.default_rng(0).integers(0, 17, (4, 8, 8))  # (N, H, W) ints, as predict reads
    assert runtime(x).shape == (4, 10) and runtime(x).dtype == np.float32
    with pytest.raises(ValueError, match=r"input must have shape \(N, 1, 8, 8\) or \(N, 8, 8\)"):
        runtime(np.zeros((2, 1, 9, 9), np.float32))
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(DeployError, match="cannot be loaded by ONNX Runtime"):
        RuntimeModel(tmp_path / "bad.onnx")


# -- trained models of every family, in both runtimes ------------------------------------------


def _runtime_logits(fmt: str, path: Path, x: np.ndarray) -> np.ndarray:
    """The file run by its own runtime directly (not through search.deploy)."""
    if fmt == "onnx":
        return ort.InferenceSession(str(path)).run(None, {"input": x})[0]
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape([len(x), *x.shape[1:]])
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled(x)[0]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", FAMILIES)
def test_trained_family_exports_reloads_and_agrees_with_the_packed_model(
        name, fmt, trained, digits, tmp_path):
    out = write_model_folder(tmp_path / "m", config(name), trained(name), digits.meta(),
                             {"val_accuracy": 0.5}, "t", formats=("bnnx", fmt))
    x = validation_images(digits.meta())
    packed = kernels.load(str(out / "model.bnnx"))
    got = _runtime_logits(fmt, out / FILES[fmt], x)
    assert (got.argmax(1) == packed(x).argmax(1)).all()
    card = (out / "README.md").read_text()
    runtime = deploy.RUNTIME_NAMES[fmt]
    assert f"| {runtime} | `{FILES[fmt]}` | 0 of {len(x)} |" in card
    assert "## Run it" in card and "### bnnx" in card
    assert {"onnx": "### ONNX Runtime", "openvino": "### OpenVINO"}[fmt] in card


# -- the CLI and the explorer ----------------------------------------------------------------


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One real 1-trial, 1-epoch digits study."""
    tmp = tmp_path_factory.mktemp("study")
    spec = str(tmp / "study.journal")
    run_search(spec, "d", SearchSettings(trials=1, epochs=1, seed=1), workers=1)
    return spec, tmp


@pytest.mark.slow
def test_cli_export_with_formats_then_predict_with_each_file(study, tmp_path, capsys):
    spec, _ = study
    formats = "bnnx,onnx,openvino" if HAS_OPENVINO else "bnnx,onnx"
    out = tmp_path / "model"
    assert app.main(["export", "--storage", spec, "--study", "d", "--out", str(out),
                     "--format", formats]) == 0
    capsys.readouterr()
    card = (out / "README.md").read_text()
    assert "## Run it" in card and "### bnnx" in card and "### ONNX Runtime" in card
    assert "## Formats checked against the packed model" in card
    assert "| ONNX Runtime | `model.onnx` | 0 of 256 |" in card
    assert "float simulation" in card
    images = tmp_path / "x.npy"
    np.save(images, get_dataset("digits").x_test[:40, 0])  # (N, H, W), as a user has them
    models = [out, out / "model.onnx"] + ([out / "model.xml"] if HAS_OPENVINO else [])
    answers = []
    for model in models:
        assert app.main(["predict", "--model", str(model), "--input", str(images)]) == 0
        answers.append(json.loads(capsys.readouterr().out)["predictions"])
    assert len(answers[0]) == 40 and all(a == answers[0] for a in answers)


@pytest.mark.slow
def test_explorer_export_with_formats_zips_them(study, tmp_path):
    from explorer.export import export_zip

    spec, _ = study
    archive = export_zip(spec, "d", 0, tmp_path, formats=["bnnx", "onnx"])
    with zipfile.ZipFile(archive) as z:
        names = sorted(n for n in z.namelist() if not n.endswith("/"))
    assert names == ["trial-0/README.md", "trial-0/config.json", "trial-0/model.bnnx",
                     "trial-0/model.onnx", "trial-0/weights.safetensors"]


# -- the model card ---------------------------------------------------------------------------


def _commands(card: str) -> list[list[str]]:
    """Every `bnnx ...` line of the card's code blocks, split as a shell would."""
    import shlex

    return [shlex.split(line)[1:] for line in card.splitlines() if line.startswith("bnnx ")]


def test_model_card_names_the_machine_and_the_commands_that_reproduce_it(tmp_path):
    from search.export import CardOrigin

    settings = SearchSettings(dataset="digits", space="survey", trials=7, epochs=2, seed=3,
                              sampler="nsga2", objectives=["acc", "latency", "size"],
                              max_latency_ms=0.5, space_knobs={"arch.width": {"choices": [8]}})
    origin = CardOrigin(measured_on={"cpu": "Test CPU 9000", "isa": "avx2", "threads": 1},
                        isa="avx512vpopcnt", study="s", trial=4, settings=settings)
    metrics = {"val_accuracy": 0.5, "latency_ms": 0.0123, "latency_iqr_ms": 0.001,
               "train_threads": 2}
    out = write_model_folder(tmp_path / "m", config("plain-fp"), untrained("plain-fp"), META,
                             metrics, "t", origin=origin)
    card = (out / "README.md").read_text()
    assert "## Metrics" in card and "| val_accuracy | 0.5 |" in card
    assert "0.0123 ms per image (IQR 0.001 ms)" in card
    assert "- CPU model: Test CPU 9000" in card and "- ISA path of the kernels: avx512vpopcnt" \
        in card and "- threads: 1" in card
    assert "trial 4 of study `s`" in card and "in the `survey` space" in card
    assert '"arch.width"' in card  # the space's knobs, for a space file nobody else has
    train_args, search_args, predict_args = (app.build_parser().parse_args(c)
                                             for c in _commands(card)[:3])
    assert (train_args.func, train_args.config, train_args.dataset, train_args.threads) == (
        app.cmd_train, "config.json", "digits", 2)
    assert predict_args.func == app.cmd_predict  # the shell predict example
    assert search_args.func == app.cmd_search
    assert (search_args.space, search_args.trials, search_args.epochs, search_args.seed,
            search_args.sampler, search_args.objectives, search_args.max_latency_ms) == (
        "survey", 7, 2, 3, "nsga2", "acc,latency,size", 0.5)
    assert 'kernels.load("model.bnnx"' in card and 'np.load("images.npy")' in card  # Python

    bare = write_model_folder(tmp_path / "b", config("plain-fp"), untrained("plain-fp"), META,
                              {"val_accuracy": 0.5}, "t")  # `bnnx train`: no search behind it
    card = (bare / "README.md").read_text()
    assert "- CPU model: not recorded" in card and "Found as trial" not in card
    assert _commands(card)[0][:2] == ["train", "--config"]
