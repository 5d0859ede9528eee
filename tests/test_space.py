"""Search spaces: presets, user files (JSON/YAML), validation against the Config metadata, and the
space travelling with its study."""

import json

import optuna
import pytest

from search.study import SearchSettings, create_study, study_settings
from spaces import Config, SearchSpace
from spaces.space import SpaceError, knob_fields, param_name


def sample(space: SearchSpace, n: int = 20) -> list[tuple[dict, Config]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        cfg = space.sample(trial, epochs=2, seed=3)
        out.append((trial.params, cfg))
    return out


def test_quick_preset_keeps_its_readable_params():
    for params, cfg in sample(SearchSpace("quick")):
        assert set(params) == {"width", "depth", "blocks_per_stage", "input_quantizer",
                               "weight_quantizer", "lr", "batch_size"}
        assert cfg.arch.family == "plain" and cfg.train.epochs == 2 and cfg.seed == 3
        assert cfg.arch.width == params["width"] and 1e-3 <= cfg.train.lr <= 3e-2


def test_survey_opens_every_family_and_binary_quantizer_but_never_full_precision():
    space = SearchSpace("survey")
    fields = knob_fields()
    assert space.knobs["arch.family"]["choices"] == list(fields["arch.family"].metadata["choices"])
    for q in ("quant.input_quantizer", "quant.weight_quantizer"):
        assert "none" not in space.knobs[q]["choices"] and len(space.knobs[q]["choices"]) >= 2
    configs = [cfg for _, cfg in sample(space, 30)]
    assert {c.train.optimizer for c in configs} >= {"adam", "bop"}


def test_conditional_knobs_are_suggested_only_when_their_parent_makes_them_matter():
    """Bop settings only with Bop, clip only with clipped_ste, pool order only for plain, ..."""
    seen: set[str] = set()
    for params, cfg in sample(SearchSpace("survey"), 60):
        seen.update(params)
        t, q, a = cfg.train, cfg.quant, cfg.arch
        assert ("bop_threshold" in params) == ("bop_gamma" in params) == (t.optimizer == "bop")
        assert ("clip" in params) == (q.input_quantizer == "clipped_ste")
        assert ("beta" in params) == (q.input_quantizer == "swish_sign")
        assert ("stage1_fraction" in params) == t.two_stage
        assert ("distill_temperature" in params) == (t.distill_weight > 0)
        assert ("pool_order" in params) == (a.family == "plain")
        assert ("downsample" in params) == (a.family in ("resnet", "bireal"))
        if "bop_gamma" not in params:
            assert t.bop_gamma == Config().train.bop_gamma  # the default, untouched
    assert {"bop_gamma", "clip", "beta", "stage1_fraction", "pool_order", "downsample"} <= seen


def test_space_file_json_and_yaml(tmp_path):
    knobs = {"arch.family": {"choices": ["plain", "bireal"]},
             "train.lr": {"low": 1e-4, "high": 0.1, "log": True},
             "arch.width": 32, "train.optimizer": {"choices": "all", "exclude": ["bop"]}}
    (tmp_path / "s.json").write_text(json.dumps(knobs))
    yaml_text = ("arch.family: {choices: [plain, bireal]}\ntrain.lr: {low: 1.0e-4, high: 0.1, "
                 "log: true}\narch.width: 32\ntrain.optimizer: {choices: all, exclude: [bop]}\n")
    (tmp_path / "s.yaml").write_text(yaml_text)
    for name in ("s.json", "s.yaml"):
        space = SearchSpace(str(tmp_path / name))
        for params, cfg in sample(space):
            assert cfg.arch.family in ("plain", "bireal") and cfg.arch.width == 32
            assert 1e-4 <= cfg.train.lr <= 0.1 and cfg.train.optimizer != "bop"
            assert set(params) == {"family", "lr", "optimizer"}


@pytest.mark.parametrize("knobs, message", [
    ({"arch.colour": {"choices": [1]}}, "unknown knob 'arch.colour'; allowed: arch.family"),
    ({"arch.family": {"choices": ["plain", "vgg"]}},
     "knob arch.family: arch.family = 'vgg' is not allowed; allowed: plain"),
    ({"arch.width": {"low": 2, "high": 64}}, "arch.width = 2 is out of range [4, 1024]"),
    ({"train.lr": {"low": 0.1, "high": 0.01}}, "need low < high"),
    ({"arch.width": {"choices": "all"}}, "'all' needs a field with choices; it has range"),
    ({"arch.family": {"low": 1, "high": 2}}, "a range needs a numeric field; allowed choices"),
    ({"train.epochs": 5}, "unknown knob 'train.epochs'; set by --epochs/--seed"),
    ({"train.lr": {"min": 1}}, "unknown key 'min'"),
    ({"arch.family": {"choices": []}}, "choices must be a non-empty list"),
])
def test_bad_knobs_name_the_knob_and_what_is_allowed(knobs, message):
    with pytest.raises(SpaceError, match=message.replace("[", r"\[").replace("]", r"\]")):
        SearchSpace("x", knobs)


def test_bad_space_names_and_files(tmp_path):
    with pytest.raises(SpaceError, match="unknown search space 'huge'; allowed: quick, survey"):
        SearchSpace("huge")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SearchSpace(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SpaceError, match="bad.json: not valid JSON"):
        SearchSpace(str(tmp_path / "bad.json"))


def test_param_names_are_field_names_unless_shared():
    assert param_name("arch.width") == "width" and param_name("train.lr") == "lr"
    leaves = [p.rsplit(".", 1)[-1] for p in knob_fields()]
    shared = {p for p in knob_fields() if leaves.count(p.rsplit(".", 1)[-1]) > 1}
    assert all(param_name(p) == p for p in shared)


def test_study_stores_its_space_so_workers_rebuild_it(tmp_path):
    space_file = tmp_path / "mine.json"
    space_file.write_text(json.dumps({"arch.width": {"choices": [8, 16]}}))
    settings = SearchSettings(space=str(space_file), trials=1, epochs=1)
    study = create_study(str(tmp_path / "s.journal"), "sp", settings)
    space_file.unlink()  # the worker must not need the file
    stored = study_settings(study)
    assert stored.space_knobs == {"arch.width": {"choices": [8, 16]}}
    rebuilt = SearchSpace(stored.space, stored.space_knobs)
    assert {cfg.arch.width for _, cfg in sample(rebuilt)} <= {8, 16}
