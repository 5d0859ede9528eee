"""The splits a residual network's layers use on several threads give the 1-thread result bit for
bit, on either thread team: fused unit convs (residual add, signs for the next conv) whose bands
carry their border pixels, stride 1 and 2, every pad value, several channel groups; pointwise
convs and the average-pooled shortcut GEMM in pixel runs (a 7x7 map's 49 pixels included); the
stem's conv (Winograd, and the direct kernel on its padded input), with and without its
max-pool, and the signs it packs for its consumer; the head's GEMM on the direct kernel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_kernels_families import family_model
from thread_pools import POOLS, run_on_pool

import kernels
from kernels.float_ops import DIRECT_CONV_ISAS, DirectConv2dOp
from kernels.graph import Signed

SCRIPT = """
import numpy as np, kernels
from kernels import bitops
rng = np.random.default_rng(5)
def pm1(shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)
def normal(*shape):
    return rng.normal(size=shape).astype(np.float32)
def same(got, want, what):
    for g, w in zip(got if isinstance(got, tuple) else (got,),
                    want if isinstance(want, tuple) else (want,)):
        assert g.dtype == w.dtype and np.array_equal(g.view(np.uint8), w.view(np.uint8)), what
THREADS = (2, 3, 5, 4, 2)
UNITS = [(1, 64, 64, 56, 56, 1, 0), (1, 64, 128, 56, 56, 2, 0), (2, 70, 40, 13, 11, 1, -1),
         (1, 128, 64, 7, 7, 1, 1), (1, 64, 64, 9, 17, 2, 1), (3, 33, 24, 5, 3, 1, 0),
         (1, 64, 512, 7, 7, 1, 0), (1, 96, 272, 13, 9, 2, -1)]
for n, c_in, c_out, h, w, stride, pad_value in UNITS:
    x = kernels.pack_nchw(pm1((n, c_in, h, w)))
    wt = kernels.pack_weight(pm1((c_out, c_in, 3, 3)))
    scale, bias, alpha, beta, shift = (normal(c_out) for _ in range(5))
    layer = bitops.unit_layer(wt, c_in, scale, bias, stride, 1, pad_value,
                              batchnorm=(alpha, beta), sign_shift=shift,
                              activation=bitops.UnitActivation("prelu", normal(c_out)))
    oh, ow = (h + 2 - 3) // stride + 1, (w + 2 - 3) // stride + 1
    residual = normal(n, oh, ow, c_out)
    want = layer(x, 1, residual, True)
    for threads in THREADS:
        same(layer(x, threads, residual, True), want, ("unit", h, w, stride, threads))
for n, h, w, c_in, c_out in [(1, 56, 56, 64, 128), (1, 14, 14, 256, 512), (2, 7, 9, 64, 40),
                             (1, 1, 1, 512, 1000), (3, 1, 1, 24, 10)]:
    x = normal(n, h, w, c_in)
    layer = bitops.direct_conv_layer(normal(c_out, c_in, 1, 1), normal(c_out),
                                     np.zeros(c_in, np.float32))
    plain = layer.pointwise(x, 1)
    pooled = layer.pointwise(x, 1, (2, 2), True) if h > 1 else None
    for threads in THREADS:
        same(layer.pointwise(x, threads), plain, ("pointwise", h, w, threads))
        if pooled is not None:
            same(layer.pointwise(x, threads, (2, 2), True), pooled, ("avgpool", h, w, threads))
stem_weights = (normal(40, 3, 7, 7), normal(40), normal(3), 2, 3)
stem = bitops.direct_conv_layer(*stem_weights)  # Winograd, where it pays (3 channels)
direct = bitops.direct_conv_layer(*stem_weights, winograd=False)
# The second input's padded map is past the 4 MiB a thread keeps between calls.
for layer in (stem, direct):
    for x in (normal(2, 3, 45, 38), normal(2, 3, 430, 410)):
        plain, pooled = layer(x, 1), layer(x, 1, (3, 3), (2, 2), (1, 1))
        for threads in THREADS:
            what = (layer.algorithm, x.shape, threads)
            same(layer(x, threads), plain, ("stem", *what))
            same(layer(x, threads, (3, 3), (2, 2), (1, 1)), pooled, ("stem+maxpool", *what))
x = normal(2, 3, 45, 38)
plain, pooled = stem(x, 1), stem(x, 1, (3, 3), (2, 2), (1, 1))
shift = normal(40)
for threads in (1, *THREADS):  # the signs a stem packs for its consumer: pack_nhwc's
    for want, pool in ((plain, ()), (pooled, ((3, 3), (2, 2), (1, 1)))):
        for s in (shift, None):
            got = stem(x, threads, *pool, signs=True, sign_shift=s)
            same(got, (want, bitops.pack_nhwc(want, 1, s)), ("stem signs", threads, pool))
import torch
from kernels.float_ops import MapLinearOp
head = MapLinearOp("head", {"bias": True, "global_pool": True},
                   {"weight": normal(1000, 512), "bias": normal(1000)})
x = torch.from_numpy(normal(2, 7, 7, 512)).permute(0, 3, 1, 2)
want = head.run(x, 1).numpy()
for threads in THREADS:
    same(head.run(x, threads).numpy(), want, ("head", threads))
"""


@pytest.mark.parametrize("pool", POOLS)
def test_residual_network_splits_match_one_thread(pool: str) -> None:
    run_on_pool(SCRIPT, pool, timeout=300)


STEMS = [
    # A Bi-Real stem (direct conv + max-pool) hands its bits to the first unit.
    ("bireal", {"stem_layout": "imagenet", "downsample": "avgpool_conv"}, 32),
    # A VGG-style stem (direct conv, no pool) to the pack op before a plain body.
    ("plain", {}, 16),
]


@pytest.mark.skipif(kernels.active_isa() not in DIRECT_CONV_ISAS,
                    reason="the direct conv is made where its kernel is native")
@pytest.mark.parametrize("family, options, size", STEMS, ids=[s[0] for s in STEMS])
def test_stem_hands_its_signs_to_its_consumer(family: str, options: dict, size: int) -> None:
    """A fast model's stem writes the body's first input bits in its own pass: the same logits,
    bit for bit, as the consumer packing the stem's map itself, on 1 and 2 threads."""
    model = family_model(family, seed=4, shape=(3, size, size), **options)
    fast = kernels.compile(model, (3, size, size), exact_float=False)
    stem = fast.ops[0]
    assert isinstance(stem, DirectConv2dOp) and stem.signs is not None
    x = torch.randn(4, 3, size, size)
    with torch.inference_mode():
        assert isinstance(stem.run(x, 1), Signed)
        for threads in (1, 2):
            fast.threads = threads
            emitted = fast(x)
            stem.signs, request = None, stem.signs
            packed = fast(x)
            stem.signs = request
            np.testing.assert_array_equal(emitted.view(np.uint32), packed.view(np.uint32))
