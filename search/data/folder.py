"""An image folder: one sub-folder per class, any image format Pillow reads.

Images are resized (bilinear) to one square size, the smallest side found in the folder capped at
MAX_SIZE, so nothing is upsampled and small-image datasets stay small. Grayscale folders stay one
channel; a folder with any colour image becomes RGB. An image Pillow cannot or will not decode
(broken, or over its decompression-bomb pixel limit) is one ValueError naming the file.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAX_SIZE = 64
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def load_folder(root: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images uint8 (N, C, S, S), labels int64, class names sorted) from `root/<class>/*`."""
    try:
        from PIL import Image
    except ImportError:
        raise ValueError("folder: datasets need Pillow (pip install Pillow)") from None

    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise ValueError(f"image folder {root} needs one sub-folder per class (>= 2), "
                         f"found {len(classes)}")
    images, labels = [], []
    for label, cls in enumerate(classes):
        files = sorted(p for p in (root / cls).iterdir() if p.is_file()
                       and not p.name.startswith("."))
        if not files:
            raise ValueError(f"image folder {root}: class folder {cls!r} holds no images")
        for path in files:
            try:
                with Image.open(path) as im:
                    im.load()
                    images.append(im.copy())
            except Image.DecompressionBombError as exc:
                raise ValueError(f"{path}: too many pixels to decode safely ({exc})") from None
            # what Pillow's decoders raise on broken files (UnidentifiedImageError is an OSError)
            except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
                raise ValueError(f"{path}: not an image Pillow can read ({exc})") from None
            labels.append(label)
    gray = all(im.mode in GRAY_MODES for im in images)
    size = min(MAX_SIZE, min(min(im.size) for im in images))
    mode = "L" if gray else "RGB"
    arrays = [np.asarray(im.convert(mode).resize((size, size), Image.BILINEAR), dtype=np.uint8)
              for im in images]
    x = np.stack(arrays)
    x = x[:, None] if gray else x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), np.asarray(labels, dtype=np.int64), classes
