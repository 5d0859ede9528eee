"""`--float-parts fast`: a study's trials are timed, re-timed and exported with the float layers
folded (kernels.compile(exact_float=False)), its card saying so and how the packed model agrees
with torch; "exact" (the default, and every study older than the setting) stays bit-exact."""

from __future__ import annotations

import re

import optuna
import pytest
import torch

import app
import kernels
from search import SearchSettings, run_search
from search import objective as objective_module
from search import remeasure as remeasure_module
from search.datasets import get_dataset
from search.export import (
    CARD_FILE,
    PACKED_FILE,
    export_trial,
    fast_float_check,
    write_model_folder,
)
from search.remeasure import remeasure_trials
from search.settings import FLOAT_PARTS, exact_float_of
from spaces import Config, build_model

FOLDED = ("conv2d_folded", "conv2d_direct", "map_linear")  # the op kinds folding makes


def folded_ops(packed: kernels.PackedModel) -> list[str]:
    return [op.kind for op in packed.ops if op.kind in FOLDED]


class CompileSpy:
    """kernels.compile as a module sees it, recording each call's exact_float."""

    def __init__(self) -> None:
        self.exact: list[bool] = []
        self.compile = kernels.compile

    def __call__(self, model, shape, **kwargs):
        self.exact.append(kwargs.get("exact_float", True))
        return self.compile(model, shape, **kwargs)


def test_float_parts_names_the_allowed_values() -> None:
    assert FLOAT_PARTS == ("exact", "fast")
    assert (exact_float_of("exact"), exact_float_of("fast")) == (True, False)
    with pytest.raises(ValueError, match="float parts 'folded' not allowed; allowed: exact, fast"):
        SearchSettings(float_parts="folded").check()
    assert SearchSettings.from_dict({"trials": 3}).float_parts == "exact"  # an older study
    with pytest.raises(SystemExit):
        app.build_parser().parse_args(["search", "--float-parts", "folded"])


@pytest.fixture(scope="module")
def fast_study(tmp_path_factory):
    """A real 1-trial, 1-epoch digits study searched with fast float parts, every compile the
    objective made recorded."""
    spy = CompileSpy()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(objective_module.kernels, "compile", spy)
        spec = str(tmp_path_factory.mktemp("fast") / "study.journal")
        study = run_search(spec, "s", SearchSettings(trials=1, epochs=1, float_parts="fast"))
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert complete
    return spec, complete[0].number, spy.exact


def test_a_fast_study_times_exports_and_retimes_its_trials_folded(fast_study, tmp_path,
                                                                    monkeypatch) -> None:
    spec, number, compiled_exact = fast_study
    assert compiled_exact and not any(compiled_exact)  # before and after training: folded
    out = export_trial(spec, "s", number, tmp_path / "m")
    packed = kernels.load(str(out / PACKED_FILE))
    assert folded_ops(packed)
    card = (out / CARD_FILE).read_text()
    assert "## Float parts\nFast (`--float-parts fast`)" in card
    assert "predictions differ from the torch model's" in card
    assert card.count("--float-parts fast") == 3  # the section, the train and search commands
    spy = CompileSpy()
    monkeypatch.setattr(remeasure_module.kernels, "compile", spy)
    rows = remeasure_trials(spec, "s", [number], 1, interleaved=False)
    assert len(rows) == 1 and spy.exact == [False]


def test_write_model_folder_with_fast_float_parts_checks_against_torch(tmp_path) -> None:
    digits = get_dataset("digits")
    config = Config.from_dict({"arch": {"family": "resnet", "width": 8, "depth": 2},
                               "train": {"epochs": 1}})
    torch.manual_seed(0)
    model = build_model(config, 1, 10, 8, digits.meta()["mean"], digits.meta()["std"]).eval()
    exact = write_model_folder(tmp_path / "exact", config, model, digits.meta(), {}, "t")
    fast = write_model_folder(tmp_path / "fast", config, model, digits.meta(), {}, "t",
                              float_parts="fast")
    assert not folded_ops(kernels.load(str(exact / PACKED_FILE)))
    assert folded_ops(kernels.load(str(fast / PACKED_FILE)))
    assert "bit for bit" in (exact / CARD_FILE).read_text()
    card = (fast / CARD_FILE).read_text()
    check = fast_float_check(model, kernels.load(str(fast / PACKED_FILE)), digits.meta())
    found = re.search(r"On the first (\d+) validation images, at export time: (\d+) "
                      r"predictions differ from the torch model's, largest logit difference "
                      r"(\S+)\.", card)
    assert found and found.groups() == (str(check.images), str(check.differing),
                                        f"{check.max_abs_diff:.3g}")
    assert check.images == 256 and check.differing <= 2 and 0 < check.max_abs_diff < 1e-2
    with pytest.raises(ValueError, match="allowed: exact, fast"):
        write_model_folder(tmp_path / "bad", config, model, digits.meta(), {}, "t",
                           float_parts="folded")
    assert not (tmp_path / "bad").exists()


def test_train_takes_float_parts() -> None:
    args = app.build_parser().parse_args(["train", "--config", "c.json", "--out", "o",
                                          "--float-parts", "fast"])
    assert args.float_parts == "fast"
    assert app.build_parser().parse_args(["search"]).float_parts == "exact"
