"""Binary 3x3 conv on bnnx's packed kernels versus torch fp32 conv2d, same shapes, same run.

Prints a table and writes JSON (default runs/bench/kernels.json). Ratios are measured against
torch in this very run, never against remembered numbers. One thread, batch 1, median of repeats.
Peer engines (OpenVINO, LCE) and whole networks are not in this script yet.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import kernels

SHAPES = [(64, 56), (128, 28), (256, 14), (512, 7), (128, 32), (256, 16), (512, 8)]
QUICK_SHAPES = [(64, 14), (128, 7)]


def median_ms(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def bench_shape(c: int, hw: int, repeats: int, rng: np.random.Generator) -> dict:
    x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)  # (N, C, H, W)
    w = rng.standard_normal((c, c, 3, 3)).astype(np.float32)
    xt, wt = torch.from_numpy(x), torch.from_numpy(np.sign(w))
    bits_in = kernels.pack_nchw(x)  # (N, H, W, C_words)
    wp = kernels.pack_weight(w)
    thr = rng.integers(-9 * c // 4, 9 * c // 4, size=c).astype(np.int32)
    direction = np.ones(c, np.int8)
    scale, bias = np.ones(c, np.float32), np.zeros(c, np.float32)

    with torch.inference_mode():
        t_torch = median_ms(lambda: F.conv2d(xt, wt, padding=1), repeats)
    t_packed = median_ms(
        lambda: kernels.conv2d_bits(bits_in, wp, c, thr, direction, padding=1), repeats
    )
    t_float = median_ms(
        lambda: kernels.conv2d_float(kernels.pack_nchw(x), wp, c, scale, bias, padding=1),
        repeats,
    )
    macs = c * c * 9 * hw * hw
    return {
        "channels": c,
        "size": hw,
        "torch_fp32_ms": t_torch,
        "bnnx_packed_ms": t_packed,
        "bnnx_float_io_ms": t_float,
        "speedup_packed": t_torch / t_packed,
        "speedup_float_io": t_torch / t_float,
        "gbmacs_packed": macs / (t_packed * 1e-3) / 1e9,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--quick", action="store_true", help="two small shapes, for a smoke run")
    p.add_argument("--json", default="runs/bench/kernels.json")
    args = p.parse_args()

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = [bench_shape(c, hw, args.repeats, rng)
            for c, hw in (QUICK_SHAPES if args.quick else SHAPES)]
    print(f"bnnx kernels ({kernels.active_isa()}, 1 thread, batch 1, 3x3 s1 p1, C_in = C_out)")
    print(f"{'shape':>12} {'torch fp32':>11} {'packed':>9} {'float io':>9} "
          f"{'x packed':>9} {'x float':>8} {'GbMAC/s':>8}")
    for r in rows:
        print(f"{r['channels']:>5}, {r['size']:>2}x{r['size']:<2} {r['torch_fp32_ms']:>9.3f}ms "
              f"{r['bnnx_packed_ms']:>7.3f}ms {r['bnnx_float_io_ms']:>7.3f}ms "
              f"{r['speedup_packed']:>8.1f}x {r['speedup_float_io']:>7.1f}x "
              f"{r['gbmacs_packed']:>8.1f}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"isa": kernels.active_isa(), "threads": 1, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
