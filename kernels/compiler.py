"""torch model -> PackedModel: walk stem, body and head and compile each module to an op."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .binary_ops import PackOp
from .errors import UnsupportedLayerError
from .float_ops import MaxPool2dOp
from .graph import MODULE_OPS, PASSTHROUGH_MODULES, Op
from .packed_model import PackedModel

SECTIONS = ("stem", "body", "head")
Entry = tuple[str, nn.Module, type[Op]]  # (path, module, the op class compiling it)


def compile(model: nn.Module, input_shape: Sequence[int], threads: int = 1) -> PackedModel:  # noqa: A001
    """Compile a BinaryNet-like model (stem/body/head) for input (C, H, W) into packed ops.

    Uses eval semantics (running BatchNorm statistics, no dropout) whatever the model's mode,
    and never modifies the model. Raises UnsupportedLayerError naming the first layer it cannot
    compile.
    """
    shape = _input_shape(input_shape)
    entries: list[Entry] = []
    for section in SECTIONS:
        part = getattr(model, section, None)
        if not isinstance(part, nn.Module):
            raise UnsupportedLayerError(
                f"{type(model).__name__} has no '{section}' module; the packed engine compiles "
                "models made of stem, body and head (spaces.BinaryNet)"
            )
        entries.extend(_flatten(section, part))
    entries, lowered = _pool_before_batchnorm(entries)

    ops: list[Op] = []
    encoding = "float"
    with torch.no_grad():
        # A bits-input op's RSign alpha is subtracted by whatever packs its input.
        shifts = [op_cls.input_shift(module) for _, module, op_cls in entries] + [None]
        for i, (path, module, op_cls) in enumerate(entries):
            if op_cls.input_encoding == "bits" and encoding == "float":
                ops.append(PackOp.subtracting(f"{path}.pack", shifts[i]))
            consumer = entries[i + 1][2] if i + 1 < len(entries) else None
            emit_bits = consumer is not None and consumer.input_encoding == "bits"
            op = op_cls.from_module(path, module, emit_bits, shifts[i + 1] if emit_bits else None)
            if isinstance(op, MaxPool2dOp) and path in lowered:
                op = op.with_lower(lowered[path])
            ops.append(op)
            encoding = op.output_encoding
    return PackedModel(ops, shape, threads=threads)


def _flatten(path: str, module: nn.Module) -> Iterator[Entry]:
    """Yield (path, module, op class) in execution order, expanding nn.Sequential."""
    name = type(module).__name__
    if isinstance(module, nn.Sequential) and name == "Sequential":
        for child_name, child in module.named_children():
            yield from _flatten(f"{path}.{child_name}", child)
    elif name in PASSTHROUGH_MODULES:
        return
    elif name in MODULE_OPS:
        yield path, module, MODULE_OPS[name]
    else:
        supported = ", ".join(sorted(MODULE_OPS))
        raise UnsupportedLayerError(
            f"{path}: {name} is not supported by the packed engine (supported: {supported})"
        )


def _pool_before_batchnorm(entries: list[Entry]) -> tuple[list[Entry], dict[str, np.ndarray]]:
    """BatchNorm2d -> MaxPool2d becomes MaxPool2d -> BatchNorm2d, so BN runs on the pooled map (a
    quarter of it for the ImageNet stem's 3x3/2 pool). Exact value for value: eval BN is
    monotone per channel, rounding included, so max(BN(x)) = BN(max(x)) where gamma >= 0 and
    = BN(min(x)) where gamma < 0. Returns the entries and, per moved pool, the uint8 mask of the
    channels it must min-pool (bnnx's pool does that; torch's dilated or ceil-mode one cannot,
    so those keep torch's order unless every gamma is >= 0)."""
    out, lowered = list(entries), {}
    for i in range(len(out) - 1):
        (_, bn, _), (pool_path, pool, _) = out[i], out[i + 1]
        if type(bn).__name__ != "BatchNorm2d" or type(pool).__name__ != "MaxPool2d":
            continue
        lower = (np.zeros(bn.num_features, np.uint8) if bn.weight is None
                 else (bn.weight.detach() < 0).numpy().astype(np.uint8))
        on_bnnx = pool.dilation in (1, (1, 1)) and not pool.ceil_mode
        if lower.any() and not on_bnnx:
            continue
        out[i], out[i + 1] = out[i + 1], out[i]
        if lower.any():
            lowered[pool_path] = lower
    return out, lowered


def _input_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be three positive ints (C, H, W), got {input_shape!r}")
    return shape  # type: ignore[return-value]
