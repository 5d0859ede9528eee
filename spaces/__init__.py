"""What bnnx can search: config schema, quantizers, binary layers, blocks, builders, spaces."""

from .blocks import (
    BinarySpec,
    BiRealBlock,
    PlainBlock,
    PoolFirstBlock,
    ReActBlock,
    ResNetBlock,
    RPReLU,
)
from .config import ArchConfig, Config, ConfigError, QuantConfig, TrainConfig
from .layers import BinaryConv2d, BinaryLinear, Normalize
from .models import BinaryNet, build_model
from .quantizers import QUANTIZERS, Quantizer, get_quantizer, set_training_progress
from .space import SearchSpace

__all__ = [
    "ArchConfig",
    "BiRealBlock",
    "BinaryConv2d",
    "BinaryLinear",
    "BinaryNet",
    "BinarySpec",
    "Config",
    "ConfigError",
    "Normalize",
    "PlainBlock",
    "PoolFirstBlock",
    "QUANTIZERS",
    "QuantConfig",
    "Quantizer",
    "RPReLU",
    "ReActBlock",
    "ResNetBlock",
    "SearchSpace",
    "TrainConfig",
    "build_model",
    "get_quantizer",
    "set_training_progress",
]
