"""compile(exact_float=False): BatchNorm folded into the float conv before it.

A float conv and its BatchNorm become one FoldedConv2dOp (weight * gamma / sqrt(var + eps), the
bias shifted to match, computed in float64 and rounded once), run channels-last on oneDNN: the
ImageNet stem loses its BatchNorm pass and a Bi-Real / ResNet downsampling shortcut (average
pool, 1x1 conv, BatchNorm) its BatchNorm and both NCHW copies. The floats no longer round as
torch's conv then BatchNorm do, so a binary layer's sign can differ from torch's where its input
lies within rounding of zero: the exact default never folds. A stem conv over few input channels
and a shortcut's 1x1 conv become DirectConv2dOps instead (bnnx's direct kernel, where it is
native); the stem's also takes in the input normalisation before it and the max-pool after it,
a shortcut's the average pool before it. A head's global average pool or flatten and its linear
layer become one MapLinearOp (the pool a sum over the NHWC pixels, no NCHW copy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import bitops
from .block_ops import BlockOp
from .float_ops import (
    DIRECT_CONV_ISAS,
    AdaptiveAvgPool2dOp,
    BatchNormOp,
    Conv2dOp,
    DirectConv2dOp,
    FlattenOp,
    FoldedConv2dOp,
    LinearOp,
    MapLinearOp,
    MaxPool2dOp,
    NormalizeOp,
)
from .graph import Op


def fold_float_parts(ops: Sequence[Op]) -> list[Op]:
    """`ops` with every conv -> BatchNorm (also conv -> max-pool -> BatchNorm, the stem order
    the compiler makes) folded, at the top level and inside blocks' chains, and each
    [global average pool ->] flatten -> linear head made one MapLinearOp."""
    return [_fold_block(op) if isinstance(op, BlockOp) else op for op in _fold_chain(ops)]


def _fold_chain(ops: Sequence[Op]) -> list[Op]:
    out: list[Op] = []
    i = 0
    while i < len(ops):
        conv, after = ops[i], list(ops[i + 1:i + 3])
        if type(conv) is Conv2dOp and after and isinstance(after[0], BatchNormOp):
            out.append(_folded(conv, after[0], out))
            i += 2
        elif (type(conv) is Conv2dOp and len(after) == 2 and isinstance(after[0], MaxPool2dOp)
              and after[0].on_bnnx_kernel and isinstance(after[1], BatchNormOp)):
            bn = after[1]
            folded, pool = _folded(conv, bn, out), _pool_after(after[0], bn)
            windowed = isinstance(folded, DirectConv2dOp) and not DirectConv2dOp.pointwise(folded)
            out += [folded.with_pool(pool)] if windowed else [folded, pool]
            i += 3
        elif (head := _map_linear(ops[i:i + 3])) is not None:
            out.append(head[0])
            i += head[1]
        else:
            out.append(conv)
            i += 1
    return out


def _map_linear(ops: Sequence[Op]) -> tuple[MapLinearOp, int] | None:
    """(the MapLinearOp, ops taken) for a head starting `ops`: a 1x1 adaptive average pool, a
    flatten of all per-sample axes and a linear layer, or the last two alone; else None."""
    pool = isinstance(ops[0], AdaptiveAvgPool2dOp) and ops[0].output_size == (1, 1)
    rest = ops[1:] if pool else ops
    if not (len(rest) >= 2 and isinstance(rest[0], FlattenOp) and type(rest[1]) is LinearOp
            and (rest[0].start_dim, rest[0].end_dim) == (1, -1)):
        return None
    linear = rest[1]
    return (MapLinearOp(linear.name, {**linear.params, "global_pool": pool}, linear.tensors),
            3 if pool else 2)


def _folded(conv: Conv2dOp, bn: BatchNormOp, before: list[Op]) -> FoldedConv2dOp:
    """conv then bn as one conv: weight * s, (bias - mean) * s + beta with s = gamma * invstd.
    A stem or 1x1 conv becomes a DirectConv2dOp where the direct kernel is native, taking in
    the per-channel normalisation, or for a 1x1 conv the plain average pool, that ends `before`
    (popped from it), if any."""
    channels = conv.weight.shape[0]
    bn.per_channel(channels, "running_mean", "running_var", "weight", "bias")
    scale = 1.0 / np.sqrt(bn.running_var.double().numpy() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double().numpy()
    bias = conv.bias.double().numpy() if conv.bias is not None else np.zeros(channels)
    bias = (bias - bn.running_mean.double().numpy()) * scale
    if bn.bias is not None:
        bias = bias + bn.bias.double().numpy()
    weight = conv.weight.double().numpy() * scale.reshape(-1, 1, 1, 1)
    c_in = weight.shape[1]
    if not DirectConv2dOp.takes(conv) or bitops.active_isa() not in DIRECT_CONV_ISAS:
        return FoldedConv2dOp(conv.name, {**conv.params, "bias": True},
                              {"weight": weight.astype(np.float32),
                               "bias": bias.astype(np.float32)})
    params: dict[str, Any] = {**conv.params, "bias": True}
    pad_value = np.zeros(c_in)
    norm = _channel_normalisation(before[-1], c_in) if before else None
    if norm is not None:  # conv((x - mean) / std) = conv'(x), padding x with mean
        before.pop()
        pad_value, std = norm
        weight = weight / std.reshape(1, -1, 1, 1)
        bias = bias - (weight * pad_value.reshape(1, -1, 1, 1)).sum(axis=(1, 2, 3))
    elif (DirectConv2dOp.pointwise(conv) and before
          and DirectConv2dOp.plain_average(before[-1])):
        params["avg_pool"] = before.pop().params
    return DirectConv2dOp(conv.name, params,
                          {"weight": weight.astype(np.float32), "bias": bias.astype(np.float32),
                           "pad_value": pad_value.astype(np.float32)})


def _channel_normalisation(op: Op, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, std) per input channel, float64, of a NormalizeOp whose tensors are per channel
    (or one value) with no zero std; else None (it is left to run on its own)."""
    if not isinstance(op, NormalizeOp):
        return None
    per_channel = []
    for t in (op.mean, op.std):
        if t.shape[1:] != (1, 1) or t.shape[0] not in (1, channels):
            return None
        per_channel.append(np.broadcast_to(t.double().numpy().reshape(-1), (channels,)))
    mean, std = per_channel
    return (mean, std) if np.all(std != 0) else None


