"""Whole networks on bnnx's packed kernels versus OpenVINO and their fp32 twins in torch.

Prints a table and writes JSON (default runs/bench/networks.json). Every number is measured in
this run: the packed network's batch-1 forward `packed(x)`, the same network compiled with
`exact_float=False` ("bnnx fast": BatchNorm and the input normalisation folded into the float
convs, stem and 1x1 shortcut convs on bnnx's direct kernel), the same network built natively in
OpenVINO (kernels.to_openvino: BinaryConvolution on u1 bits, fp32 float parts, compiled with
INFERENCE_NUM_THREADS = threads, INFERENCE_PRECISION_HINT f32 and the latency hint, a bare
`infer()` on a bound input) and its fp32 twin (the same `spaces.build_model` architecture with
quantizers "none", in eval mode under torch.inference_mode, same thread count), with one
forward as PackedModel.profile times it (the latency a search stores), are timed interleaved
(timing.interleaved_ms, with its settle pause), so all sample the same spells of a shared
machine. OpenVINO's model is first checked to give the packed model's logits (argmax
equal on random inputs; the largest difference is printed). Per part (stem, each body unit,
head) at 1 thread: bnnx's `PackedModel.profile` layers beside OpenVINO's per-node counters
(PERF_COUNT), summed into the same parts. Every row and part also gets its floor: the time its
MACs take at this core's register-only peaks (bitops.peak_loop: XOR/popcount binary MACs, fp32
fused multiply-adds; best of the run's start and end, times the thread count), below which no
engine doing this arithmetic can run; floor / OpenVINO says how far under OpenVINO any bnnx can
get here. The fast path's floor counts the multiply-adds its algorithms do (a Winograd stem's
GEMMs, fewer than the conv's MACs). Before and after each 2-thread row, a cache-line round trip
between two threads and a register loop on 2 concurrent threads over 1 (vcpu_state) record
where the VM's vCPUs were and how many cores it gave. Rows:
  - Binary VGG-Small at 32x32 (plain family), goals >= 8x faster than its fp32 twin on 1 thread
    and bnnx / OpenVINO <= 0.8 on 1 thread, <= 0.9 on 2 (issue 14);
  - Bi-Real-Net-18 shaped (bireal family) at 224x224, goals < 4 ms on 1 thread and the same
    bnnx / OpenVINO ratios;
  - a ReActNet (RPReLU) network at 32x32, ratios reported without a goal;
  - compile + profile wall time of typical search candidates, goal <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import kernels
from kernels import bitops
from kernels.profiling import time_ops
from kernels.timing import interleaved_ms
from kernels.to_openvino import to_openvino
from search.objective import PROFILE_REPEATS
from spaces import Config, build_model


@dataclass(frozen=True)
class Net:
    """A network to time: a name, its arch fields, input (C, H, W), classes, what it stands for."""

    name: str
    arch: dict[str, Any]
    shape: tuple[int, int, int]
    classes: int
    note: str

    def config(self, quantizer: str | None = None) -> Config:
        quant = {} if quantizer is None else {"input_quantizer": quantizer,
                                              "weight_quantizer": quantizer}
        return Config.from_dict({"arch": self.arch, "quant": quant})

    def model(self, fp32_twin: bool = False) -> torch.nn.Module:
        config = self.config("none" if fp32_twin else None)
        return build_model(config, self.shape[0], self.classes, self.shape[1]).eval()

    @property
    def label(self) -> str:
        a = self.arch
        return (f"{self.name} ({a['family']} w{a['width']} d{a['depth']} "
                f"b{a['blocks_per_stage']}, {'x'.join(map(str, self.shape))})")


VGG = Net("vgg-small", {"family": "plain", "width": 128, "depth": 3, "blocks_per_stage": 2},
          (3, 32, 32), 10, "fp 3x3 conv 3->128 + BN stem, binary 3x3 convs 128,128/pool, "
          "256,256/pool, 512,512/pool, fp linear 8192->10")
BIREAL = Net("bireal-18", {"family": "bireal", "width": 64, "depth": 4, "blocks_per_stage": 4,
                          "stem_layout": "imagenet"},
             (3, 224, 224), 1000, "fp 7x7/2 conv 3->64 + BN + 3x3/2 max-pool stem, 16 Bi-Real "
             "1-conv units 64/128/256/512 at 56/28/14/7, avgpool+fp1x1 shortcuts, "
             "fp linear 512->1000")
REACTNET = Net("reactnet-32", {"family": "reactnet", "width": 128, "depth": 3,
                              "blocks_per_stage": 2, "activation": "rprelu"},
               (3, 32, 32), 10, "fp 3x3 conv 3->128 + BN stem, 6 ReActNet blocks (binary 3x3 + "
               "1x1 units, each BN + shortcut + RPReLU fused into its conv) 128/256/512 at "
               "32/16/8, fp linear 512->10; no goal: shows a residual family's float share")
CANDIDATES = [
    Net("quick mid", {"family": "plain", "width": 32, "depth": 2, "blocks_per_stage": 2},
        (1, 8, 8), 10, "quick preset mid config on digits"),
    Net("survey bireal", {"family": "bireal", "width": 64, "depth": 3, "blocks_per_stage": 2},
        (1, 28, 28), 10, "survey-like bireal on a 28x28 grey set"),
    Net("survey bireal max", {"family": "bireal", "width": 128, "depth": 4,
                              "blocks_per_stage": 3}, (1, 28, 28), 10,
        "survey preset's largest bireal on 28x28"),
]


def quick_net(net: Net, width: int, size: int) -> Net:
    """A small version of `net` for the smoke run."""
    return Net(net.name + " (quick)", {**net.arch, "width": width},
               (net.shape[0], size, size), net.classes, "small smoke-run shape")


def openvino_version() -> str | None:
    try:
        import openvino
    except ImportError:
        return None
    return openvino.__version__


class OpenVinoNet:
    """The network built natively in OpenVINO (kernels.to_openvino), batch 1, compiled on CPU in
    fp32 once per thread count; requests bind their input once, so `infer()` runs bare."""

    def __init__(self, model: torch.nn.Module, shape: tuple[int, ...]) -> None:
        import openvino as ov

        self.ov, self.core = ov, ov.Core()
        self.model = to_openvino(model, shape)

    def request(self, threads: int, x: np.ndarray, perf_count: bool = False) -> Any:
        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "PERF_COUNT": perf_count}
        request = self.core.compile_model(self.model, "CPU", config).create_infer_request()
        request.set_input_tensor(self.ov.Tensor(np.ascontiguousarray(x)))
        return request

    def check(self, packed: kernels.PackedModel, shape: tuple[int, ...],
              samples: int = 4) -> dict[str, Any]:
        """Does it compute the packed model's logits? Argmax and largest difference over random
        batch-1 inputs."""
        g = torch.Generator().manual_seed(1)
        xs = [torch.randn((1, *shape), generator=g).numpy() for _ in range(samples)]
        request = self.request(1, xs[0])
        equal, diff = True, 0.0
        for x in xs:
            request.set_input_tensor(self.ov.Tensor(x))
            got, ref = request.infer()[0], packed(x)
            equal &= bool((got.argmax(1) == ref.argmax(1)).all())
            diff = max(diff, float(np.abs(got - ref).max()))
        return {"argmax_equal": equal, "max_abs_diff": diff, "samples": samples}

    def counted(self, x: np.ndarray) -> Callable[[], dict[str, float]]:
        """A 1-thread infer on x giving ms per part from its per-node counters: a node fused
        from several layers counts for the part of its first (the conv the others fused into)."""
        request = self.request(1, x, perf_count=True)
        runtime = request.get_compiled_model().get_runtime_model().get_ordered_ops()
        layers = {n.get_friendly_name(): n.get_rt_info()["originalLayersNames"].astype(str)
                  for n in runtime}

        def run() -> dict[str, float]:
            request.infer()
            parts: dict[str, float] = {}
            for p in request.profiling_info:  # a node under a microsecond may read NOT_RUN
                part = part_of(layers.get(p.node_name) or p.node_name)
                if part != "other" or p.status == p.Status.EXECUTED:
                    parts[part] = parts.get(part, 0.0) + 1e3 * p.real_time.total_seconds()
            return parts

        return run


def part_of(name: str) -> str:
    """The part a layer or OpenVINO node belongs to: stem, body.<unit> or head (nodes are named
    "<layer path>/<type>", a reorder after the node it follows, see kernels.to_openvino)."""
    found = re.search(r"(stem|head|body\.\d+)(?=[./]|$)", name)
    return found.group(1) if found else "other"


def timed_ms(packed: kernels.PackedModel, fast: kernels.PackedModel, twin: torch.nn.Module,
             peer: OpenVinoNet | None, shape: tuple[int, ...], threads: int,
             repeats: int) -> dict[str, float]:
    """Batch-1 forwards of the packed network (exact and fast), OpenVINO's (when given) and the
    fp32 twin, timed interleaved (timing.interleaved_ms) on one input, all on `threads`
    threads: the packed models' own and torch's intra-op ones, which their float ops use too
    (as PackedModel.profile sets them). "stored" is one forward as PackedModel.profile times it
    op by op, whose median search/objective.py stores as a trial's latency."""
    x = torch.randn((1, *shape), generator=torch.Generator().manual_seed(0))
    fns: dict[str, Callable[[], Any]] = {"bnnx": lambda: packed(x), "bnnx fast": lambda: fast(x),
                                         "torch": lambda: twin(x),
                                         "stored": lambda: time_ops(packed.ops, x, threads, 1, 0)}
    if peer is not None:
        fns["openvino"] = peer.request(threads, x.numpy()).infer
    previous, own = torch.get_num_threads(), (packed.threads, fast.threads)
    torch.set_num_threads(threads)
    packed.threads = fast.threads = threads
    try:
        with torch.inference_mode():
            return interleaved_ms(fns, repeats)
    finally:
        torch.set_num_threads(previous)
        packed.threads, fast.threads = own


