"""Dataset readers on tiny files the tests write: IDX, CIFAR batches (incl. a hostile pickle),
image folders; splits, dtypes, augmentation, and the one-line error when files are missing."""

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from search.data.augment import PAD, crop_flip
from search.data.files import MissingDataError
from search.data.idx import read_idx
from search.datasets import VAL_FRACTION, get_dataset

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    """BNNX_DATA and HOME in tmp, downloads off: only files the test writes are found."""
    monkeypatch.setenv("BNNX_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BNNX_OFFLINE", "1")
    return tmp_path / "data"


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def tiny_idx(folder: Path, n_train: int = 100, n_test: int = 20) -> tuple:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10,
              rng.integers(0, 256, (n_test, 28, 28)), np.arange(n_test) % 10)
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    for i, (name, a) in enumerate(zip(names, arrays, strict=True)):
        write_idx(folder / name, a, gz=i % 2 == 0)  # gzipped and plain files mix
    return arrays


def test_idx_dataset_keeps_uint8_official_test_and_a_stratified_val_split(data_home):
    x, y, x_test, y_test = tiny_idx(data_home / "mnist")
    d = get_dataset("mnist")
    assert d.x_train.dtype == np.uint8 and d.x_train.shape[1:] == (1, 28, 28)
    assert len(d.y_val) == round(len(y) * VAL_FRACTION) and len(d.y_train) + len(d.y_val) == 100
    assert sorted(d.y_val.tolist()) == list(range(10))  # one per class: stratified
    assert np.array_equal(d.x_test[:, 0], x_test) and np.array_equal(d.y_test, y_test)
    again = get_dataset("mnist")
    assert np.array_equal(again.y_val, d.y_val) and np.array_equal(again.x_train, d.x_train)
    assert not d.augment and d.meta()["image_size"] == 28
    assert d.mean[0] == pytest.approx(float(d.x_train.mean()))
    assert d.std[0] == pytest.approx(float(d.x_train.std()), rel=1e-6)


def test_idx_reader_rejects_foreign_and_truncated_files(tmp_path):
    bad = tmp_path / "x-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x0d\x01" + bytes(8))
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        read_idx(bad)
    write_idx(bad, np.zeros((2, 3, 3)), gz=False)
    bad.write_bytes(bad.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"x-idx3-ubyte: size does not match .*\(2, 3, 3\)"):
        read_idx(bad)


def test_missing_offline_dataset_is_one_clear_line(data_home):
    with pytest.raises(MissingDataError) as err:
        get_dataset("kmnist")
    msg = str(err.value)
    assert "\n" not in msg and str(data_home / "kmnist") in msg and "BNNX_OFFLINE" in msg
    assert "t10k-labels-idx1-ubyte.gz" in msg and "codh.rois.ac.jp" in msg
    with pytest.raises(ValueError, match="unknown dataset 'svhn'; allowed: digits, fashion-mnist"):
        get_dataset("svhn")


