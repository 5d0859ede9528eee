"""Model summary: counts per layer (precision, bits, memory, MACs), totals, the printed table
against a stored snapshot, and the CLI."""

import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

from spaces import BinaryConv2d, BinaryLinear, Config, build_model
from spaces.summary import format_summary, summarize

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "tests" / "snapshots" / "summary_small.txt"


def small_net() -> nn.Module:
    """Built by hand so the snapshot does not move with the model families."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        BinaryConv2d(8, 16, 3, padding=1, input_quantizer="ste", weight_quantizer="sign"),
        nn.BatchNorm2d(16),
        nn.MaxPool2d(2),
        nn.Flatten(),
        BinaryLinear(16 * 4 * 4, 32, input_quantizer="ste", weight_quantizer="sign"),
        nn.Linear(32, 10),
    )


def test_counts_per_layer_and_totals():
    s = summarize(small_net(), (1, 8, 8))
    rows = {r.name: r for r in s.layers}
    assert list(rows) == ["0", "1", "2", "3", "6", "7"]  # pool/flatten own nothing
    conv = rows["2"]
    assert conv.input_precision == 1 and conv.params == {1: 8 * 16 * 9}
    assert conv.binary_macs == 16 * 8 * 8 * 8 * 9 and conv.float_macs == 0
    assert rows["6"].params == {1: 256 * 32, 32: 32} and rows["6"].binary_macs == 256 * 32
    assert rows["0"].input_precision == 32 and rows["0"].float_macs == 8 * 64 * 9
    assert rows["1"].params == {32: 16} and rows["1"].output_shape == [8, 8, 8]
    assert s.params == {1: 1152 + 8192, 32: 72 + 16 + 32 + 32 + 330}
    assert s.memory_bits == 9344 + 32 * 482 and s.fp32_bits == 32 * (9344 + 482)
    assert s.binary_mac_ratio == pytest.approx((73728 + 8192) / (73728 + 8192 + 4608 + 320))


def test_fp_twin_has_no_binary_macs():
    twin = Config.from_dict({"quant": {"input_quantizer": "none", "weight_quantizer": "none"}})
    s = summarize(build_model(twin, 1, 10, 8), (1, 8, 8))
    assert s.binary_macs == 0 and set(s.params) == {32}


def test_printed_table_matches_snapshot():
    text = format_summary(summarize(small_net(), (1, 8, 8)))
    assert text + "\n" == SNAPSHOT.read_text()


def test_summary_cli(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"arch": {"width": 8}}')
    res = subprocess.run([sys.executable, str(ROOT / "app.py"), "summary", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "MACs binarized" in res.stdout and "BinaryConv2d" in res.stdout


@pytest.mark.parametrize("family", ["plain", "resnet", "bireal", "reactnet"])
@pytest.mark.parametrize("stem_layout", ["conv3x3", "imagenet"])
def test_summary_and_packed_model_count_the_same_macs(family, stem_layout):
    import kernels

    config = Config.from_dict({"arch": {"family": family, "width": 16, "depth": 2,
                                        "stem_layout": stem_layout}})
    model = build_model(config, 3, 10, 32).eval()
    summary = summarize(model, (3, 32, 32))
    rows = kernels.compile(model, (3, 32, 32)).layers_info()
    assert summary.binary_macs == sum(r.binary_macs for r in rows)
    assert summary.float_macs == sum(r.float_macs for r in rows)  # one count on the card too
