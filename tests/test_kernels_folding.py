"""compile(exact_float=False): BatchNorm folded into the float convs (stem, downsampling
shortcuts), the head's pool or flatten into its linear layer. Not torch's rounding, so these
tests bound the logits (most samples to rounding, all within 2% of the logit range) and require
the same predictions; the exact default never folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_kernels_families import family_model

import kernels
from kernels import float_ops
from kernels.block_ops import BlockOp
from kernels.folding import fold_float_parts
from kernels.graph import as_float

SHAPE = (3, 32, 32)
CASES = [
    ("bireal", {"stem_layout": "imagenet", "downsample": "avgpool_conv"}),
    ("resnet", {"stem_layout": "imagenet", "downsample": "avgpool_conv", "activation": "prelu"}),
    ("reactnet", {"activation": "rprelu", "input_quantizer": "rsign"}),
    ("plain", {}),
]


def folded_convs(packed: kernels.PackedModel) -> list[float_ops.FoldedConv2dOp]:
    ops = [op for op in packed.ops]
    ops += [sub for op in packed.ops if isinstance(op, BlockOp) for c in op.chains.values()
            for sub in c]
    return [op for op in ops if isinstance(op, float_ops.FoldedConv2dOp)]


@pytest.mark.parametrize("family, options", CASES, ids=[c[0] for c in CASES])
def test_folded_float_parts_keep_logits_and_predictions(family, options) -> None:
    model = family_model(family, seed=8, shape=SHAPE, **options)
    exact = kernels.compile(model, SHAPE)
    fast = kernels.compile(model, SHAPE, exact_float=False)
    assert not folded_convs(exact) and not any(op.kind == "conv2d_folded" for op in exact.ops)
    folded = folded_convs(fast)
    shortcuts = options.get("downsample") == "avgpool_conv"
    assert len(folded) == 1 + (2 if shortcuts else 0)  # the stem's, and each shortcut's
    assert not any(op.kind == "batchnorm" for op in fast.ops if op.name.startswith("stem"))
    head = [op for op in fast.ops if op.name.startswith("head")]
    assert len(head) == 1 and isinstance(head[0], float_ops.MapLinearOp)  # pool + linear: one op
    assert head[0].global_pool == (family != "plain")
    x = torch.randn(64, *SHAPE, generator=torch.Generator().manual_seed(2)) * 2
    with torch.no_grad():
        ref = model(x).numpy()
    got = fast(x)
    scale = max(1.0, float(np.abs(ref).max()))
    error = np.abs(got - ref).max(axis=1) / scale  # per sample, relative to the logit range
    # Most samples see torch's signs everywhere and differ by float rounding alone; a sign
    # flipped where a binary layer's input sits within rounding of zero moves a few by more.
    assert np.median(error) <= 1e-5 and np.mean(error > 1e-4) <= 0.05
    assert error.max() <= 2e-2
    np.testing.assert_array_equal(got.argmax(1), ref.argmax(1))


def test_fold_across_the_moved_stem_pool_flips_negative_gammas() -> None:
    """conv -> BN -> max-pool runs as conv -> pool (min where gamma < 0) -> BN exactly; folded,
    BN goes back before the pool, which is a plain max-pool again (min where both flip)."""
    model = family_model("bireal", seed=9, shape=SHAPE, stem_layout="imagenet")
    exact, fast = (kernels.compile(model, SHAPE, exact_float=e) for e in (True, False))
    moved = next(op for op in exact.ops if isinstance(op, float_ops.MaxPool2dOp))
    assert moved.lower is not None and moved.lower.any()  # the test model has negative gammas
    # The pool runs alone, or in a direct stem conv's pass (named as the pool).
    pool = next(op.pool if isinstance(op, float_ops.DirectConv2dOp) else op for op in fast.ops
                if isinstance(op, float_ops.MaxPool2dOp) or getattr(op, "pool", None) is not None)
    assert pool.lower is None
    x = torch.randn(16, *SHAPE)
    stem_exact = exact.activations(x)["stem.2"]
    stem_fast = fast.activations(x)["stem.3"]
    np.testing.assert_allclose(stem_fast, stem_exact, rtol=1e-4, atol=1e-4)


def test_folded_model_saves_and_loads(tmp_path: Path) -> None:
    model = family_model("bireal", seed=10, shape=SHAPE, stem_layout="imagenet",
                         downsample="avgpool_conv")
    fast = kernels.compile(model, SHAPE, exact_float=False)
    fast.save(tmp_path / "m.bnnx")
    loaded = kernels.load(tmp_path / "m.bnnx")
    assert len(folded_convs(loaded)) == len(folded_convs(fast)) == 3
    x = torch.randn(4, *SHAPE)
    np.testing.assert_array_equal(loaded(x), fast(x))


def test_exact_float_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="exact_float must be True or False"):
        kernels.compile(family_model("plain"), (3, 12, 12), exact_float="no")


def head_ops(global_pool: bool, features: int, bias: bool, seed: int, outputs: int = 7) -> list:
    """The exact head's ops ([1x1 adaptive average pool,] flatten, linear) on random weights."""
    g = torch.Generator().manual_seed(seed)
    tensors = {"weight": torch.randn(outputs, features, generator=g).numpy()}
    if bias:
        tensors["bias"] = torch.randn(outputs, generator=g).numpy()
    ops = [float_ops.FlattenOp("head.1", {"start_dim": 1, "end_dim": -1}, {}),
           float_ops.LinearOp("head.2", {"bias": bias}, tensors)]
    if global_pool:
        ops.insert(0, float_ops.AdaptiveAvgPool2dOp("head.0", {"output_size": [1, 1]}, {}))
    return ops


@pytest.mark.parametrize("global_pool", [True, False], ids=["avgpool", "flatten"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("outputs", [7, float_ops.MapLinearOp.WIDE], ids=["narrow", "wide"])
def test_map_linear_head_reads_either_layout_within_rounding(global_pool, bias, outputs) -> None:
    """The folded head on a channels-last map (the packed kernels' NHWC) and on an NCHW one,
    batch of 3, against the exact ops it replaces: rounding apart, the same logits (its weight
    stored either way round, by its output count)."""
    c, h, w = 6, 5, 3
    exact = head_ops(global_pool, c if global_pool else c * h * w, bias, seed=11,
                     outputs=outputs)
    folded = fold_float_parts(exact)
    assert len(folded) == 1 and isinstance(folded[0], float_ops.MapLinearOp)
    assert folded[0].output_shape((c, h, w)) == (outputs,)
    x = torch.randn(3, c, h, w, generator=torch.Generator().manual_seed(12))
    ref = x
    for op in exact:
        ref = op.run(ref, 1)
    for layout in (torch.contiguous_format, torch.channels_last):
        got = as_float(folded[0].run(x.contiguous(memory_format=layout), 1))
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_map_linear_rejects_a_map_its_weight_does_not_take() -> None:
    op = fold_float_parts(head_ops(False, 6 * 5 * 3, True, seed=13))[0]
    with pytest.raises(ValueError, match="takes 90 features"):
        op.output_shape((6, 5, 4))
    pooled = fold_float_parts(head_ops(True, 6, True, seed=13))[0]
    with pytest.raises(ValueError, match=r"expects a \(C, H, W\) map"):
        pooled.output_shape((6,))
