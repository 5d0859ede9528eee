"""Search spaces: which Config knobs are open, and how an Optuna trial turns them into a Config.

A space is data: a mapping from knob paths (Config field paths such as "arch.family" or
"train.lr") to a spec, one of
  {"choices": [..]}                        categorical (values checked against the field),
  {"choices": "all", "exclude": [..]}      every value the field allows, minus some,
  {"low": a, "high": b, "log": bool}       int or float range inside the field's range,
  a plain value                            fixed.
Presets live as JSON in spaces/presets/; a user's JSON (or YAML, when PyYAML is installed) file
works the same. Since knob paths are field paths, every field a Config gains is searchable without
code changes. Only `trial.suggest_*` is used, so any Optuna sampler works; params carry readable
names (the field name, or the full path where two sections share a field name).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Protocol

from .config import Config, ConfigError

PRESET_DIR = Path(__file__).resolve().parent / "presets"
BUDGET_KNOBS = ("train.epochs", "seed")  # set by the search budget (--epochs, --seed)
SPEC_KEYS = {"choices", "exclude", "low", "high", "log"}
SPEC_FORMS = 'choices (a list), choices "all" (+ exclude), low + high (+ log), or a fixed value'


class SpaceError(ValueError):
    """A space or knob that cannot be searched; the message names the knob and what is allowed."""


class TrialLike(Protocol):
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...
    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...
    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...


def knob_fields(cls: type = Config, prefix: str = "") -> dict[str, dataclasses.Field]:
    """Every leaf field of the Config by its dotted path."""
    out: dict[str, dataclasses.Field] = {}
    for f in dataclasses.fields(cls):
        factory = f.default_factory if callable(f.default_factory) else None
        if dataclasses.is_dataclass(factory):
            out.update(knob_fields(factory, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = f
    return out


def param_name(path: str) -> str:
    """The Optuna param name of a knob: its field name, unless another section shares it."""
    leaf = path.rsplit(".", 1)[-1]
    same = [p for p in knob_fields() if p.rsplit(".", 1)[-1] == leaf]
    return leaf if len(same) == 1 else path


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in flat.items():
        *sections, leaf = path.split(".")
        node = out
        for s in sections:
            node = node.setdefault(s, {})
        node[leaf] = value
    return out


def _integer(path: str) -> bool:
    return type(knob_fields()[path].default) is int


def _check_value(path: str, value: Any) -> None:
    # Config would take 4.0 as 4, but a float bound makes Optuna sample floats: integers only
    if _integer(path) and type(value) is not int:
        raise SpaceError(f"knob {path}: integers required, got {value!r}")
    try:
        Config.from_dict(_nested({path: value}))
    except ConfigError as exc:
        raise SpaceError(f"knob {path}: {exc}") from None


def _keys_that_go_together(spec: dict) -> set[str]:
    """A choices list stands alone, exclude only trims "all", a range is low + high (+ log)."""
    if "choices" not in spec:
        return {"low", "high", "log"}
    return {"choices", "exclude"} if spec["choices"] == "all" else {"choices"}


def validate_knob(path: str, spec: Any) -> Any:
    """`spec` checked against the field's metadata; "all" choices expanded. Returns the spec."""
    fields = knob_fields()
    if path not in fields or path in BUDGET_KNOBS:
        allowed = ", ".join(p for p in fields if p not in BUDGET_KNOBS)
        why = "set by --epochs/--seed" if path in BUDGET_KNOBS else "allowed: " + allowed
        raise SpaceError(f"unknown knob {path!r}; {why}")
    meta = fields[path].metadata
    if not isinstance(spec, dict):
        _check_value(path, spec)
        return spec
    bad = sorted(set(spec) - SPEC_KEYS)
    if bad:
        raise SpaceError(f"knob {path}: unknown key {bad[0]!r}; allowed: {SPEC_FORMS}")
    if not set(spec) <= _keys_that_go_together(spec):
        raise SpaceError(f"knob {path}: cannot use {' + '.join(sorted(spec))}; "
                         f"allowed: {SPEC_FORMS}")
    if "choices" in spec:
        choices = spec["choices"]
        if choices == "all":
            if "choices" not in meta:
                raise SpaceError(f"knob {path}: 'all' needs a field with choices; it has range "
                                 f"{list(meta['range'])}: give low and high")
            allowed, exclude = list(meta["choices"]), spec.get("exclude", [])
            if not isinstance(exclude, list) or any(e not in allowed for e in exclude):
                raise SpaceError(f"knob {path}: exclude must be a list of its choices "
                                 f"({', '.join(str(c) for c in allowed)}), got {exclude!r}")
            choices = [c for c in allowed if c not in exclude]
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"knob {path}: choices must be a non-empty list or \"all\"")
        for c in choices:
            _check_value(path, c)
        return {"choices": choices}
    if "low" not in spec or "high" not in spec:
        raise SpaceError(f"knob {path}: give choices, or low and high")
    if "range" not in meta:
        raise SpaceError(f"knob {path}: a range needs a numeric field; allowed choices: "
                         f"{', '.join(str(c) for c in meta['choices'])}")
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"knob {path}: log must be true or false, got {log!r}")
    _check_value(path, low)
    _check_value(path, high)
    if not low < high or (log and low <= 0):
        raise SpaceError(f"knob {path}: need low < high (and low > 0 with log), got {low}, {high}")
    return {"low": low, "high": high, "log": log}