def _pool_after(pool: MaxPool2dOp, bn: BatchNormOp) -> MaxPool2dOp:
    """The pool that, after the folded BatchNorm, equals `pool` before it: a negative gamma
    turns a channel's max into a min (and back)."""
    negative = np.zeros(bn.running_mean.shape[0], bool) if bn.weight is None else (
        bn.weight.numpy() < 0)
    lower = negative ^ (pool.lower.astype(bool) if pool.lower is not None else False)
    tensors = {"lower": lower.astype(np.uint8)} if lower.any() else {}
    return MaxPool2dOp(pool.name, pool.params, tensors)


def _fold_block(block: BlockOp) -> BlockOp:
    """The block rebuilt with each chain folded (so it saves and loads as folded)."""
    chains: dict[str, list[dict[str, Any]]] = {}
    tensors = {k: v for k, v in block.tensors.items()
               if not any(k.startswith(f"{part}.") for part in block.chains)}
    for part, ops in block.chains.items():
        folded = _fold_chain(ops)
        chains[part] = [{"kind": op.kind, "params": op.params} for op in folded]
        for i, op in enumerate(folded):
            tensors.update({f"{part}.{i}.{k}": v for k, v in op.tensors.items()})
    return type(block)(block.name, {**block.params, "chains": chains}, tensors)
