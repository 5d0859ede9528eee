"""A microkernel call covers up to 16 blocks of 8 output channels; the AVX-512 table walks them in
one of two ways, checked here bit for bit against torch on every ISA (test_kernels_isa's
check_conv: dots, threshold bits, floats, the fused unit with and without its activation, and the
unit's packed signs). Where the call's weights fit in L1 (64-128 channels over short windows),
each tile runs all its groups of 4 blocks before the next tile, so a pixel's channels are written
together; elsewhere (long windows, channel counts off multiples of 32, more than 16 blocks) one
group runs over the whole call after another. Windows wholly in the padding have no word to
start their sums with and must still sum to 0."""

from __future__ import annotations

import pytest
from test_kernels_isa import check_conv_geometry

# (c_in, c_out, k, stride, padding, pad_value, h, w, threads): what each case takes.
GEOMETRIES = [
    (64, 64, 3, 1, 1, 0, 12, 23, 1),     # all groups per tile, rows of 3 tiles + 3 pixels
    (64, 96, 3, 1, 1, 1, 13, 14, 2),     # three groups per tile, padded taps of +1
    (128, 128, 3, 1, 1, -1, 9, 19, 1),   # 16 blocks x 18 words: 18 KiB, still per tile
    (192, 128, 3, 1, 1, 0, 8, 9, 1),     # 27 words: 27 KiB of weights, group after group
    (64, 256, 3, 2, 1, 0, 11, 13, 2),    # two calls of 16 blocks
    (64, 40, 3, 1, 1, 0, 10, 11, 1),     # 5 blocks: a group of 4 and one of 1
    (100, 72, 1, 2, 2, -1, 9, 8, 1),     # 9 blocks; a 1x1 window in the padding (no words)
    (64, 64, 1, 1, 1, 1, 7, 9, 1),       # 1 word per window, border windows all padding
    (64, 136, 5, 1, 2, 0, 9, 10, 2),     # 17 blocks: 16 over 25 words (25 KiB), then 1
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=[
    f"{g[0]}to{g[1]}_k{g[2]}s{g[3]}p{g[4]}" for g in GEOMETRIES])
@pytest.mark.parametrize("seed", [0, 1])
def test_call_groups_every_isa(geometry: tuple[int, ...], seed: int) -> None:
    check_conv_geometry(3 * 10**6 + 17 * seed + geometry[1], geometry, 1 + seed)
