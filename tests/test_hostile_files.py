"""Hostile and damaged files: a model file decides no resources and allocates nothing it has not
checked; flipped tensor bytes, mixed export folders and bad inputs each give one clear error,
and nothing on disk changes."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file
from torch import nn

import app
import kernels
import spaces
from kernels.errors import InputError
from kernels.graph import MAX_MAP_ELEMENTS
from search.export import write_model_folder
from spaces.models import BinaryNet

SHAPE = (1, 12, 12)


def small_net(seed: int = 0) -> BinaryNet:
    """Every float stem and head op kind around two packed blocks, one with a packed max-pool."""
    torch.manual_seed(seed)
    stem = nn.Sequential(spaces.Normalize([0.5], [0.25]), nn.Conv2d(1, 16, 3, padding=1),
                         nn.BatchNorm2d(16), nn.Hardtanh(), nn.MaxPool2d(3, 1, 1))
    body = nn.Sequential(spaces.PlainBlock(16, 32, 3, pool=True),
                         spaces.PlainBlock(32, 32, 3, pool=False))
    head = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.BatchNorm1d(128), nn.ReLU(),
                         nn.Linear(128, 5))
    return BinaryNet(stem, body, head).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[kernels.PackedModel, Path]:
    packed = kernels.compile(small_net(), SHAPE)
    path = tmp_path_factory.mktemp("hostile") / "model.bnnx"
    packed.save(path)
    return packed, path


def metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="np") as f:
        return f.metadata()


def rewrite(path: Path, target: Path, edit: Callable[[dict], object] | None = None,
            **changes: str) -> Path:
    """`path` with its graph passed through `edit` and metadata `changes` (tensors as they were,
    so their checksums still hold)."""
    with safe_open(str(path), framework="np") as f:
        meta = {**f.metadata(), **changes}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    if edit is not None:
        graph = json.loads(meta["graph"])
        edit(graph)
        meta["graph"] = json.dumps(graph)
    save_file(tensors, str(target), metadata=meta)
    return target


def op(graph: dict, name: str) -> dict:
    return next(entry for entry in graph["ops"] if entry["name"] == name)


def predict(capsys: pytest.CaptureFixture[str], model: Path, x: Path) -> tuple[int, str, str]:
    code = app.main(["predict", "--model", str(model), "--input", str(x)])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *parts: str) -> None:
    assert code == 2 and out == ""
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    for part in parts:
        assert part in err, err


# -- the file decides no resources -------------------------------------------------------------


@pytest.mark.parametrize("threads", [3000, 2**40])
def test_threads_are_the_callers_not_the_files(saved: tuple[kernels.PackedModel, Path],
                                               tmp_path: Path, threads: int) -> None:
    packed, path = saved
    bad = rewrite(path, tmp_path / "threads.bnnx", lambda g: g.update(threads=threads))
    loaded = kernels.load(bad)
    assert loaded.threads == 1  # the file's value is ignored
    x = torch.randn(3, *SHAPE)
    np.testing.assert_array_equal(loaded(x), packed(x))
    assert kernels.load(bad, threads=10**6).threads == (os.cpu_count() or 1)
    assert "threads" not in json.loads(metadata(path)["graph"])  # no longer written
    with pytest.raises(ValueError, match="threads must be a positive int") as info:
        kernels.load(bad, threads=0)
    assert not isinstance(info.value, kernels.PackedModelError)  # the caller's mistake


def _set(name: str, key: str, value: object) -> Callable[[dict], None]:
    def edit(graph: dict) -> None:
        params = op(graph, name)["params"]
        if "." in key:  # a nested parameter, e.g. "pool.kernel_size"
            outer, key_ = key.split(".")
            params[outer][key_] = value
        else:
            params[key] = value

    return edit


@pytest.mark.parametrize(
    "edit, parts",
    [
        (_set("body.0", "padding", [10**6, 10**6]), ["body.0", "padding", "at most [2, 2]"]),
        (_set("body.0", "stride", [2**40, 1]), ["body.0", "'stride'", f"[1, {MAX_MAP_ELEMENTS}]"]),
        (_set("body.0", "pool.kernel_size", [10**6, 10**6]), ["body.0", "pool kernel_size"]),
        (_set("stem.1", "padding", [500, 500]), ["stem.1", "padding", "at most [2, 2]"]),
        (_set("stem.1", "dilation", [4096, 4096]), ["stem.1", "dilation [4096, 4096]"]),
        (_set("stem.1", "groups", 0), ["stem.1", "groups 0"]),
        (_set("stem.4", "padding", [2, 2]), ["stem.4", "padding", "half the kernel"]),
        (_set("head.0", "output_size", [10**5, 10**5]), ["head.0", "output shape"]),
        (_set("head.1", "start_dim", 7), ["head.1", "'start_dim' 7"]),
        (_set("head.1", "start_dim", 0), ["head.1", "'start_dim' 0", "axes 1 to 3"]),
        (_set("stem.2", "eps", 10**400), ["stem.2", "'eps'", "float"]),
        (lambda g: g.update(input_shape=[1, 10**5, 10**5]), ["input shape", "elements"]),
    ],
    ids=["block-padding", "block-stride", "pool-kernel", "conv-padding", "conv-dilation",
         "conv-groups", "maxpool-padding", "adaptive-size", "flatten-dim", "flatten-batch",
         "bn-eps", "input-shape"],
)
def test_hostile_geometry_names_the_op_and_field(saved: tuple[kernels.PackedModel, Path],
                                                 tmp_path: Path, edit: Callable[[dict], None],
                                                 parts: list[str]) -> None:
    bad = rewrite(saved[1], tmp_path / "bad.bnnx", edit)
    with pytest.raises(kernels.PackedModelError) as info:
        kernels.load(bad)
    message = str(info.value)
    assert str(bad) in message and len(message.splitlines()) == 1
    for part in parts:
        assert part in message


# -- damaged tensor data ------------------------------------------------------------------------


def flip_byte(path: Path, target: Path, tensor: str) -> Path:
    """A copy of `path` with one byte in the middle of `tensor`'s data inverted."""
    data = bytearray(path.read_bytes())
    (size,) = struct.unpack("<Q", data[:8])
    begin, end = json.loads(data[8:8 + size])[tensor]["data_offsets"]
    data[8 + size + (begin + end) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


def test_every_tensor_has_a_checksum(saved: tuple[kernels.PackedModel, Path]) -> None:
    path = saved[1]
    sums = json.loads(metadata(path)["sha256"])
    with safe_open(str(path), framework="np") as f:
        assert sorted(sums) == sorted(f.keys())
    assert all(len(digest) == 64 for digest in sums.values())


def test_flipped_tensor_bytes_name_the_tensor(saved: tuple[kernels.PackedModel, Path],
                                              tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = saved[1]
    graph = json.loads(metadata(path)["graph"])
    tensor = op(graph, "stem.1")["tensors"]["weight"]  # a float weight: the damage would run
    bad = flip_byte(path, tmp_path / "model.bnnx", tensor)
    with pytest.raises(kernels.PackedModelError, match=rf"tensor '{tensor}' does not match"):
        kernels.load(bad)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 12, 12), np.float32))
    assert_one_line_error(*predict(capsys, bad, x), str(bad), repr(tensor))
    # A checksum list that misses a tensor is refused too.
    sums = json.loads(metadata(path)["sha256"])
    sums.pop(tensor)
    partial = rewrite(path, tmp_path / "partial.bnnx", sha256=json.dumps(sums))
    with pytest.raises(kernels.PackedModelError, match="one checksum per tensor"):
        kernels.load(partial)


