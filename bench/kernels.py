"""Binary convs and linear layers on bnnx's packed kernels versus torch fp32 and OpenVINO.

Prints tables and writes JSON (default runs/bench/kernels.json). Every ratio is measured against
peers timed in this very run, never against remembered numbers: torch fp32 conv2d, OpenVINO's
BinaryConvolution (kernel-only time from its per-node profile, and its whole f32-in/f32-out
model) when `openvino` is installed, and the register-only XOR/popcount peak of each ISA path
(`bitops.peak_loop`). Batch 1, medians; one thread unless a row says otherwise. The contenders
of a row are timed interleaved (timing.interleaved_ms), so a shared machine's drifting speed
reaches all of them alike; the peak is one of them: the register-only loop sized to the layer's
MACs, so "% peak" compares two medians of the same spells. "ceiling" is the x torch that a kernel
running at that peak would show: where torch fp32 runs near its own FMA peak (two 512-bit FMA
ports here, 32 fp32 MACs a cycle against about 341 binary ones), no binary kernel can exceed it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import kernels
from kernels import bitops
from kernels._ext import ext
from kernels.timing import interleaved_ms

SHAPES = [(64, 56), (128, 28), (256, 14), (512, 7), (128, 32), (256, 16), (512, 8)]
QUICK_SHAPES = [(64, 14), (128, 7)]
THREAD_SHAPES = [(128, 32), (256, 16), (512, 8), (64, 56)]  # the four largest by MACs


@dataclass(frozen=True)
class Conv:
    """A binary conv C -> C on a size x size input (a linear layer when kernel == 0)."""

    channels: int
    size: int
    kernel: int = 3
    stride: int = 1

    @property
    def padding(self) -> int:
        return self.kernel // 2

    @property
    def label(self) -> str:
        if self.kernel == 0:
            return f"linear {self.channels}"
        s = "" if self.stride == 1 else f" s{self.stride}"
        return f"{self.kernel}x{self.kernel}{s} {self.channels:>3},{self.size:>2}x{self.size:<2}"

    @property
    def macs(self) -> int:
        if self.kernel == 0:
            return self.channels**2
        out = (self.size + 2 * self.padding - self.kernel) // self.stride + 1
        return self.channels**2 * self.kernel**2 * out * out


VARIANTS = [Conv(256, 14, 1), Conv(128, 28, 1), Conv(128, 28, 3, 2), Conv(256, 14, 3, 2),
            Conv(4096, 1, 0)]


class Layer:
    """One layer's random data in every form the contenders take."""

    def __init__(self, conv: Conv, rng: np.random.Generator) -> None:
        c, hw, k = conv.channels, conv.size, max(conv.kernel, 1)
        self.conv = conv
        self.x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
        self.w = np.sign(rng.standard_normal((c, c, k, k))).astype(np.float32)
        self.bits = kernels.pack_nchw(self.x)
        self.wp = kernels.pack_weight(self.w)
        if conv.kernel == 0:
            self.bits, self.wp = self.bits.reshape(1, -1), self.wp.reshape(c, -1)
        self.blocked = bitops.block_weight(self.wp)
        fan_in = c * k * k
        self.threshold = rng.integers(-fan_in // 4, fan_in // 4, size=c).astype(np.int32)
        self.direction = np.ones(c, np.int8)
        self.scale, self.bias = np.ones(c, np.float32), np.zeros(c, np.float32)

    def torch_fn(self) -> Callable[[], object]:
        """torch fp32 conv2d (or linear) on this layer, under inference mode."""
        xt, wt, conv = torch.from_numpy(self.x), torch.from_numpy(self.w), self.conv

        def run() -> object:
            with torch.inference_mode():
                if conv.kernel == 0:
                    return F.linear(xt.reshape(1, -1), wt.reshape(conv.channels, -1))
                return F.conv2d(xt, wt, stride=conv.stride, padding=conv.padding)

        return run

    def bnnx_fns(self, threads: int = 1) -> dict[str, Callable[[], object]]:
        """{"packed": bits in and out, "float": float in and out} on the active ISA, called the
        way the engine's ops call the extension: on layers prepared once (a linear layer ends
        in floats either way)."""
        conv, c = self.conv, self.conv.channels
        if conv.kernel == 0:
            def linear() -> object:
                rows = ext.pack_nchw(self.x).reshape(1, -1)
                return ext.linear_float(rows, self.wp, c, self.scale, self.bias, threads,
                                        self.blocked)

            return {"packed": linear, "float": linear}
        geometry = (conv.stride, conv.padding, 0, self.blocked)
        bits = bitops.bits_layer(self.wp, c, self.threshold, self.direction, *geometry)
        floats = bitops.float_layer(self.wp, c, self.scale, self.bias, *geometry)
        return {"packed": lambda: bits(self.bits, threads),
                "float": lambda: floats(ext.pack_nchw(self.x), threads)}


# -- OpenVINO's BinaryConvolution, the fastest x86 peer measured so far --------------------------


def openvino_version() -> str | None:
    try:
        import openvino
    except ImportError:
        return None
    return openvino.__version__


def openvino_fns(layer: Layer) -> tuple[Callable[[], None], list[float], Callable[[], object]]:
    """(counted, kernel_seconds, bare): OpenVINO's model of this layer on 1 CPU thread; each call
    of `counted` appends the BinaryConvolution kernel's own time to `kernel_seconds`, `bare` is
    the whole f32-in/f32-out model.

    FakeQuantize with levels=2 binarises the input in front of BinaryConvolution (xnor-popcount,
    u1 weights: bit 1 = +1, LSB first, pad value +1). It is given in OpenVINO's binarization
    form (threshold 0, outputs 0/1), which its CPU plugin runs as a JIT kernel emitting u1 bits;
    other ranges (e.g. 0..1e-6 -> -1/+1) add a reference-code f32->u1 reorder that costs 3x the
    conv, which would make OpenVINO look slower than it is. The kernel time is read
    from a request compiled with PERF_COUNT; the whole-model time from a second request without
    it, its input tensor bound once and `infer()` called bare (no per-call numpy conversion), so
    neither the counters nor Python copies are charged to OpenVINO.
    """
    import openvino as ov
    import openvino.opset13 as ops

    conv, x = layer.conv, layer.x
    param = ops.parameter(list(x.shape), ov.Type.f32)

    def const(v: float):
        return ops.constant(np.full((1, 1, 1, 1), v, np.float32))

    binary = ops.fake_quantize(param, const(0.0), const(0.0), const(0.0), const(1.0), 2)
    weight = ov.Tensor(ov.Type.u1, ov.Shape(list(layer.w.shape)))
    weight.data[:] = np.packbits((layer.w > 0).ravel(), bitorder="little")
    p = [conv.padding] * 2
    node = ops.binary_convolution(binary, ops.constant(weight), [conv.stride] * 2, p, p, [1, 1],
                                  "xnor-popcount", 1.0)
    core, ov_model = ov.Core(), ov.Model([node.output(0)], [param])
    config = {"INFERENCE_NUM_THREADS": "1", "NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY"}
    requests = [core.compile_model(ov_model, "CPU", {**config, "PERF_COUNT": perf})
                .create_infer_request() for perf in ("YES", "NO")]
    for request in requests:
        request.set_input_tensor(ov.Tensor(x))
    counted, bare = requests
    kernel_seconds: list[float] = []

    def infer_counted() -> None:
        counted.infer()
        kernel_seconds.extend(p.real_time.total_seconds() for p in counted.profiling_info
                              if p.node_type == "BinaryConvolution")

    return infer_counted, kernel_seconds, bare.infer


# -- tables --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeakLoop:
    """The active ISA's register-only peak loop sized to about a layer's binary MACs: timed among
    a row's contenders, its time over the layer's is the layer's share of the peak."""

    iterations: int
    macs: int

    @classmethod
    def like(cls, conv: Conv) -> PeakLoop:
        per_iteration = bitops.peak_loop(1)
        iterations = max(1, round(conv.macs / per_iteration))
        return cls(iterations, iterations * per_iteration)

    def __call__(self) -> int:
        return bitops.peak_loop(self.iterations)


def measure(conv: Conv, repeats: int, rng: np.random.Generator,
            with_openvino: bool = False) -> dict:
    """One row: torch, bnnx packed and float io (and OpenVINO's kernel and whole model), and the
    peak loop, timed interleaved in one run (see timing.interleaved_ms)."""
    layer, peak = Layer(conv, rng), PeakLoop.like(conv)
    fns = {"torch": layer.torch_fn(), **layer.bnnx_fns(), "peak": peak}
    kernel_seconds: list[float] = []
    if with_openvino and conv.kernel > 0:
        fns["ov_kernel"], kernel_seconds, fns["ov_model"] = openvino_fns(layer)
    t = interleaved_ms(fns, repeats)
    ov_kernel = 1e3 * float(np.median(kernel_seconds)) if kernel_seconds else None
    return {**timed_row(conv, 1, t, peak), "openvino_kernel_ms": ov_kernel,
            "openvino_model_ms": t.get("ov_model")}


def timed_row(conv: Conv, threads: int, t: dict[str, float], peak: PeakLoop) -> dict:
    """A table row from interleaved times {"torch", "packed", "float", "peak"}: "% peak" is of
    the one-thread peak loop timed beside it (2 threads can reach 200%); "ceiling" is the x torch
    bnnx would reach running at that peak, the most any binary kernel on this core can show
    against this torch time (a speedup goal above it is out of reach here). "% best peak" is of
    the run's best peak measurement (add_best_peak_shares), a stricter yardstick."""
    gbmacs = conv.macs / (t["packed"] * 1e-3) / 1e9
    peak_gbmacs = peak.macs / (t["peak"] * 1e-3) / 1e9
    return {"op": conv.label, "channels": conv.channels, "size": conv.size,
            "kernel": conv.kernel, "stride": conv.stride, "isa": kernels.active_isa(),
            "threads": threads, "torch_fp32_ms": t["torch"], "bnnx_packed_ms": t["packed"],
            "bnnx_float_io_ms": t["float"], "speedup_packed": t["torch"] / t["packed"],
            "speedup_float_io": t["torch"] / t["float"], "gbmacs_packed": gbmacs,
            "peak_gbmacs": peak_gbmacs, "pct_peak": 100 * gbmacs / peak_gbmacs,
            "speedup_ceiling": t["torch"] / t["packed"] * peak_gbmacs / gbmacs}


def add_best_peak_shares(rows: list[dict], peaks: dict[str, float]) -> None:
    """% of the best one-thread peak the run measured for each row's ISA."""
    for r in rows:
        r["pct_best_peak"] = 100 * r["gbmacs_packed"] / peaks[r["isa"]]


def print_rows(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{'op':>20} {'isa':>13} {'torch fp32':>11} {'packed':>9} {'float io':>9} "
          f"{'x packed':>9} {'x float':>8} {'GbMAC/s':>8} {'% peak':>7} {'% best':>7} "
          f"{'ceiling':>8} "
          f"{'OV kernel':>10} {'OV model':>9}")
    for r in rows:
        ov_k, ov_m = r["openvino_kernel_ms"], r["openvino_model_ms"]
        ov = (f"{ov_k:>8.3f}ms {ov_m:>7.3f}ms" if ov_k is not None else f"{'-':>10} {'-':>9}")
        isa = f"{r['isa']} x{r['threads']}"
        print(f"{r['op']:>20} {isa:>13} {r['torch_fp32_ms']:>9.3f}ms {r['bnnx_packed_ms']:>7.3f}ms "
              f"{r['bnnx_float_io_ms']:>7.3f}ms {r['speedup_packed']:>8.1f}x "
              f"{r['speedup_float_io']:>7.1f}x {r['gbmacs_packed']:>8.1f} {r['pct_peak']:>6.0f}% "
              f"{r['pct_best_peak']:>6.0f}% {r['speedup_ceiling']:>7.1f}x {ov}")


def thread_row(conv: Conv, threads: int, repeats: int, rng: np.random.Generator) -> dict:
    """bnnx on `threads` threads against itself on one and torch on one, interleaved."""
    layer, peak = Layer(conv, rng), PeakLoop.like(conv)
    many = layer.bnnx_fns(threads)
    t = interleaved_ms({"torch": layer.torch_fn(), "one": layer.bnnx_fns()["packed"],
                        "packed": many["packed"], "float": many["float"], "peak": peak}, repeats)
    return {**timed_row(conv, threads, t, peak), "scaling": t["one"] / t["packed"],
            "openvino_kernel_ms": None, "openvino_model_ms": None}


def measure_peaks() -> dict[str, float]:
    """Each usable ISA's register-only peak (GbMAC/s), best of three."""
    return {isa: max(bitops.measure_peak_gmacs(isa) for _ in range(3))
            for isa in kernels.available_isas()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=60, help="calls per contender")
    p.add_argument("--quick", action="store_true", help="two small shapes, for a smoke run")
    p.add_argument("--json", default="runs/bench/kernels.json")
    args = p.parse_args()

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    active = kernels.active_isa()
    peaks = measure_peaks()
    ov_version = None if args.quick else openvino_version()
    if not args.quick and ov_version is None:
        print("OpenVINO not installed (pip install openvino): its columns are skipped")

    shapes = [Conv(c, hw) for c, hw in (QUICK_SHAPES if args.quick else SHAPES)]
    with_ov = ov_version is not None
    rows = [measure(conv, args.repeats, rng, with_ov) for conv in shapes]
    report = {"isa": active, "threads": 1, "best_peak_gbmacs": peaks, "openvino": ov_version,
              "rows": rows, "isa_rows": [], "variant_rows": [], "thread_rows": []}
    if not args.quick:
        for isa in kernels.available_isas():
            if isa == active:
                continue
            with kernels.use_isa(isa):
                report["isa_rows"] += [measure(conv, args.repeats, rng) for conv in shapes]
        report["variant_rows"] = [measure(conv, args.repeats, rng, with_ov)
                                  for conv in VARIANTS]
        report["thread_rows"] = [thread_row(Conv(*s), 2, args.repeats, rng)
                                 for s in THREAD_SHAPES]
    # "% best": of the best peak measurement at the start and at the end of the run.
    peaks = {isa: max(v, again) for (isa, v), again in zip(peaks.items(),
                                                           measure_peaks().values(), strict=True)}
    report["best_peak_gbmacs"] = peaks
    for key in ("rows", "isa_rows", "variant_rows", "thread_rows"):
        add_best_peak_shares(report[key], peaks)
    print("bnnx kernels, batch 1, C_in = C_out; contenders timed interleaved, the register-only "
          "XOR/popcount peak loop among them (% peak); best peaks of run start and end (% best, "
          "GbMAC/s): " + ", ".join(f"{isa} {v:.0f}" for isa, v in peaks.items()))
    print_rows(f"3x3 s1 p1, {active}, 1 thread; OpenVINO {ov_version or 'absent'}", rows)
    if not args.quick:
        print_rows("3x3 s1 p1, other ISA paths (BNNX_ISA / kernels.use_isa)", report["isa_rows"])
        print_rows("1x1, stride 2 and binary linear", report["variant_rows"])
        print_rows("2 threads (scaling over 1 thread: "
                   + ", ".join(f"{r['scaling']:.2f}x" for r in report["thread_rows"]) + ")",
                   report["thread_rows"])
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
