"""Seeding a study with known configurations (an exported winner, a paper's recipe): they are
queued as trials that run before any sampled one, with the study's epochs and seed."""

from __future__ import annotations

import sys
from pathlib import Path

from spaces import Config, ConfigError, SearchSpace

from .budget import finished
from .objective import ENQUEUED_ATTR
from .storage import load_study
from .study import study_settings


def read_config(path: Path) -> Config:
    """A config JSON file; errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        return Config.from_json(path.read_text(encoding="utf-8"))
    except (ConfigError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def enqueue_configs(spec: str, study_name: str, paths: list[Path]) -> list[int]:
    """Queue one trial per config file (all are read first: a bad one queues nothing); returns
    their trial numbers. Knobs the study's space can produce become the trial's parameters, so
    the sampler learns from the result; the whole config is what trains."""
    configs = [read_config(path) for path in paths]
    study = load_study(spec, study_name)
    settings = study_settings(study)
    space = SearchSpace(settings.space, settings.space_knobs or None)
    before = {t.number for t in study.get_trials(deepcopy=False)}
    for config in configs:
        study.enqueue_trial(space.params_for(config),
                            user_attrs={ENQUEUED_ATTR: config.to_dict()})
    numbers = sorted({t.number for t in study.get_trials(deepcopy=False)} - before)
    left = settings.trials - finished(study)
    if left < len(numbers):
        print(f"note: study {study_name} has room for {max(0, left)} more finished trials "
              f"(budget {settings.trials}); queued trials run first, and those beyond the budget "
              "wait until it is raised ('bnnx search --resume --trials N')", file=sys.stderr)
    return numbers