def test_files_written_before_checksums_still_load(saved: tuple[kernels.PackedModel, Path],
                                                   tmp_path: Path) -> None:
    packed, path = saved
    meta = metadata(path)
    with safe_open(str(path), framework="np") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    old = tmp_path / "old.bnnx"
    save_file(tensors, str(old), metadata={k: v for k, v in meta.items() if k != "sha256"})
    x = torch.randn(2, *SHAPE)
    np.testing.assert_array_equal(kernels.load(old)(x), packed(x))


# -- export folders whose parts disagree --------------------------------------------------------


def export(out: Path, width: int, seed: int, image_size: int = 8) -> Path:
    config = spaces.Config.from_dict({"arch": {"family": "plain", "width": width, "depth": 1}})
    meta = {"dataset": "digits", "in_channels": 1, "num_classes": 10, "image_size": image_size,
            "mean": [0.5], "std": [0.25]}
    torch.manual_seed(seed)
    model = spaces.build_model(config, 1, 10, image_size, meta["mean"], meta["std"]).eval()
    return write_model_folder(out, config, model, meta, {}, "test model")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("folders")
    x = tmp / "x.npy"
    np.save(x, np.random.default_rng(0).random((4, 8, 8), dtype=np.float32))
    return {"a": export(tmp / "a", 8, 0), "b": export(tmp / "b", 16, 1),
            "wide": export(tmp / "wide", 8, 2, image_size=12), "x": x}