def load_space_file(path: Path) -> dict[str, Any]:
    """Knobs from a .json or .yaml/.yml file; a file that cannot be read or parsed is one
    SpaceError naming it (and the line), not a codec or parser traceback."""
    if not path.is_file():
        raise FileNotFoundError(f"search space file {path} does not exist")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpaceError(f"{path}: cannot read the space file: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")  # -sig: a BOM from a Windows editor is not an error
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpaceError(f"{path}: not UTF-8 text at line {line} (byte {raw[exc.start]:#04x}); "
                         "save it as UTF-8") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise SpaceError(f"{path}: YAML spaces need PyYAML (pip install PyYAML); "
                             "or write the space as JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise SpaceError(f"{path}: not valid YAML{where}: {problem}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpaceError(f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: "
                             f"{exc.msg}") from None
    if not isinstance(data, dict) or not data:
        raise SpaceError(f"{path}: a space is a non-empty mapping of knob paths to specs")
    return data


class SearchSpace:
    """A named set of knobs; `sample(trial, epochs, seed)` returns a validated Config."""

    PRESETS = ("quick", "survey")

    def __init__(self, name: str = "quick", knobs: dict[str, Any] | None = None) -> None:
        """`name`: a preset or a space file; `knobs` (as stored with a study) take precedence."""
        if knobs is None:
            if name in self.PRESETS:
                knobs = json.loads((PRESET_DIR / f"{name}.json").read_text())
            elif name.endswith((".json", ".yaml", ".yml")):
                knobs = load_space_file(Path(name))
            else:
                raise SpaceError(f"unknown search space {name!r}; allowed: "
                                 f"{', '.join(self.PRESETS)}, or a .json/.yaml space file")
        self.name = name
        self.knobs = {path: validate_knob(path, spec) for path, spec in knobs.items()}

    def sample(self, trial: TrialLike, epochs: int, seed: int = 0) -> Config:
        """Knobs in Config field order, so a knob's condition (field metadata "when", e.g. Bop's
        threshold only with optimizer bop) is decided before it; one whose condition fails is
        not suggested at all and keeps its default, so trial params hold only what mattered."""
        flat: dict[str, Any] = {"train.epochs": epochs, "seed": seed}
        fields = knob_fields()
        for path in (p for p in fields if p in self.knobs):
            when = fields[path].metadata.get("when")
            if when is not None and not when.holds(flat.get(when.path,
                                                            fields[when.path].default)):
                continue
            flat[path] = self._suggest(trial, path, self.knobs[path])
        return Config.from_dict(_nested(flat))

    @staticmethod
    def _suggest(trial: TrialLike, path: str, spec: Any) -> Any:
        if not isinstance(spec, dict):
            return spec
        name = param_name(path)
        if "choices" in spec:
            return trial.suggest_categorical(name, spec["choices"])
        if _integer(path):
            return trial.suggest_int(name, spec["low"], spec["high"], log=spec["log"])
        return trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=spec["log"])

    def params_for(self, config: Config) -> dict[str, Any]:
        """The trial params that make `sample` return `config`'s value for each searched knob
        whose value this space can produce (for enqueuing a known configuration)."""
        flat = _flatten(config.to_dict())
        params = {}
        for path, spec in self.knobs.items():
            if not isinstance(spec, dict) or path not in flat:
                continue
            value = flat[path]
            inside = (value in spec["choices"] if "choices" in spec
                      else spec["low"] <= value <= spec["high"])
            if inside:
                params[param_name(path)] = value
        return params


def _flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