RATIO_GOALS = {1: 0.8, 2: 0.9}  # bnnx / OpenVINO, by thread count (issue 14)


def time_network(net: Net, threads_list: list[int], repeats: int,
                 goal: Callable[[float, float], tuple[str, bool]] | None, with_openvino: bool,
                 ratio_goal: bool) -> tuple[list, dict, dict]:
    """Rows (one per thread count) of bnnx vs OpenVINO and the fp32 twin, the 1-thread
    per-layer profile, and the 1-thread per-part times of both engines."""
    model = net.model()
    packed = kernels.compile(model, net.shape)
    fast = kernels.compile(model, net.shape, exact_float=False)
    twin = net.model(fp32_twin=True)
    peer = OpenVinoNet(model, net.shape) if with_openvino else None
    check = peer.check(packed, net.shape) if peer is not None else None
    if check is not None and not check["argmax_equal"]:
        print(f"{net.name}: OpenVINO's argmax differs from the packed model's (max abs diff "
              f"{check['max_abs_diff']:.3g}): its times are left out")
        peer = None
    macs, fast_macs = part_macs(packed).values(), part_macs(fast).values()
    rows = []
    for threads in threads_list:
        before = vcpu_state() if threads > 1 else None
        t = timed_ms(packed, fast, twin, peer, net.shape, threads, repeats)
        after = vcpu_state() if threads > 1 else None
        goal_text, met = goal(t["bnnx"], t["torch"]) if goal and threads == 1 else ("-", None)
        ov_ms = t.get("openvino")
        ratio = None if ov_ms is None else t["bnnx"] / ov_ms
        fast_ratio = None if ov_ms is None else t["bnnx fast"] / ov_ms
        limit = RATIO_GOALS.get(threads) if ratio_goal else None
        rows.append({"name": net.name, "label": net.label, "built": net.note,
                     "threads": threads, "isa": kernels.active_isa(), "bnnx_ms": t["bnnx"],
                     "torch_fp32_ms": t["torch"], "speedup": t["torch"] / t["bnnx"],
                     "goal": goal_text, "met": met, "openvino_ms": ov_ms,
                     "bnnx_over_openvino": ratio, "bnnx_fast_ms": t["bnnx fast"],
                     "bnnx_fast_over_openvino": fast_ratio, "stored_ms": t["stored"],
                     "stored_over_call": t["stored"] / t["bnnx"],
                     "openvino_goal": "-" if limit is None else f"<= {limit}",
                     "openvino_met": None if limit is None or ratio is None else ratio <= limit,
                     "openvino_fast_met": (None if limit is None or fast_ratio is None
                                           else fast_ratio <= limit),
                     "openvino_check": check, "vcpus": [before, after],
                     "binary_macs": sum(m["binary_macs"] for m in macs),
                     "float_macs": sum(m["float_macs"] for m in macs),
                     "fast_float_macs": sum(m["float_macs"] for m in fast_macs)})
    profile = packed.profile(threads=1, repeats=repeats)
    layers = {"name": net.name, "total_ms": profile.total_ms,
              "layers": [{"name": lp.name, "kind": lp.kind, "ms": lp.median_ms}
                         for lp in profile.layers]}
    return rows, layers, part_breakdown(net, packed, fast, peer, repeats)