def mixed(folders: dict[str, Path], tmp_path: Path, name: str, donor: str) -> Path:
    """Folder a with `name` taken from folder `donor`."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in folders["a"].iterdir():
        (folder / p.name).write_bytes((folders[donor] / name if p.name == name else p).read_bytes())
    return folder


def test_a_whole_folder_predicts(folders: dict[str, Path],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = predict(capsys, folders["a"], folders["x"])
    assert code == 0, err
    assert len(json.loads(out)["predictions"]) == 4


@pytest.mark.parametrize("donor, parts", [
    ("b", ["weights.safetensors", "model.bnnx", "differ in stem.1.weight", "mixes two models"]),
    ("wide", ["weights.safetensors", "1x12x12 inputs", "1x8x8 inputs", "mixes two models"]),
])
def test_weights_of_another_model_are_refused(folders: dict[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str], donor: str,
                                              parts: list[str]) -> None:
    folder = mixed(folders, tmp_path, "weights.safetensors", donor)
    before = snapshot(folder)
    assert_one_line_error(*predict(capsys, folder, folders["x"]), *parts)
    assert snapshot(folder) == before


def test_config_of_another_model_is_refused(folders: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    from search import torch_model

    folder = mixed(folders, tmp_path, "config.json", "b")
    # The digest export records of the config.json it wrote (added here if it does not yet).
    digest = hashlib.sha256((folders["a"] / "config.json").read_bytes()).hexdigest()
    weights = folder / "weights.safetensors"
    with safe_open(str(weights), framework="np") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        meta = {**f.metadata(), "bnnx_config_sha256": digest}
    save_file(tensors, str(weights), metadata=meta)
    before = snapshot(folder)
    assert_one_line_error(*predict(capsys, folder, folders["x"]), "config.json", "sha256")
    with pytest.raises(ValueError, match="config.json is not the configuration"):
        torch_model(folder)
    assert snapshot(folder) == before
    (folder / "config.json").write_bytes((folders["a"] / "config.json").read_bytes())
    code, _, err = predict(capsys, folder, folders["x"])
    assert code == 0, err


# -- inputs predict cannot take ----------------------------------------------------------------


def _with_bad(values: list[float]) -> np.ndarray:
    x = np.zeros((2, 12, 12), np.float32)
    x.flat[: len(values)] = values
    return x


@pytest.mark.parametrize(
    "array, parts",
    [
        (_with_bad([np.nan, np.nan, np.nan]), ["3 NaN or infinite values"]),
        (_with_bad([np.inf, -np.inf]), ["2 NaN or infinite values"]),
        (np.full((2, 12, 12), np.nan), ["288 NaN or infinite values"]),
        (np.zeros((2, 12, 12), bool), ["dtype bool", "integer or floating-point"]),
        (np.zeros((2, 12, 12), np.complex64), ["dtype complex64", "integer or floating-point"]),
        (np.full((2, 12, 12), "abc"), ["dtype <U3", "integer or floating-point"]),
        (np.zeros((2, 12, 12), [("a", "<f4"), ("b", "<f4")]),
         ["dtype [('a', '<f4'), ('b', '<f4')]", "integer or floating-point"]),
        (None, [".npz archive", "one .npy array"]),
    ],
    ids=["nan", "inf", "all-nan", "bool", "complex", "string", "structured", "npz"],
)
def test_predict_refuses_bad_input(saved: tuple[kernels.PackedModel, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str], array: np.ndarray | None,
                                   parts: list[str]) -> None:
    x = tmp_path / ("x.npz" if array is None else "x.npy")
    if array is None:
        np.savez(x, images=np.zeros((2, 12, 12), np.float32))
    else:
        np.save(x, array)
    before = x.read_bytes()
    assert_one_line_error(*predict(capsys, saved[1], x), str(x), *parts)
    assert x.read_bytes() == before


def test_integer_images_predict_and_bad_dtypes_are_input_errors(
        saved: tuple[kernels.PackedModel, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    packed, path = saved
    x = tmp_path / "x.npy"
    np.save(x, np.arange(2 * 12 * 12, dtype=np.uint8).reshape(2, 12, 12))
    code, out, err = predict(capsys, path, x)
    assert code == 0, err
    assert len(json.loads(out)["predictions"]) == 2
    for bad in (np.zeros((1, 12, 12), bool), torch.zeros(1, 12, 12, dtype=torch.complex64)):
        with pytest.raises(InputError, match="integer or floating-point") as info:
            packed(bad)
        assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
