"""torch model -> PackedModel: walk stem, body and head and compile each module to an op."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .binary_ops import PackOp, _binary_conv, check_sign_quantizer, rsign_alpha
from .errors import UnsupportedLayerError
from .float_ops import MaxPool2dOp
from .graph import MODULE_OPS, OPS, PASSTHROUGH_MODULES, Op, pair
from .packed_model import PackedModel

SECTIONS = ("stem", "body", "head")
Entry = tuple[str, nn.Module, type[Op]]  # (path, module, the op class compiling it)


def compile(model: nn.Module, input_shape: Sequence[int], threads: int = 1,  # noqa: A001
            exact_float: bool = True) -> PackedModel:
    """Compile a BinaryNet-like model (stem/body/head) for input (C, H, W) into packed ops.

    Uses eval semantics (running BatchNorm statistics, no dropout) whatever the model's mode,
    and never modifies the model. Raises UnsupportedLayerError naming the first layer it cannot
    compile. `exact_float=False` folds each float conv's BatchNorm into it (folding.py; on
    AVX-512 the stem's input normalisation and pools too, on bnnx's direct conv): faster, but
    its floats, and so rarely a binary layer's sign, round unlike torch's.
    """
    if not isinstance(exact_float, bool):
        raise ValueError(f"exact_float must be True or False, got {exact_float!r}")
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
    entries, lowered = _pool_before_batchnorm(_binary_units(entries))

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
    if not exact_float:
        from .folding import fold_float_parts  # it reads block ops, which import this module

        ops = fold_float_parts(ops)
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


# Activations a binary unit's output pass computes (block_ops._unit_activation).
UNIT_ACTIVATIONS = frozenset({"Hardtanh", "ReLU6", "PReLU", "RPReLU"})


class _Unit(nn.Module):
    """Layers of the model that run as one op, under the child names the block ops read; it
    holds the model's own modules and changes none of them."""

    def __init__(self, conv: nn.Module, bn: nn.Module, pool: nn.Module | None = None,
                 act: nn.Module | None = None) -> None:
        super().__init__()
        self.conv, self.bn = conv, bn
        self.pool = nn.Identity() if pool is None else pool
        self.act = nn.Identity() if act is None else act


def _binary_units(entries: list[Entry]) -> list[Entry]:
    """Fuse by the graph's pattern, whatever modules wrap the layers (a Larq-style Sequential of
    bare layers compiles as the space's own blocks): binary conv -> BatchNorm2d [-> activation
    or plain MaxPool2d] becomes one BinaryUnitOp (integer thresholds when its consumer takes
    bits), binary conv -> plain MaxPool2d -> BatchNorm2d one PoolFirstBlockOp."""
    out: list[Entry] = []
    i = 0
    while i < len(entries):
        path, conv, _ = entries[i]
        after = [module for _, module, _ in entries[i + 1:i + 3]] + [None, None]
        kinds = [type(module).__name__ for module in after]
        if type(conv).__name__ != "BinaryConv2d" or not _packable(path, conv):
            out.append(entries[i])
            i += 1
        elif kinds[0] == "BatchNorm2d" and _has_statistics(after[0]):
            pool = after[1] if kinds[1] == "MaxPool2d" and _plain_pool(after[1]) else None
            act = after[1] if kinds[1] in UNIT_ACTIVATIONS else None
            out.append((path, _Unit(conv, after[0], pool, act), OPS["binary_unit"]))
            i += 2 if pool is None and act is None else 3
        elif (kinds[:2] == ["MaxPool2d", "BatchNorm2d"] and _plain_pool(after[0])
              and _has_statistics(after[1])):
            out.append((path, _Unit(conv, after[1], after[0]), OPS["pool_first_block"]))
            i += 3
        else:
            out.append(entries[i])
            i += 1
    return out


def _packable(path: str, conv: nn.Module) -> bool:
    """The binary conv passes its own op's checks; one that fails stays ungrouped, so that its
    error names its own path."""
    try:
        _binary_conv(path, conv)
        if rsign_alpha(conv.input_quantizer) is None:
            check_sign_quantizer(path, conv, conv.in_channels)
    except UnsupportedLayerError:
        return False
    scaled_with_bias = conv.bias is not None and getattr(conv, "output_scale", None) is not None
    return conv.weight_quantizer is not None and not scaled_with_bias


def _has_statistics(bn: nn.Module) -> bool:
    """A BatchNorm with running statistics (one without keeps its own op, which names the
    problem)."""
    return bn.running_mean is not None and bn.running_var is not None


def _plain_pool(pool: nn.Module) -> bool:
    """A MaxPool2d the packed max-pool runs (no dilation, ceil mode or indices)."""
    return pair(pool.dilation) == [1, 1] and not pool.ceil_mode and not pool.return_indices


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
