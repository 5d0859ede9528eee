"""A stem's signs for its consumer's first binary conv: written in the conv's own pass (F(4x4,
3x3) compares each output vector in registers) and, where the consumer reads only bits (a pack
before a plain body), alone (floats=False: no float map). Those bits are pack_nhwc's of the
floats the same layer writes, bit for bit, on every algorithm, channel count, batch and thread
count, at exact ties (a shift equal to the floats) too; the graph, not the family, decides that
the map may be skipped, and a plain net's logits do not move."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_kernels_families import family_model

import kernels
from kernels import bitops
from kernels.float_ops import DIRECT_CONV_ISAS, DirectConv2dOp
from kernels.graph import Signed, SignRequest

# (kernel, stride, winograd): F(4x4, 3x3), F(4x4, 4x4) on a 7x7 / 2, the direct kernel.
LAYERS = [(3, 1, True), (7, 2, True), (3, 1, False)]


def random_layer(kernel: int, stride: int, winograd: bool, c_out: int,
                 rng: np.random.Generator):
    weight = rng.normal(size=(c_out, 3, kernel, kernel)).astype(np.float32)
    bias = rng.normal(size=c_out).astype(np.float32)
    pad_value = rng.normal(size=3).astype(np.float32)
    layer = bitops.direct_conv_layer(weight, bias, pad_value, stride, kernel // 2, winograd)
    assert layer.algorithm == ("winograd" if winograd else "direct")
    return layer


@pytest.mark.parametrize("kernel,stride,winograd", LAYERS)
@pytest.mark.parametrize("c_out", [20, 130])
@pytest.mark.parametrize("batch", [1, 3])
def test_signs_only_are_the_signs_of_the_floats(kernel: int, stride: int, winograd: bool,
                                                c_out: int, batch: int) -> None:
    """signs=True gives the floats-only map bit for bit and pack_nhwc's bits of it, minus a
    shift or not; floats=False the same bits alone, on 1 and 2 threads (NaN and inf inputs,
    partial words and 16-channel blocks)."""
    rng = np.random.default_rng(c_out * 10 + batch)
    layer = random_layer(kernel, stride, winograd, c_out, rng)
    x = rng.normal(size=(batch, 3, 21, 19)).astype(np.float32)
    x[0, 1, 5, 6], x[-1, 0, 9, 9] = np.nan, np.inf
    floats = layer(x, 1)
    for shift in (None, rng.normal(size=c_out).astype(np.float32)):
        want = bitops.pack_nhwc(floats, 1, shift)
        assert 0 < np.unpackbits(want.view(np.uint8)).mean() < 1  # both signs: checks bite
        for threads in (1, 2):
            y, bits = layer(x, threads, signs=True, sign_shift=shift)
            np.testing.assert_array_equal(y.view(np.uint32), floats.view(np.uint32))
            np.testing.assert_array_equal(bits, want)
            only = layer(x, threads, signs=True, sign_shift=shift, floats=False)
            np.testing.assert_array_equal(only, want)


@pytest.mark.parametrize("kernel,stride,winograd", LAYERS)
def test_signs_at_exact_ties(kernel: int, stride: int, winograd: bool) -> None:
    """With the shift equal to one pixel's floats, that pixel's signs-only bits are all 0 and,
    a float higher, all 1: the floats compared are the floats written, to the last bit (an
    instance rounding otherwise by an ulp, as the compiler once made the signs-only one,
    fails here where random shifts do not)."""
    rng = np.random.default_rng(5)
    c_out = 70
    layer = random_layer(kernel, stride, winograd, c_out, rng)
    x = rng.normal(size=(2, 3, 13, 17)).astype(np.float32)
    floats = layer(x, 1)
    pixels = floats.reshape(-1, c_out)
    valid = bitops.pack_nhwc(np.full((1, 1, 1, c_out), -1.0, np.float32))[0, 0, 0]
    for p in range(0, len(pixels), 7):
        tie = pixels[p].copy()
        above = np.nextafter(tie, np.float32(np.inf))
        for threads in (1, 2):
            for shift, want in ((tie, 0 * valid), (above, valid)):
                bits = layer(x, threads, signs=True, sign_shift=shift, floats=False)
                np.testing.assert_array_equal(bits.reshape(len(pixels), -1)[p], want)
                _, bits = layer(x, threads, signs=True, sign_shift=shift)
                np.testing.assert_array_equal(bits.reshape(len(pixels), -1)[p], want)


def test_signs_only_needs_signs_and_no_pool() -> None:
    layer = random_layer(3, 1, True, 16, np.random.default_rng(0))
    x = np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(ValueError, match="floats=False needs signs=True and no pool_kernel"):
        layer(x, 1, floats=False)
    with pytest.raises(ValueError, match="floats=False needs signs=True and no pool_kernel"):
        layer(x, 1, (3, 3), signs=True, floats=False)


needs_direct = pytest.mark.skipif(kernels.active_isa() not in DIRECT_CONV_ISAS,
                                  reason="the direct conv is made where its kernel is native")


@needs_direct
@pytest.mark.parametrize("batch", [1, 3])
def test_plain_net_stem_writes_signs_only_and_keeps_the_logits(batch: int) -> None:
    """A VGG-style fast model: the pack before its plain body reads only bits, so the stem
    writes no map; logits equal, bit for bit, those of the stem writing its map beside the
    signs and of the pack packing the map itself, on 1 and 2 threads, and torch's within the
    fast path's tolerance; activations() still gives the stem's floats."""
    model = family_model("plain", seed=4, shape=(3, 16, 16))
    fast = kernels.compile(model, (3, 16, 16), exact_float=False)
    stem = fast.ops[0]
    assert isinstance(stem, DirectConv2dOp) and stem.signs == SignRequest(None, floats=False)
    x = torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(batch)) * 2
    with torch.inference_mode():
        out = stem.run(x, 1)
        assert isinstance(out, Signed) and out.made is None
        np.testing.assert_array_equal(out.nhwc, stem.layer(x.numpy(), 1))  # made on demand
        request = stem.signs
        for threads in (1, 2):
            fast.threads = threads
            runs = []
            for signs in (request, request._replace(floats=True), None):
                stem.signs = signs
                runs.append(fast(x))
            stem.signs = request
            for other in runs[1:]:
                np.testing.assert_array_equal(runs[0].view(np.uint32), other.view(np.uint32))
        ref = model(x).numpy()
    acts = fast.activations(x)
    np.testing.assert_array_equal(acts[stem.name],
                                  stem.layer(x.numpy(), 1).transpose(0, 3, 1, 2))
    error = np.abs(runs[0] - ref).max(axis=1) / max(1.0, float(np.abs(ref).max()))
    assert np.median(error) <= 1e-5 and error.max() <= 2e-2  # test_kernels_folding's bounds


@needs_direct
@pytest.mark.parametrize("family, options", [
    ("bireal", {}), ("reactnet", {}), ("resnet", {}),
], ids=["bireal", "reactnet", "resnet"])
def test_residual_stems_keep_their_map(family: str, options: dict) -> None:
    """Where the stem's consumer is a residual unit, whose shortcut reads the floats, the
    stem's request keeps them: the map is written in the same pass as the signs."""
    model = family_model(family, seed=4, shape=(3, 16, 16), **options)
    fast = kernels.compile(model, (3, 16, 16), exact_float=False)
    stem = fast.ops[0]
    assert isinstance(stem, DirectConv2dOp)
    if stem.signs is None:
        pytest.skip(f"{family}'s stem packs nothing for its consumer")
    assert stem.signs.floats
    with torch.inference_mode():
        out = stem.run(torch.randn(2, 3, 16, 16), 1)
    assert isinstance(out, Signed) and out.made is not None
