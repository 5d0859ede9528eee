"""The configuration of one candidate network and its training: plain dataclasses.

Every field declares its allowed values (`choices`) or range in its metadata; one validator reads
them, so an error always names the field and what it may be. `Config.from_dict(d)` validates,
`to_dict()` / `to_json()` round-trip exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .blocks import ACTIVATION_NAMES, DOWNSAMPLE_MODES
from .quantizers import ACTIVATION_QUANTIZERS, FULL_PRECISION, WEIGHT_QUANTIZERS

FAMILIES = ("plain", "resnet", "bireal", "reactnet")
PRECISIONS = ("float", "binary")
STEM_LAYOUTS = ("conv3x3", "imagenet")
POOL_ORDERS = ("bn_pool", "pool_bn")
OPTIMIZERS = ("adam", "adamw", "sgd", "bop")
SCHEDULES = ("cosine", "linear", "step", "constant")


class ConfigError(ValueError):
    """A configuration value outside its allowed set; the message names field and allowed values."""


@dataclass(frozen=True)
class When:
    """A knob that only matters while another knob (`path`) is in `values`, or > 0 when
    `positive`: a search samples it only then (Optuna's conditional, define-by-run params)."""

    path: str
    values: tuple = ()
    positive: bool = False

    def holds(self, value: Any) -> bool:
        return value > 0 if self.positive else value in self.values


def _choice(default: Any, choices: tuple, why: str, when: When | None = None) -> Any:
    return field(default=default, metadata={"choices": choices, "why": why, "when": when})


def _range(default: Any, lo: float, hi: float, why: str, when: When | None = None) -> Any:
    return field(default=default, metadata={"range": (lo, hi), "why": why, "when": when})


@dataclass
class ArchConfig:
    family: str = _choice(
        "plain", FAMILIES, "plain: BinaryNet/VGG-small; resnet: XNOR-Net ResNet basic blocks; "
        "bireal: a shortcut per binary conv (Bi-Real); reactnet: MobileNet-like ReActNet-A")
    width: int = _range(32, 4, 1024, "channels of the first stage; each later stage doubles it")
    depth: int = _range(2, 1, 6, "stages; each later one halves the map while it is >= 2")
    blocks_per_stage: int = _range(
        1, 1, 4, "plain: conv+BN; resnet: 2-conv basic blocks; bireal: 1-conv units; "
        "reactnet: 3x3 + 1x1 blocks")
    kernel_size: int = _choice(3, (3, 5), "binary conv kernel; 3x3 is the BNN standard")
    pad_value: float = _choice(0.0, (0.0, 1.0), "0 = zero padding (exact correction), 1 = ones")
    stem: str = _choice("float", PRECISIONS, "first layer: fp keeps input detail (the standard)")
    stem_layout: str = _choice(
        "conv3x3", STEM_LAYOUTS, "conv3x3: one stride-1 3x3 conv (CIFAR/MNIST nets); imagenet: "
        "7x7/2 conv -> BN -> 3x3/2 max-pool, a quarter of the map (ResNet/Bi-Real-18 stem)")
    head: str = _choice("float", PRECISIONS, "classifier: fp is the standard, binary is smaller")
    downsample: str = _choice(
        "avgpool_conv", DOWNSAMPLE_MODES, "resnet/bireal shortcut when the map halves: AvgPool "
        "-> fp 1x1 conv -> BN (Bi-Real) or strided fp 1x1 conv -> BN (ResNet option B)",
        When("arch.family", ("resnet", "bireal")))
    activation: str = _choice(
        "none", ACTIVATION_NAMES, "after each residual unit: Bi-Real uses none, ReActNet RPReLU, "
        "Real-to-Bin PReLU; hardtanh bounds it", When("arch.family", ("resnet", "bireal",
                                                                  "reactnet")))
    bn_momentum: float = _range(0.1, 0.001, 1.0, "BatchNorm running-stat momentum (torch "
                                "convention; Larq's 0.99 is 0.01 here)")
    pool_order: str = _choice("bn_pool", POOL_ORDERS, "plain: conv -> BN -> pool, or conv -> "
                              "pool -> BN (pooling before BN, as in XNOR-Net's block)",
                              When("arch.family", ("plain",)))


@dataclass
class QuantConfig:
    input_quantizer: str = _choice(
        "clipped_ste", (*ACTIVATION_QUANTIZERS, FULL_PRECISION),
        "activation sign and its gradient; none = full precision with a ReLU where the sign was "
        "(the real-valued baseline BNN papers compare with; an fp twin, not compilable)"
    )
    clip: float = _range(1.0, 0.1, 4.0, "gradient window of clipped_ste (Larq Zoo: 1.25/1.3)",
                         When("quant.input_quantizer", ("clipped_ste",)))
    beta: float = _range(5.0, 0.1, 20.0, "swish_sign steepness (BNN+ uses 5)",
                         When("quant.input_quantizer", ("swish_sign",)))
    weight_quantizer: str = _choice(
        "sign", (*WEIGHT_QUANTIZERS, FULL_PRECISION),
        "binary weight + scaling; none = full precision (an fp twin, not compilable)")
    learned_scale: bool = _choice(False, (False, True), "XNOR-Net++ learned per-channel scale")


@dataclass
class TrainConfig:
    optimizer: str = _choice(
        "adam", OPTIMIZERS, "adam/adamw: BNN default; sgd: momentum 0.9; bop: Helwegen et al. "
        "2019 sign flips for binary weights, Adam for the rest"
    )
    lr: float = _range(1e-2, 1e-6, 1.0, "BNNs like larger rates than fp nets")
    weight_decay: float = _range(0.0, 0.0, 0.1, "on latent binary weights only; 0 or small")
    schedule: str = _choice(
        "cosine", SCHEDULES, "per step: cosine or linear to 0, step = x0.1 at 50% and 75%"
    )
    warmup_epochs: float = _range(0.0, 0.0, 100.0, "linear warm-up from 0 before the schedule")
    batch_size: int = _range(64, 1, 8192, "small data sets: small batches")
    epochs: int = _range(3, 1, 1000, "overridden by the search budget")
    clip_latent_weights: bool = _choice(True, (True, False), "keep latent weights in [-1, 1]")
    bop_threshold: float = _range(1e-8, 1e-10, 1e-2, "bop: flip when |momentum| > threshold",
                                  When("train.optimizer", ("bop",)))
    bop_gamma: float = _range(1e-4, 1e-6, 0.1, "bop: rate of the gradient moving average",
                              When("train.optimizer", ("bop",)))
    two_stage: bool = _choice(
        False, (True, False), "stage 1 real weights + binary activations, stage 2 all binary"
    )
    stage1_fraction: float = _range(0.5, 0.1, 0.9, "share of the epochs spent in stage 1",
                                    When("train.two_stage", (True,)))
    distill_weight: float = _range(
        0.0, 0.0, 1.0, "weight of the KD loss from the fp twin (ReActNet); 0 = no teacher"
    )
    distill_temperature: float = _range(1.0, 1.0, 10.0, "softmax temperature of the KD loss",
                                        When("train.distill_weight", positive=True))
    label_smoothing: float = _range(0.0, 0.0, 0.3, "cross-entropy label smoothing")
    gradient_clip: float = _range(0.0, 0.0, 10.0, "clip the gradient norm; 0 = off")


@dataclass
class Config:
    arch: ArchConfig = field(default_factory=ArchConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = _range(0, 0, 2**31 - 1, "torch seed for initialisation and data order")

    def __post_init__(self) -> None:
        _validate(self, "")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build and validate from a (possibly partial) nested dict; missing fields default."""
        return _from_dict(cls, data, "")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Config:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError("config JSON must be an object")
        return cls.from_dict(data)


def _from_dict(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown field '{prefix}{unknown[0]}'; allowed: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        if dataclasses.is_dataclass(f.default_factory if callable(f.default_factory) else None):
            kwargs[name] = _from_dict(f.default_factory, value, f"{prefix}{name}.")
        else:
            kwargs[name] = value
    obj = cls.__new__(cls)
    for name, f in fields.items():
        if name in kwargs:
            value = kwargs[name]
        elif f.default is not dataclasses.MISSING:
            value = f.default
        else:
            value = f.default_factory()
        object.__setattr__(obj, name, value)
    _validate(obj, prefix)
    return obj


def _validate(obj: Any, prefix: str) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _validate(value, f"{prefix}{f.name}.")
            continue
        name = f"{prefix}{f.name}"
        setattr(obj, f.name, _check(name, value, f))


def _check(name: str, value: Any, f: dataclasses.Field) -> Any:
    expected = type(f.default)
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
    elif expected in (int, float):
        # NaN passes every range check and int(inf) overflows: refuse non-finite values here
        finite = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
        if isinstance(value, bool) or not finite or (expected is int and value != int(value)):
            what = "an integer" if expected is int else "a number"
            raise ConfigError(f"{name} must be {what}, got {value!r}")
        value = expected(value)
    elif not isinstance(value, expected):
        raise ConfigError(f"{name} must be a {expected.__name__}, got {value!r}")
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(str(c) for c in choices)
        raise ConfigError(f"{name} = {value!r} is not allowed; allowed: {allowed}")
    bounds = f.metadata.get("range")
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ConfigError(f"{name} = {value!r} is out of range [{bounds[0]}, {bounds[1]}]")
    return value
