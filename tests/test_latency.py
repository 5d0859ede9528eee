"""Latency that means the same on a busy machine: a stated thread count, steady medians, and the
facts each one was measured with."""

import subprocess
import sys
import time

import pytest

import kernels
from kernels.machine import cpu_model, machine_info
from kernels.profiling import Profile, steady_profile
from search.objective import MAX_SPREAD, measure_latency
from spaces import Config, build_model


def fake(total: float, iqr: float) -> Profile:
    return Profile(total, iqr, "test", 1, 1, 20)


def test_steady_profile_remeasures_a_disturbed_round_and_keeps_the_quietest():
    rounds = iter([fake(9.0, 5.0), fake(1.1, 0.5), fake(1.0, 0.01), fake(0.5, 0.0)])
    best, medians = steady_profile(lambda: next(rounds), max_spread=0.15, rounds=4)
    assert medians == [9.0, 1.1, 1.0] and best.total_ms == 1.0  # stops at the first steady one
    calm = iter([fake(2.0, 0.1)])
    assert steady_profile(lambda: next(calm), 0.15)[1] == [2.0]
    noisy = iter([fake(3.0, 2.0), fake(2.0, 2.0)])
    assert steady_profile(lambda: next(noisy), 0.15, rounds=2)[0].total_ms == 2.0
    with pytest.raises(ValueError, match="rounds >= 1"):
        steady_profile(lambda: fake(1, 0), 0.15, rounds=0)


def test_measured_on_names_cpu_isa_and_threads():
    info = machine_info(1)
    assert info["cpu"] == cpu_model() and info["cpu"]
    assert info["isa"] == kernels.active_isa() and info["threads"] == 1 and info["cpus"] >= 1


@pytest.mark.slow
def test_latency_on_one_thread_holds_while_the_other_core_is_busy():
    model = build_model(Config.from_dict({"arch": {"width": 64, "depth": 3}}), 1, 10, 8).eval()
    packed = kernels.compile(model, (1, 8, 8))
    quiet, facts = measure_latency(packed, threads=1)
    assert facts["threads"] == 1 and facts["rounds_ms"][-1] > 0
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.5)
        loaded, facts = measure_latency(packed, threads=1)
    finally:
        for p in busy:
            p.kill()
    assert loaded.total_ms < 5 * quiet.total_ms, (quiet.total_ms, facts)
    assert loaded.total_iqr_ms <= MAX_SPREAD * loaded.total_ms or len(facts["rounds_ms"]) == 4
