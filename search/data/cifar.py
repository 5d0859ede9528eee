"""CIFAR-10/100 "python version" batches, read without ever running code from the file.

The batches are pickles, and unpickling runs whatever callables a pickle names. A file a user
hands in must not get that power, so a restricted unpickler resolves only the three globals a
CIFAR batch needs (numpy's array reconstructor, ndarray, dtype; plus latin-1 `_codecs.encode`,
which Python 3 writes for bytes in protocol 2); anything else (os.system,
builtins.eval, ...) is rejected before it is called. The result must then be a dict holding a
uint8 (N, 3072) array and N integer labels, or it is rejected too. Downloads are additionally
checked against the published archive MD5; the archive is read member by member (no extraction
to disk of paths it names).
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from .files import Remote, fetch_all, search_dirs

try:  # numpy >= 2 moved the reconstructor; pickles written by either name it differently
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """How protocol-2 pickles from Python 3 spell bytes: _codecs.encode(text, "latin1")."""
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED = {
    ("_codecs", "encode"): _latin1_bytes,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
IMAGE_BYTES = 3 * 32 * 32


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return _ALLOWED[(module, name)]


def read_batch(raw: bytes, source: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) from one pickled batch."""
    try:
        obj = _CifarUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as exc:  # any parse failure is the file's fault: name it
        raise ValueError(f"{source}: not a CIFAR python batch ({exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{source}: not a CIFAR python batch (a {type(obj).__name__})")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
    data, labels = batch.get("data"), batch.get(label_key)
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != IMAGE_BYTES):
        raise ValueError(f"{source}: 'data' must be a uint8 (N, {IMAGE_BYTES}) array")
    if (not isinstance(labels, list) or len(labels) != len(data)
            or not all(isinstance(v, int) for v in labels)):
        raise ValueError(f"{source}: {label_key!r} must be a list of {len(data)} integers")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


VARIANTS = {  # name: (folder in the archive, train files, test files, label key, classes, remote)
    "cifar10": ("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                ("test_batch",), "labels", 10,
                Remote("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                       "c58f30108f718f92721af3b95e74349a")),
    "cifar100": ("cifar-100-python", ("train",), ("test",), "fine_labels", 100,
                 Remote("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                        "eb9058c3a382ffc7106e4002c42a8d85")),
}


def _batch_folder(root: Path, inner: str, files: tuple[str, ...]) -> Path | None:
    for folder in (root, root / inner):
        if all((folder / f).is_file() for f in files):
            return folder
    return None


def _read_archive(archive: Path, inner: str, files: tuple[str, ...], dest: Path) -> None:
    """Copy the needed members of the verified archive into `dest` (no tar path is trusted)."""
    with tarfile.open(archive, "r:gz") as tar:
        for name in files:
            member = tar.extractfile(f"{inner}/{name}")
            if member is None:
                raise ValueError(f"{archive}: member {inner}/{name} is not a file")
            (dest / name).write_bytes(member.read())


def found_locally(name: str) -> bool:
    """Whether load_cifar finds the batches without downloading."""
    inner, train_files, test_files = VARIANTS[name][:3]
    return any(_batch_folder(d, inner, train_files + test_files) is not None
               for d in search_dirs(name))


def load_cifar(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """(x_train, y_train, x_test, y_test, classes) for "cifar10"/"cifar100", found or downloaded."""
    inner, train_files, test_files, label_key, classes, remote = VARIANTS[name]
    wanted = train_files + test_files
    dirs = search_dirs(name)
    folder = next((f for d in dirs if (f := _batch_folder(d, inner, wanted)) is not None), None)
    if folder is None:
        hint = f"download {remote.url}"
        root = fetch_all(name, [remote], hint, dirs)
        _read_archive(root / remote.filename, inner, wanted, root)
        folder = root

    def read(files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        parts = [read_batch((folder / f).read_bytes(), str(folder / f), label_key) for f in files]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    (x_train, y_train), (x_test, y_test) = read(train_files), read(test_files)
    for y in (y_train, y_test):
        if len(y) and not 0 <= int(y.min()) <= int(y.max()) < classes:
            raise ValueError(f"dataset {name!r}: labels must lie in [0, {classes - 1}]")
    return x_train, y_train, x_test, y_test, classes
