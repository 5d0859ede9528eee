"""The packed model file: one safetensors file, no pickle.

Metadata: format = "bnnx-packed", version = "1", graph = JSON
  {"input_shape": [C, H, W],
   "ops": [{"name": ..., "kind": ..., "params": {...}, "tensors": {"weight": "3.weight", ...}}]},
sha256 = JSON {tensor name: sha256 hex of its dtype, shape and bytes}.
Tensors: each op's arrays, named "<op index>.<key>" (uint64 packed weights, int32 thresholds,
int8 directions, float32 scales and float stem/head weights).

A file decides no resources: its params and shapes are checked op by op before anything is
allocated (Op.output_shape), and threads are the caller's (older files' graph "threads" is
ignored). Every tensor is checked against its sha256, so damaged bytes never run silently. The
checksums were added without a version bump, as older builds read these files unchanged; a file
written before them (no sha256 entry) loads unverified.
"""

from __future__ import annotations

import hashlib
import json
import os
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from .errors import PackedModelError
from .graph import OPS
from .packed_model import PackedModel, _threads

FORMAT = "bnnx-packed"
FORMAT_VERSION = 1


def save(model: PackedModel, path: str | PathLike[str]) -> None:
    """Write `model` to `path` atomically (a temporary sibling renamed into place)."""
    tensors: dict[str, np.ndarray] = {}
    graph_ops = []
    for i, op in enumerate(model.ops):
        refs = {}
        for key, array in op.tensors.items():
            refs[key] = f"{i}.{key}"
            tensors[refs[key]] = np.ascontiguousarray(array)
        graph_ops.append({"name": op.name, "kind": op.kind, "params": op.params, "tensors": refs})
    graph = {"input_shape": list(model.input_shape), "ops": graph_ops}
    sums = {name: _digest(array) for name, array in tensors.items()}
    metadata = {"format": FORMAT, "version": str(FORMAT_VERSION), "graph": json.dumps(graph),
                "sha256": json.dumps(sums)}
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, target)  # readers never see a half-written file


def load(path: str | PathLike[str], threads: int = 1) -> PackedModel:
    """Read a file written by PackedModel.save; PackedModelError says what is wrong with it.

    The model runs with `threads` kernel threads (capped at the CPU count): the caller's choice,
    never the file's (the "threads" entry older files carry is ignored).
    """
    threads = _threads(threads)  # the caller's mistake, not the file's: a plain ValueError
    target = Path(path)
    if not target.is_file():
        raise PackedModelError(f"{target}: no such file")
    try:
        with safe_open(str(target), framework="np") as f:
            metadata = f.metadata() or {}
            _check_header(target, metadata)
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except PackedModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for bad files
        raise PackedModelError(f"{target}: not a readable safetensors file ({exc})") from None
    _verify(target, metadata, tensors)
    graph = _graph(target, metadata)
    ops = []
    for entry in graph["ops"]:
        name = entry.get("name", "?") if isinstance(entry, dict) else "?"
        try:
            ops.append(_op(entry, tensors))
        except (KeyError, TypeError, ValueError) as exc:
            raise PackedModelError(f"{target}: op {name!r} is invalid: {exc}") from None
    try:
        return PackedModel(ops, graph["input_shape"], threads=threads)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise PackedModelError(f"{target}: invalid graph: {exc}") from None


def _digest(array: np.ndarray) -> str:
    """sha256 of a tensor's dtype, shape and bytes."""
    digest = hashlib.sha256(f"{array.dtype.name}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _verify(path: Path, metadata: dict[str, str], tensors: dict[str, np.ndarray]) -> None:
    """Every tensor against its recorded sha256 (a file without checksums predates them)."""
    if "sha256" not in metadata:
        return
    try:
        sums = json.loads(metadata["sha256"])
    except (json.JSONDecodeError, RecursionError):
        sums = None
    if not isinstance(sums, dict) or sorted(sums) != sorted(tensors):
        raise PackedModelError(f"{path}: the sha256 metadata is not one checksum per tensor")
    for name, array in tensors.items():
        if sums[name] != _digest(array):
            raise PackedModelError(f"{path}: tensor {name!r} does not match its sha256 (the file "
                                   "is damaged; export or compile it again)")


def _check_header(path: Path, metadata: dict[str, str]) -> None:
    if metadata.get("format") != FORMAT:
        raise PackedModelError(
            f"{path}: not a bnnx packed model (format={metadata.get('format')!r}, "
            f"expected {FORMAT!r})"
        )
    version = metadata.get("version")
    if version != str(FORMAT_VERSION):
        raise PackedModelError(
            f"{path}: unsupported bnnx-packed version {version!r} (this build reads "
            f"{FORMAT_VERSION}; recompile the model from its checkpoint)"
        )


def _graph(path: Path, metadata: dict[str, str]) -> dict[str, Any]:
    try:
        graph = json.loads(metadata.get("graph", ""))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise PackedModelError(f"{path}: graph metadata is not valid JSON ({exc})") from None
    shape = graph.get("input_shape") if isinstance(graph, dict) else None
    if (not isinstance(graph, dict) or not isinstance(graph.get("ops"), list)
            or not isinstance(shape, list) or len(shape) != 3
            or not all(isinstance(s, int) and s >= 1 for s in shape)):
        raise PackedModelError(f"{path}: graph metadata lacks a valid input_shape or ops list")
    return graph


def _op(entry: Any, tensors: dict[str, np.ndarray]) -> Any:
    if not isinstance(entry, dict):
        raise TypeError("op entry is not an object")
    kind, name = entry["kind"], entry["name"]
    if kind not in OPS:
        raise ValueError(f"unknown op kind {kind!r} (known: {', '.join(sorted(OPS))})")
    params, refs = entry.get("params", {}), entry.get("tensors", {})
    if not isinstance(name, str) or not isinstance(params, dict) or not isinstance(refs, dict):
        raise TypeError("name, params or tensors have the wrong type")
    missing = [ref for ref in refs.values() if ref not in tensors]
    if missing:
        raise ValueError(f"tensors {missing} are not in the file")
    return OPS[kind](name, params, {key: tensors[ref] for key, ref in refs.items()})
