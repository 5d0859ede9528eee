"""What bnnx can search: config schema, quantizers, binary layers, blocks, builders, spaces."""

from .blocks import PlainBlock
from .config import ArchConfig, Config, ConfigError, QuantConfig, TrainConfig
from .layers import BinaryConv2d, BinaryLinear, Normalize
from .models import BinaryNet, build_model
from .quantizers import QUANTIZERS, Quantizer, get_quantizer
from .space import SearchSpace

__all__ = [
    "ArchConfig",
    "BinaryConv2d",
    "BinaryLinear",
    "BinaryNet",
    "Config",
    "ConfigError",
    "Normalize",
    "PlainBlock",
    "QUANTIZERS",
    "QuantConfig",
    "Quantizer",
    "SearchSpace",
    "TrainConfig",
    "build_model",
    "get_quantizer",
]
