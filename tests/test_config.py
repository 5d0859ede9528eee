"""Config round trip, validation errors, and the plain family builder."""

import json

import pytest
import torch

from spaces import BinaryConv2d, Config, ConfigError, SearchSpace, build_model


def test_default_round_trips_through_dict_and_json():
    c = Config.from_dict({"arch": {"width": 16, "depth": 3}, "quant": {"weight_quantizer": "xnor"}})
    assert Config.from_dict(c.to_dict()) == c
    assert Config.from_json(c.to_json()) == c
    assert json.loads(c.to_json())["arch"]["width"] == 16


@pytest.mark.parametrize(
    "data, message",
    [
        ({"arch": {"family": "resnet9000"}}, r"arch.family = 'resnet9000' is not allowed; allowed"),
        ({"arch": {"width": 2}}, r"arch.width = 2 is out of range \[4, 1024\]"),
        ({"arch": {"width": 4.5}}, r"arch.width must be an integer"),
        ({"quant": {"input_quantizer": "xnor"}}, r"allowed: ste, clipped_ste, approx_sign"),
        ({"train": {"optimizer": "rmsprop"}}, r"train.optimizer = 'rmsprop' is not allowed"),
        ({"train": {"lr": "fast"}}, r"train.lr must be a number"),
        ({"colour": "red"}, r"unknown field 'colour'; allowed: arch, quant, seed, train"),
        ({"arch": {"widht": 8}}, r"unknown field 'arch.widht'"),
        ({"arch": {"activation": "relu"}},
         r"arch.activation = 'relu' is not allowed; allowed: none, hardtanh, prelu, rprelu"),
        ({"arch": {"stem": "ternary"}}, r"arch.stem = 'ternary' is not allowed; allowed: float"),
        ({"arch": {"downsample": "max"}}, r"arch.downsample = 'max' is not allowed; allowed: avg"),
        ({"arch": {"bn_momentum": 0.0}}, r"arch.bn_momentum = 0.0 is out of range \[0.001, 1.0\]"),
        ({"arch": {"pool_order": "x"}}, r"arch.pool_order = 'x' is not allowed; allowed: bn_pool"),
        ({"quant": {"weight_quantizer": "ede"}}, r"allowed: sign, xnor, dorefa, libra_pb, none"),
        ({"quant": {"learned_scale": 1}}, r"quant.learned_scale must be true or false"),
        ({"quant": {"beta": 50.0}}, r"quant.beta = 50.0 is out of range"),
        ({"arch": 3}, r"arch.: expected an object"),
    ],
)
def test_bad_values_name_the_field_and_allowed_values(data, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(data)


def test_every_family_and_full_precision_are_valid():
    for family in ("plain", "resnet", "bireal", "reactnet"):
        c = Config.from_dict({"arch": {"family": family}, "quant": {"input_quantizer": "none",
                                                                    "weight_quantizer": "none"}})
        assert Config.from_json(c.to_json()) == c


def test_bad_json():
    with pytest.raises(ConfigError, match="not valid JSON"):
        Config.from_json("{nope")


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_plain_model_shapes_and_binary_layers(depth):
    c = Config.from_dict({"arch": {"width": 8, "depth": depth, "blocks_per_stage": 2}})
    m = build_model(c, 1, 10, 8)
    assert m(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    convs = [x for x in m.modules() if isinstance(x, BinaryConv2d)]
    assert len(convs) == 2 * depth
    assert all(x.precision == 1 for x in convs)


def test_search_space_samples_valid_configs():
    import optuna

    study = optuna.create_study(directions=["maximize", "minimize"])
    for _ in range(5):
        trial = study.ask()
        c = SearchSpace("quick").sample(trial, epochs=2, seed=3)
        assert c.train.epochs == 2 and c.seed == 3
        assert set(trial.params) >= {"width", "depth", "input_quantizer", "weight_quantizer"}
    with pytest.raises(ValueError, match="unknown search space 'huge'; allowed: quick"):
        SearchSpace("huge")
