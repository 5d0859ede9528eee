"""Whole networks on bnnx's packed kernels versus their fp32 twins in torch (issue 4's targets).

Prints a table and writes JSON (default runs/bench/networks.json). Every number is measured in
this run: the packed network's batch-1 forward and its fp32 twin's (the same `spaces.build_model`
architecture with quantizers "none", in eval mode under torch.inference_mode, same thread count)
are timed interleaved (timing.interleaved_ms), so both sample the same spells of a shared
machine; the per-layer breakdown is `PackedModel.profile`. Rows:
  - Binary VGG-Small at 32x32 (plain family), goal >= 8x faster than its fp32 twin on 1 thread;
  - Bi-Real-Net-18 shaped (bireal family) at 224x224, goal < 8 ms on 1 thread;
  - a ReActNet (RPReLU) network at 32x32, no goal: a residual family's float share in the ratio;
  - compile + profile wall time of typical search candidates, goal <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from timing import interleaved_ms  # bench/ is on sys.path (run directly or by app.py)

import kernels
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


def paired_ms(packed: kernels.PackedModel, twin: torch.nn.Module, shape: tuple[int, ...],
              threads: int, repeats: int) -> dict[str, float]:
    """Batch-1 forwards of the packed network and its fp32 twin, timed interleaved
    (timing.interleaved_ms) on one input, both on `threads` threads: the packed model's own and
    torch's intra-op ones, which its float ops use too (as PackedModel.profile sets them)."""
    x = torch.randn((1, *shape), generator=torch.Generator().manual_seed(0))
    previous, packed_threads = torch.get_num_threads(), packed.threads
    torch.set_num_threads(threads)
    packed.threads = threads
    try:
        with torch.inference_mode():
            return interleaved_ms({"bnnx": lambda: packed(x), "torch": lambda: twin(x)}, repeats)
    finally:
        torch.set_num_threads(previous)
        packed.threads = packed_threads


def time_network(net: Net, threads_list: list[int], repeats: int,
                 goal: Callable[[float, float], tuple[str, bool]] | None) -> tuple[list, dict]:
    """Rows (one per thread count) of bnnx vs fp32 twin, and the 1-thread per-layer profile."""
    packed = kernels.compile(net.model(), net.shape)
    twin = net.model(fp32_twin=True)
    info = packed.layers_info()
    rows = []
    for threads in threads_list:
        t = paired_ms(packed, twin, net.shape, threads, repeats)
        goal_text, met = goal(t["bnnx"], t["torch"]) if goal and threads == 1 else ("-", None)
        rows.append({"name": net.name, "label": net.label, "built": net.note,
                     "threads": threads, "isa": kernels.active_isa(), "bnnx_ms": t["bnnx"],
                     "torch_fp32_ms": t["torch"], "speedup": t["torch"] / t["bnnx"],
                     "goal": goal_text, "met": met,
                     "binary_macs": sum(r.binary_macs for r in info),
                     "float_macs": sum(r.float_macs for r in info)})
    profile = packed.profile(threads=1, repeats=repeats)
    layers = {"name": net.name, "total_ms": profile.total_ms,
              "layers": [{"name": lp.name, "kind": lp.kind, "ms": lp.median_ms}
                         for lp in profile.layers]}
    return rows, layers


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
    return "< 8 ms", bnnx < 8.0


def met_text(met: bool | None) -> str:
    return "-" if met is None else ("MET" if met else "not met")


def print_report(networks: list[dict], candidates: list[dict], breakdowns: list[dict]) -> None:
    print(f"\n{'network':<62} {'thr':>3} {'bnnx':>10} {'torch fp32':>11} {'x fp32':>7} "
          f"{'goal':>14} {'met':>8}")
    for r in networks:
        print(f"{r['label']:<62} {r['threads']:>3} {r['bnnx_ms']:>8.2f}ms "
              f"{r['torch_fp32_ms']:>9.2f}ms {r['speedup']:>6.1f}x {r['goal']:>14} "
              f"{met_text(r['met']):>8}")
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
    load = _load()
    networks, breakdowns = [], []
    for net, goal in ((vgg, speedup_goal), (bireal, latency_goal), (reactnet, None)):
        rows, layers = time_network(net, [1, 2], args.repeats, goal)
        networks += rows
        if net is not vgg:
            breakdowns.append(layers)
    cand_rows = [time_candidate(net) for net in candidates]
    print(f"bnnx networks vs fp32 twins (torch {torch.__version__}), batch 1, median; "
          f"isa {kernels.active_isa()}; candidates use PROFILE_REPEATS = {PROFILE_REPEATS}; "
          f"load average before/after: {load} / {_load()} on {os.cpu_count()} CPUs")
    print_report(networks, cand_rows, breakdowns)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"isa": kernels.active_isa(), "quick": args.quick,
                               "networks": networks, "candidates": cand_rows,
                               "load_before": load, "load_after": _load(),
                               "breakdowns": breakdowns}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
