"""Hostile space files and config values: each is one SpaceError/ConfigError naming the file or
knob and what is allowed (so the CLI prints one line and exits 2), never a traceback or a space
that passes validation and then fails every trial; and nothing on disk changes."""

import json
import math
import re

import pytest

import app
from spaces import Config, SearchSpace
from spaces.config import ConfigError
from spaces.space import SpaceError

INF, NAN = math.inf, math.nan


@pytest.mark.parametrize("knobs, message", [
    # a float bound on an integer knob made Optuna sample floats the Config then refused
    ({"arch.width": {"low": 4.0, "high": 8}}, "knob arch.width: integers required, got 4.0"),
    ({"arch.width": {"low": True, "high": 8}}, "knob arch.width: integers required, got True"),
    ({"arch.kernel_size": {"choices": [3.0, 5]}}, "integers required, got 3.0"),
    ({"arch.width": {"low": 4, "high": INF}}, "knob arch.width: integers required, got inf"),
    ({"arch.width": NAN}, "knob arch.width: integers required, got nan"),
    ({"train.lr": {"low": 1e-3, "high": INF}}, "knob train.lr: train.lr must be a number"),
    ({"train.lr": {"low": 1e-3, "high": 0.1, "log": "false"}},
     "knob train.lr: log must be true or false, got 'false'"),
    ({"arch.width": {"choices": [8], "low": 1, "high": 2}},
     'knob arch.width: cannot use choices + high + low; allowed: choices (a list), choices "all"'),
    ({"train.optimizer": {"choices": ["adam"], "exclude": ["bop"]}},
     "cannot use choices + exclude"),
    ({"train.lr": {"low": 1e-3, "high": 0.1, "exclude": [0.01]}}, "cannot use exclude + high"),
    ({"train.optimizer": {"choices": "all", "exclude": 5}},
     "knob train.optimizer: exclude must be a list of its choices (adam, adamw, sgd, bop), got 5"),
    ({"train.optimizer": {"choices": "all", "exclude": ["bopp"]}},
     "exclude must be a list of its choices"),
])
def test_bad_knobs_are_refused_before_any_trial(knobs, message):
    with pytest.raises(SpaceError, match=re.escape(message)):
        SearchSpace("x", knobs)


@pytest.mark.parametrize("data, message", [
    ({"arch": {"width": NAN}}, "arch.width must be an integer, got nan"),
    ({"seed": INF}, "seed must be an integer, got inf"),
    ({"train": {"lr": NAN}}, "train.lr must be a number, got nan"),
    ({"train": {"warmup_epochs": INF}}, "train.warmup_epochs must be a number, got inf"),
    ({"train": {"weight_decay": -INF}}, "train.weight_decay must be a number, got -inf"),
])
def test_non_finite_config_values_name_the_field(data, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Config.from_dict(data)
    with pytest.raises(ConfigError, match=re.escape(message)):
        Config.from_json(json.dumps(data))  # JSON's NaN/Infinity literals


@pytest.mark.parametrize("name, content, message", [
    ("latin1.json", b'{"arch.family":\n "pl\xe4in"}', r"latin1.json: not UTF-8 text at line 2"),
    ("latin1.yaml", b"arch.family: pl\xe4in\n", r"latin1.yaml: not UTF-8 text at line 1"),
    ("comma.json", b'{\n"arch.width": 8,\n}', r"comma.json: not valid JSON at line 3, column 1"),
    ("flow.yaml", b"arch.width: 8\narch.depth: [1,\n", r"flow.yaml: not valid YAML at line 3"),
    ("inf.json", b'{"arch.width": {"low": 4, "high": Infinity}}', r"integers required, got inf"),
    ("big.json", b'{"arch.width": {"low": 4, "high": 1e400}}', r"integers required, got inf"),
])
def test_bad_space_files_are_one_line_naming_the_file_and_nothing_changes(
        tmp_path, capsys, name, content, message):
    space = tmp_path / name
    space.write_bytes(content)
    with pytest.raises(SpaceError, match=message):
        SearchSpace(str(space))
    storage = tmp_path / "journal.log"
    assert app.main(["search", "--space", str(space), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and re.search(message, err)
    assert list(tmp_path.iterdir()) == [space] and space.read_bytes() == content


def test_a_utf8_bom_is_not_an_error(tmp_path):
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + b'{"arch.width": {"choices": [8]}}')
    assert SearchSpace(str(tmp_path / "bom.json")).knobs == {"arch.width": {"choices": [8]}}
