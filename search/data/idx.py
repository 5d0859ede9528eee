"""IDX files (MNIST, Fashion-MNIST, KMNIST), plain or gzipped, parsed strictly.

Only unsigned-byte IDX is accepted (every MNIST-style release uses it); sizes are checked
against the header so a truncated or foreign file fails with its name, not with a reshape error.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from .files import Remote, fetch_all, search_dirs

UBYTE = 0x08
SPLITS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def read_idx(path: Path) -> np.ndarray:
    """The uint8 array an IDX file holds, shape from its header."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable IDX file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != UBYTE:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (bad magic {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">u4"))
    if len(shape) != ndim or len(raw) - header != int(np.prod(shape)):
        raise ValueError(f"{path}: size does not match its IDX header {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()  # writable


def find_split_files(folder: Path) -> dict[str, Path] | None:
    """The four standard files in `folder` (each plain or .gz), or None if any is missing."""
    found = {}
    for base in SPLITS:
        for candidate in (folder / base, folder / f"{base}.gz"):
            if candidate.is_file():
                found[base] = candidate
                break
        else:
            return None
    return found


def found_locally(name: str, system: tuple[str, ...] = ()) -> bool:
    """Whether load_idx_dataset finds the four files without downloading."""
    return any(find_split_files(d) is not None for d in search_dirs(name, system))


def load_idx_dataset(
    name: str, base_url: str, md5: dict[str, str], system: tuple[str, ...], hint: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) as uint8 (N, 1, 28, 28) / int64, found or downloaded."""
    dirs = search_dirs(name, system)
    files = next((f for d in dirs if (f := find_split_files(d)) is not None), None)
    if files is None:
        remotes = [Remote(f"{base_url}/{b}.gz", md5[b]) for b in SPLITS]
        files = find_split_files(fetch_all(name, remotes, hint, dirs))
    x_train, y_train, x_test, y_test = (read_idx(files[b]) for b in SPLITS)
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"dataset {name!r}: {split} images {x.shape} and labels {y.shape} "
                             "do not pair up")
    return x_train[:, None], y_train.astype(np.int64), x_test[:, None], y_test.astype(np.int64)