def write_cifar(folder: Path, name: str, n: int, label_key: bytes, classes: int) -> None:
    rng = np.random.default_rng(len(name))
    batch = {b"batch_label": b"x", label_key: [i % classes for i in range(n)],
             b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), b"filenames": []}
    (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def test_cifar10_batches_parse_safely_with_augmentation_on(data_home):
    folder = data_home / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        write_cifar(folder, f"data_batch_{i}", 20, b"labels", 10)
    write_cifar(folder, "test_batch", 10, b"labels", 10)
    d = get_dataset("cifar10")
    assert d.x_train.dtype == np.uint8 and d.x_train.shape == (90, 3, 32, 32)
    assert d.x_val.shape == (10, 3, 32, 32) and d.x_test.shape == (10, 3, 32, 32)
    assert d.augment and d.num_classes == 10 and len(d.mean) == 3


def test_cifar100_uses_fine_labels(data_home):
    folder = data_home / "cifar100"
    folder.mkdir(parents=True)
    write_cifar(folder, "train", 1000, b"fine_labels", 100)
    write_cifar(folder, "test", 100, b"fine_labels", 100)
    d = get_dataset("cifar100")
    assert d.num_classes == 100 and len(d.y_train) == 900 and set(d.y_test) == set(range(100))


class _Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_cifar_pickle_that_runs_code_is_refused_without_running_it(data_home, tmp_path):
    folder = data_home / "cifar100"
    folder.mkdir(parents=True)
    owned = tmp_path / "owned"
    (folder / "train").write_bytes(pickle.dumps({"data": _Exploit(owned)}, protocol=2))
    write_cifar(folder, "test", 10, b"fine_labels", 100)
    with pytest.raises(ValueError, match=r"cifar100/train: not a CIFAR python batch "
                                         r"\(refused global (posix|nt)\.system\)"):
        get_dataset("cifar100")
    assert not owned.exists()
    (folder / "train").write_bytes(pickle.dumps({"data": np.zeros((2, 5), np.uint8)}))
    with pytest.raises(ValueError, match="'data' must be a uint8"):
        get_dataset("cifar100")


def test_image_folder_resizes_to_the_smallest_side(tmp_path):
    from PIL import Image

    for cls, size in (("cat", (12, 10)), ("dog", (16, 16))):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(10):
            Image.new("L", size, color=20 * i).save(tmp_path / "imgs" / cls / f"{i}.png")
    d = get_dataset(f"folder:{tmp_path / 'imgs'}")
    assert d.x_train.shape[1:] == (1, 10, 10) and d.x_train.dtype == np.uint8
    assert d.classes == ["cat", "dog"] and d.num_classes == 2
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 20
    Image.new("RGB", (10, 10), "red").save(tmp_path / "imgs" / "dog" / "red.png")
    assert get_dataset(f"folder:{tmp_path / 'imgs'}").in_channels == 3
    (tmp_path / "imgs" / "dog" / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="notes.txt: not an image Pillow can read"):
        get_dataset(f"folder:{tmp_path / 'imgs'}")
    with pytest.raises(ValueError, match="needs one sub-folder per class"):
        get_dataset(f"folder:{tmp_path / 'imgs' / 'cat'}")


def test_crop_flip_returns_padded_crops_or_their_mirror():
    x = torch.arange(2 * 3 * 6 * 5, dtype=torch.float32).view(2, 3, 6, 5) + 1
    out = crop_flip(x, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (PAD,) * 4)
    for i in range(2):
        crops = [padded[i, :, a : a + 6, b : b + 5] for a in range(9) for b in range(9)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(2)) for c in crops)


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian package dataset-fashion-mnist "
                    "not installed (CI installs it)")
def test_real_fashion_mnist_from_the_debian_package(data_home):
    d = get_dataset("fashion-mnist")
    assert d.x_train.dtype == np.uint8
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (54000, 6000, 10000)
    assert np.bincount(d.y_test).tolist() == [1000] * 10
    assert np.bincount(d.y_val).tolist() == [600] * 10


def test_available_offline_says_which_datasets_load_without_a_download(data_home, tmp_path):
    from search.datasets import available_offline

    assert available_offline("digits")  # bundled with scikit-learn
    assert not available_offline("mnist") and not available_offline("cifar10")
    tiny_idx(data_home / "mnist")
    folder = data_home / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        write_cifar(folder, f"data_batch_{i}", 20, b"labels", 10)
    assert not available_offline("cifar10")  # the test batch is missing
    write_cifar(folder, "test_batch", 10, b"labels", 10)
    assert available_offline("mnist") and available_offline("cifar10")
    assert not available_offline("kmnist") and not available_offline("nope")
    assert available_offline(f"folder:{tmp_path}")
    assert not available_offline(f"folder:{tmp_path / 'missing'}")


def test_train_subset_is_stratified_seeded_and_keeps_validation_whole():
    from search.datasets import get_dataset, search_data

    full, part = get_dataset("digits"), search_data("digits", 300)
    assert len(part.y_train) == 300 and part.name == full.name
    assert np.array_equal(part.x_val, full.x_val) and np.array_equal(part.x_test, full.x_test)
    share = np.bincount(part.y_train, minlength=10) / 300
    assert np.abs(share - np.bincount(full.y_train, minlength=10) / len(full.y_train)).max() < 0.01
    again = search_data("digits", 300)
    assert np.array_equal(again.x_train, part.x_train)  # every worker trains on the same images
    assert len(search_data("digits").y_train) == len(full.y_train)
    with pytest.raises(ValueError, match=r"train subset must be 1\.\.1169 .*got 5000"):
        search_data("digits", 5000)