def part_breakdown(net: Net, packed: kernels.PackedModel, fast: kernels.PackedModel,
                   peer: OpenVinoNet | None, repeats: int) -> dict:
    """Median ms per part at 1 thread: bnnx's profiled forwards, exact and fast (layers summed
    per part_of), and OpenVINO's counted ones, alternating, so all sample the same spells of
    the machine."""
    x = torch.randn((1, *net.shape), generator=torch.Generator().manual_seed(0)).numpy()
    counted = peer.counted(x) if peer is not None else None
    bnnx_runs, fast_runs, ov_runs = [], [], []

    def parts(model: kernels.PackedModel) -> dict[str, float]:
        run: dict[str, float] = {}
        for lp in model.profile(threads=1, repeats=1, warmup=1).layers:
            run[part_of(lp.name)] = run.get(part_of(lp.name), 0.0) + lp.median_ms
        return run

    for _ in range(repeats):
        bnnx_runs.append(parts(packed))
        fast_runs.append(parts(fast))
        if counted is not None:
            counted()  # warm, as the profile's warm-up forward
            ov_runs.append(counted())

    def medians(runs: list[dict[str, float]]) -> dict[str, float]:
        names = dict.fromkeys(p for r in runs for p in r)
        return {p: float(np.median([r.get(p, 0.0) for r in runs])) for p in names}

    def total(runs: list[dict[str, float]]) -> float | None:
        return float(np.median([sum(r.values()) for r in runs])) if runs else None

    macs, fast_macs = part_macs(packed), part_macs(fast)
    bnnx, fast_ms, ov = medians(bnnx_runs), medians(fast_runs), medians(ov_runs)
    return {"name": net.name, "bnnx_total_ms": total(bnnx_runs),
            "bnnx_fast_total_ms": total(fast_runs), "openvino_total_ms": total(ov_runs),
            "parts": [{"part": p, "bnnx_ms": bnnx.get(p), "bnnx_fast_ms": fast_ms.get(p),
                       "openvino_ms": ov.get(p),
                       **macs.get(p, {"binary_macs": 0, "float_macs": 0}),
                       "fast_float_macs": fast_macs.get(p, {}).get("float_macs", 0)}
                      for p in dict.fromkeys([*bnnx, *ov])]}


