"""Where the active table takes raster bands (AVX-512), a band of interior rows is tiled in
raster order across its rows, so a tile's pixels can end one row and start the next: each pixel
then has its own window and output, residual and packed-sign addresses. Checked bit for bit
against torch on every ISA (test_kernels_isa's check_conv: dots, threshold bits, floats, the
fused unit with its residual and the next layer's packed signs) on maps whose interior width is
not a multiple of the 6-pixel tile: 14 (16x16), 26 (28x28), 11 and 7 wide, rows of 1 and 2
pixels (a tile over several rows), on 1 and 2 threads (bands cut at other rows)."""

from __future__ import annotations

import pytest
from test_kernels_isa import check_conv_geometry

# (c_in, c_out, k, stride, padding, pad_value, h, w, threads): the interior band it makes.
GEOMETRIES = [
    (128, 64, 3, 1, 1, 0, 16, 16, 1),    # 14 x 14: 32 tiles of 6 and one of 4
    (64, 96, 3, 1, 1, -1, 16, 16, 2),    # the same band cut by two threads, padded taps of -1
    (64, 32, 3, 1, 1, 1, 28, 28, 2),     # 26 x 26, two threads
    (62, 40, 3, 1, 0, 0, 9, 13, 1),      # pad 0: 7 x 11, 5 blocks (a group of 4 and one of 1)
    (63, 136, 3, 2, 1, 0, 17, 17, 1),    # stride 2: 7 x 7 interior, 17 blocks
    (256, 64, 3, 1, 1, 0, 4, 4, 1),      # 2 x 2: one tile over both rows, long windows
    (64, 64, 3, 1, 1, 0, 9, 3, 2),       # rows of 1 pixel: every pixel starts a row
    (192, 128, 3, 1, 1, 0, 8, 10, 1),    # 6 x 8 over 27-word windows, group after group
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=[
    f"{g[0]}to{g[1]}_s{g[3]}p{g[4]}_{g[6]}x{g[7]}_t{g[8]}" for g in GEOMETRIES])
@pytest.mark.parametrize("seed", [0, 1])
def test_raster_bands_every_isa(geometry: tuple[int, ...], seed: int) -> None:
    check_conv_geometry(5 * 10**6 + 31 * seed + geometry[1], geometry, 1 + seed)
