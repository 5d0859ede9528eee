"""Training tricks: Bop's flip rule, schedules, optimiser groups, two stages, distillation and
its teacher cache, progress for annealing quantizers, uint8 + augmented input."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from search import training
from search.datasets import Dataset, get_dataset
from search.optim import SGD_MOMENTUM, Bop, lr_factor, make_optimizer
from search.teacher import TEACHER_DIR, fp_twin
from spaces import Config, TrainConfig


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    """300 digits for training: enough for every code path, seconds per fit."""
    d = get_dataset("digits")
    return Dataset("digits", d.x_train[:300], d.y_train[:300], d.x_val[:100], d.y_val[:100],
                   d.x_test, d.y_test, 10)


def config(**train) -> Config:
    return Config.from_dict({"arch": {"width": 8, "depth": 1},
                             "train": {"epochs": 2, "batch_size": 100, **train}})


def test_bop_flips_exactly_when_momentum_exceeds_threshold_and_agrees_in_sign():
    w = nn.Parameter(torch.tensor([0.5, -0.5, 0.5, -0.5, 0.3]))
    other = nn.Parameter(torch.tensor([1.0, 2.0]))
    reference = nn.Parameter(other.detach().clone())
    opt = Bop([w], [other], lr=0.01, threshold=0.1, gamma=0.5)
    adam = torch.optim.Adam([reference], lr=0.01)
    grads = [torch.tensor([0.4, -0.4, -0.4, 0.1, 0.1]), torch.tensor([0.0, 0.0, 0.0, -0.4, 0.4])]
    m = torch.zeros(5)
    expected = w.detach().clone()
    for g in grads:
        m = 0.5 * m + 0.5 * g
        flip = (m.abs() > 0.1) & (torch.sign(m) == torch.sign(expected))
        expected = torch.where(flip, -expected, expected)
        w.grad, other.grad, reference.grad = g.clone(), torch.ones(2), torch.ones(2)
        opt.step()
        adam.step()
        assert torch.equal(w.detach(), expected)
        assert torch.allclose(other, reference)
    # step 1: m = [.2, -.2, -.2, .05, .05] flips w0 (+,+), w1 (-,-); w2 disagrees, w3/w4 small
    # step 2: m = [.1, -.1, -.1, -.175, .225]: |m0|, |m1| = 0.1 are not > 0.1; w3, w4 flip
    assert expected.tolist() == pytest.approx([-0.5, 0.5, 0.5, 0.5, -0.3])


def test_bop_shares_learning_rate_groups_with_its_adam():
    w, other = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    opt = Bop([w], [other], lr=0.1, threshold=1e-8, gamma=1e-4)
    torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    assert opt.adam.param_groups[0]["lr"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="bop: need threshold > 0"):
        Bop([w], [other], lr=0.1, threshold=0.0, gamma=0.1)


def test_optimizer_groups_decay_only_latent_weights_and_sgd_uses_momentum():
    latent, other = [nn.Parameter(torch.ones(2))], [nn.Parameter(torch.ones(2))]
    opt = make_optimizer(TrainConfig(optimizer="sgd", weight_decay=1e-4), latent, other)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == SGD_MOMENTUM
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]
    assert isinstance(make_optimizer(TrainConfig(optimizer="adamw"), latent, other),
                      torch.optim.AdamW)


def test_schedules_with_warmup():
    cosine = lr_factor("cosine", total=110, warmup=10)
    assert [cosine(s) for s in (0, 4, 9)] == [pytest.approx(v) for v in (0.1, 0.5, 1.0)]
    assert cosine(10) == 1.0 and cosine(60) == pytest.approx(0.5) and cosine(110) == 0.0
    linear = lr_factor("linear", total=100, warmup=0)
    assert linear(0) == 1.0 and linear(50) == 0.5 and linear(100) == 0.0
    step = lr_factor("step", total=100, warmup=0)
    assert [step(s) for s in (49, 50, 74, 75)] == [1.0, 0.1, 0.1, pytest.approx(0.01)]
    assert lr_factor("constant", 10, 0)(7) == 1.0
    with pytest.raises(ValueError, match="unknown schedule 'exp'; allowed: cosine"):
        lr_factor("exp", 10, 0)


def test_stage_split():
    one = training.stages(TrainConfig(epochs=5), 10)
    assert [(s.epochs, s.binary_weights) for s in one] == [(5, True)]
    two = training.stages(TrainConfig(epochs=5, two_stage=True, stage1_fraction=0.4), 10)
    assert [(s.epochs, s.binary_weights, s.step_offset) for s in two] == [(2, False, 0),
                                                                           (3, True, 20)]
    assert len(training.stages(TrainConfig(epochs=1, two_stage=True), 10)) == 1


def test_two_stage_trains_real_weights_first_then_restores_binarisation(tiny, monkeypatch):
    seen = []
    real_step = training.BinaryClassifier.training_step

    def spy(self, batch, batch_idx):
        seen.append(all(m.weight_quantizer is None for m in training.binary_layers(self.model)))
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(training.BinaryClassifier, "training_step", spy)
    cfg = config(epochs=3, two_stage=True, stage1_fraction=0.34, optimizer="bop")
    result = training.train(cfg, tiny, accelerator="cpu")
    assert seen == [True] * 3 + [False] * 6  # 3 steps per epoch: 1 epoch real, 2 binary
    assert [(r["epoch"], r["stage"]) for r in result.curve] == [(1, 1), (2, 2), (3, 2)]
    assert all(m.weight_quantizer is not None for m in training.binary_layers(result.model))


def test_distillation_loss_is_scaled_kl():
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    assert float(training.distillation_loss(t, t, 2.0)) == pytest.approx(0.0, abs=1e-6)
    p = torch.softmax(t / 3, 1)
    kl = (p * (p.log() - torch.log_softmax(s / 3, 1))).sum(1).mean() * 9
    assert float(training.distillation_loss(s, t, 3.0)) == pytest.approx(float(kl), rel=1e-5)


def test_teacher_is_the_fp_twin_trained_once_and_cached(tiny, tmp_path, monkeypatch):
    student = config(distill_weight=0.5, distill_temperature=2.0, optimizer="bop")
    twin = fp_twin(student)
    assert (twin.quant.input_quantizer, twin.quant.weight_quantizer) == ("none", "none")
    assert twin.train.distill_weight == 0 and twin.train.optimizer == "adam"
    assert twin.arch == student.arch and twin.train.epochs == student.train.epochs
    result = training.train(student, tiny, accelerator="cpu", cache=tmp_path)
    assert len(list((tmp_path / TEACHER_DIR).glob("*.safetensors"))) == 1
    assert math.isfinite(result.curve[-1]["train_loss"])

    def no_training(*args, **kwargs):
        raise AssertionError("the cached teacher must be reused")

    real_train = training.train
    monkeypatch.setattr(training, "train", no_training)
    from search.teacher import teacher

    cached = teacher(student, tiny, tmp_path)
    monkeypatch.setattr(training, "train", real_train)
    assert not cached.training and all(m.weight_quantizer is None
                                       for m in training.binary_layers(cached))


def test_uint8_augmented_data_label_smoothing_clipping_and_progress(tiny):
    x = np.clip(tiny.x_train * 16, 0, 255).astype(np.uint8)
    data = Dataset("u8", x, tiny.y_train, tiny.x_val.astype(np.uint8), tiny.y_val,
                   tiny.x_test.astype(np.uint8), tiny.y_test, 10, augment=True)
    cfg = Config.from_dict({"arch": {"width": 8, "depth": 1},
                            "quant": {"input_quantizer": "ede"},
                            "train": {"epochs": 1, "batch_size": 100, "label_smoothing": 0.1,
                                      "gradient_clip": 1.0, "schedule": "step",
                                      "warmup_epochs": 0.5}})
    result = training.train(cfg, data, accelerator="cpu")
    ede = [m.input_quantizer for m in training.binary_layers(result.model)]
    assert ede and all(q.progress == pytest.approx(2 / 3) for q in ede)  # last of 3 steps
    assert 0.0 <= training.accuracy(result.model, data.x_val, data.y_val) <= 1.0


def test_training_bench_smoke_writes_json(tmp_path):
    """Runs the bench script end to end on a tiny batch (its numbers are not checked here)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "t.json"
    res = subprocess.run(
        [sys.executable, str(root / "app.py"), "bench", "training", "--families", "plain",
         "bireal", "--repeats", "1", "--batch-size", "8", "--image-size", "8", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    rows = json.loads(out.read_text())["steps"]
    assert [r["family"] for r in rows] == ["plain", "bireal"]
    assert all(r["binary_ms"] > 0 and r["fp_twin_ms"] > 0 for r in rows)
    assert "goal: binary <= 1.5x fp twin" in res.stdout