def part_macs(packed: kernels.PackedModel) -> dict[str, dict[str, int]]:
    """Per part (part_of), the binary MACs and the fp32 multiply-adds the model's algorithms
    do: its layers' nominal MACs, except where an op computes with fewer (a Winograd stem's
    GEMMs, DirectConv2dOp.algorithm_macs)."""
    macs: dict[str, dict[str, int]] = {}
    for op, layer in zip(packed.ops, packed.layers_info(), strict=True):
        part = macs.setdefault(part_of(layer.name), {"binary_macs": 0, "float_macs": 0})
        algorithm = getattr(op, "algorithm_macs", None)
        part["binary_macs"] += layer.binary_macs
        part["float_macs"] += (layer.float_macs if algorithm is None
                               else algorithm(layer.input_shape))
    return macs


def machine_peaks() -> dict[str, float]:
    """This core's register-only peaks, G MAC/s on 1 thread, on the best ISA path it has
    (OpenVINO and torch pick theirs too): XOR/popcount binary MACs and fp32 multiply-adds."""
    isa = kernels.available_isas()[0]
    return {a: bitops.measure_peak_gmacs(isa, arithmetic=a) for a in bitops.PEAK_ARITHMETIC}


def core_scaling(threads: int, iterations: int = 1 << 22) -> float:
    """The register-only XOR/popcount loop's throughput on `threads` concurrent threads over its
    1-thread throughput, best of three: how many cores the VM gives right now (2.0 on two free
    cores; near 1 while its vCPUs share one core). A 2-thread row's ratios depend on it."""
    def rate(n: int) -> float:
        done: list[int] = []
        workers = [threading.Thread(target=lambda: done.append(bitops.peak_loop(iterations)))
                   for _ in range(n)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return sum(done) / (time.perf_counter() - start)

    return max(rate(threads) for _ in range(3)) / max(rate(1) for _ in range(3))


def vcpu_state() -> dict[str, float]:
    """Where the VM's two vCPUs are now: the best of three cache-line round trips between two
    threads (ns; about 100 when they sit near each other, 350 far, which slows every engine's
    2-thread time) and core_scaling(2)."""
    return {"round_trip_ns": min(bitops.thread_round_trip_ns() for _ in range(3)),
            "core_scaling": core_scaling(2)}


def floor_ms(binary_macs: int, float_macs: int, peaks: dict[str, float],
             threads: int = 1) -> float:
    """The time these MACs take at the peaks, each of `threads` cores at the 1-thread peak: no
    engine doing binary convs as XOR/popcount and float parts in fp32 runs below it."""
    return (binary_macs / peaks["binary"] + float_macs / peaks["float"]) / 1e6 / threads


def add_floors(networks: list[dict], parts: list[dict], peaks: dict[str, float]) -> None:
    """Each row's and part's floor_ms (the network's MACs) and fast_floor_ms (the fast path's
    algorithms': a Winograd stem does fewer multiply-adds), and a row's floor / OpenVINO."""
    for r in networks:
        r["floor_ms"] = floor_ms(r["binary_macs"], r["float_macs"], peaks, r["threads"])
        r["fast_floor_ms"] = floor_ms(r["binary_macs"], r["fast_float_macs"], peaks,
                                      r["threads"])
        ov = r["openvino_ms"]
        r["floor_over_openvino"] = None if ov is None else r["floor_ms"] / ov
    for b in parts:
        for p in b["parts"]:
            p["floor_ms"] = floor_ms(p["binary_macs"], p["float_macs"], peaks)
            p["fast_floor_ms"] = floor_ms(p["binary_macs"], p["fast_float_macs"], peaks)
        b["floor_total_ms"] = sum(p["floor_ms"] for p in b["parts"])
        b["fast_floor_total_ms"] = sum(p["fast_floor_ms"] for p in b["parts"])


def time_candidate(net: Net) -> dict:
    """Wall time of compile + profile(repeats=PROFILE_REPEATS), as search/objective.py runs it."""
    model = net.model()
    start = time.perf_counter()
    packed = kernels.compile(model, net.shape)
    compiled = time.perf_counter()
    profile = packed.profile(threads=1, repeats=PROFILE_REPEATS)
    end = time.perf_counter()
    return {"name": net.name, "label": net.label, "built": net.note, "threads": 1,
            "compile_s": compiled - start, "profile_s": end - compiled, "wall_s": end - start,
            "latency_ms": profile.total_ms, "goal": "<= 1 s", "met": end - start <= 1.0}


def speedup_goal(bnnx: float, fp32: float) -> tuple[str, bool]:
    return ">= 8x vs fp32", fp32 / bnnx >= 8.0


def latency_goal(bnnx: float, fp32: float) -> tuple[str, bool]:
    return "< 4 ms", bnnx < 4.0


def ratio_text(ms: float | None, peer_ms: float | None, width: int) -> str:
    return f"{'-':>{width}}" if ms is None or not peer_ms else f"{ms / peer_ms:>{width}.2f}"


def met_text(met: bool | None) -> str:
    return "-" if met is None else ("MET" if met else "not met")


def ratio_met_text(row: dict) -> str:
    """The OpenVINO ratio goal: MET by the exact path, "fast" where only the fast path meets it."""
    return "fast" if row["openvino_fast_met"] and not row["openvino_met"] else met_text(
        row["openvino_met"])


def ms_text(ms: float | None, width: int) -> str:
    return f"{'-':>{width}}" if ms is None else f"{ms:>{width - 2}.3f}ms"


def print_report(networks: list[dict], candidates: list[dict], breakdowns: list[dict],
                 parts: list[dict]) -> None:
    print(f"\n{'network':<62} {'thr':>3} {'bnnx':>10} {'bnnx fast':>10} {'OpenVINO':>10} "
          f"{'bnnx/OV':>8} {'fast/OV':>8} {'floor':>8} {'floor/OV':>8} {'fast flr':>8} "
          f"{'goal':>7} {'met':>8} {'torch fp32':>11} {'x fp32':>7} {'goal':>14} {'met':>8}")
    for r in networks:
        ov = r["openvino_ms"]
        print(f"{r['label']:<62} {r['threads']:>3} {ms_text(r['bnnx_ms'], 10)} "
              f"{ms_text(r['bnnx_fast_ms'], 10)} {ms_text(ov, 10)} "
              f"{ratio_text(r['bnnx_ms'], ov, 8)} {ratio_text(r['bnnx_fast_ms'], ov, 8)} "
              f"{ms_text(r['floor_ms'], 8)} {ratio_text(r['floor_ms'], ov, 8)} "
              f"{ms_text(r['fast_floor_ms'], 8)} {r['openvino_goal']:>7} "
              f"{ratio_met_text(r):>8} {ms_text(r['torch_fp32_ms'], 11)} "
              f"{r['speedup']:>6.1f}x {r['goal']:>14} {met_text(r['met']):>8}")
    print("  floor: the row's MACs at the peaks above (binary XOR/popcount, fp32 multiply-add), "
          "each thread at the 1-thread peak; floor/OV is the lowest bnnx/OV any engine doing this "
          "arithmetic reaches here; fast flr: the same for the fast path's algorithms (a Winograd "
          "stem does fewer multiply-adds). met: MET by bnnx (exact), fast: by the fast path only")
    for r in networks:
        check = r["openvino_check"]
        if r["threads"] == 1 and check is not None:
            print(f"  {r['name']}: OpenVINO vs packed logits on {check['samples']} inputs: "
                  f"argmax {'equal' if check['argmax_equal'] else 'DIFFERENT'}, max abs diff "
                  f"{check['max_abs_diff']:.2e}")
    for r in networks:
        print(f"  {r['name']}, {r['threads']} thread(s): the latency a search stores (the "
              f"profile's op-by-op forward) {r['stored_ms']:.3f} ms = {r['stored_over_call']:.2f}x "
              "a packed(x) call")
        if r["threads"] > 1:
            before, after = r["vcpus"]
            print(f"    vCPUs before / after the row: a cache-line round trip "
                  f"{before['round_trip_ns']:.0f} / {after['round_trip_ns']:.0f} ns (near ~100, "
                  f"far ~350); a register loop on 2 threads {before['core_scaling']:.2f} / "
                  f"{after['core_scaling']:.2f}x one")
    print(f"\n{'search candidate':<62} {'compile':>9} {'profile':>9} {'wall':>8} "
          f"{'latency':>10} {'goal':>8} {'met':>8}")
    for r in candidates:
        print(f"{r['label']:<62} {r['compile_s']:>8.3f}s {r['profile_s']:>8.3f}s "
              f"{r['wall_s']:>7.3f}s {r['latency_ms']:>8.3f}ms {r['goal']:>8} "
              f"{met_text(r['met']):>8}")
    print("\nbuilt:")
    for r in networks + candidates:
        if r["threads"] == 1:
            print(f"  {r['name']}: {r['built']}")
    for b in breakdowns:
        print(f"\nper layer, {b['name']}, 1 thread (median ms, share of the total)")
        for layer in b["layers"]:
            print(f"  {layer['name']:<12} {layer['kind']:<26} {layer['ms']:>9.3f} "
                  f"{100 * layer['ms'] / b['total_ms']:>5.1f}%")
    for b in parts:
        print(f"\nper part, {b['name']}, 1 thread (medians: bnnx profile layers, exact and "
              "fast, OpenVINO per-node counters)")
        print(f"  {'part':<10} {'bnnx':>10} {'bnnx fast':>10} {'OpenVINO':>10} {'bnnx/OV':>8} "
              f"{'fast/OV':>8} {'floor':>10} {'floor/OV':>8} {'fast floor':>10}")
        for p in b["parts"] + [{"part": "sum", "bnnx_ms": b["bnnx_total_ms"],
                                "bnnx_fast_ms": b["bnnx_fast_total_ms"],
                                "openvino_ms": b["openvino_total_ms"],
                                "floor_ms": b["floor_total_ms"],
                                "fast_floor_ms": b["fast_floor_total_ms"]}]:
            bnnx, fast, ov, floor = p["bnnx_ms"], p["bnnx_fast_ms"], p["openvino_ms"], p["floor_ms"]
            print(f"  {p['part']:<10} {ms_text(bnnx, 10)} {ms_text(fast, 10)} {ms_text(ov, 10)} "
                  f"{ratio_text(bnnx, ov, 8)} {ratio_text(fast, ov, 8)} {ms_text(floor, 10)} "
                  f"{ratio_text(floor, ov, 8)} {ms_text(p['fast_floor_ms'], 10)}")


def _load() -> float | None:
    """The 1-minute load average: other processes skew the 2-thread rows most."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=20, help="forwards per contender")
    p.add_argument("--quick", action="store_true", help="small shapes, for a smoke run")
    p.add_argument("--json", default="runs/bench/networks.json")
    args = p.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    vgg, bireal, reactnet = VGG, BIREAL, REACTNET
    candidates = CANDIDATES
    if args.quick:
        vgg, bireal = quick_net(VGG, 16, 16), quick_net(BIREAL, 8, 32)
        reactnet = quick_net(REACTNET, 16, 16)
        candidates, args.repeats = CANDIDATES[:1], min(args.repeats, 5)
    ov_version = openvino_version()
    if ov_version is None:
        print("OpenVINO not installed (pip install -e '.[bench]'): its columns are skipped")
    load, peaks = _load(), machine_peaks()
    networks, breakdowns, parts = [], [], []
    for net, goal in ((vgg, speedup_goal), (bireal, latency_goal), (reactnet, None)):
        rows, layers, net_parts = time_network(net, [1, 2], args.repeats, goal,
                                               ov_version is not None, net is not reactnet)
        networks += rows
        parts.append(net_parts)
        if net is not vgg:
            breakdowns.append(layers)
    cand_rows = [time_candidate(net) for net in candidates]
    peaks = {a: max(g, peaks[a]) for a, g in machine_peaks().items()}
    add_floors(networks, parts, peaks)
    print(f"bnnx networks vs OpenVINO {ov_version} and fp32 twins (torch {torch.__version__}), "
          f"batch 1, median; isa {kernels.active_isa()}; candidates use PROFILE_REPEATS = "
          f"{PROFILE_REPEATS}; load average before/after: {load} / {_load()} on "
          f"{os.cpu_count()} CPUs; peaks per core: {peaks['binary']:.0f} G binary MAC/s, "
          f"{peaks['float']:.1f} G fp32 MAC/s ({kernels.available_isas()[0]})")
    print_report(networks, cand_rows, breakdowns, parts)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"isa": kernels.active_isa(), "quick": args.quick,
                               "openvino": ov_version, "networks": networks,
                               "candidates": cand_rows, "load_before": load,
                               "load_after": _load(), "peaks_gmacs": peaks,
                               "breakdowns": breakdowns,
                               "parts": parts}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
