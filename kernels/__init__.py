"""bnnx packed-bit inference: C++ XNOR/popcount kernels and the engine that compiles a trained
torch BinaryNet into packed ops, runs it, profiles it and saves it as one safetensors file."""

from . import binary_ops as _binary_ops  # noqa: F401 - registers the packed ops
from . import block_ops as _block_ops  # noqa: F401 - registers the residual-family block ops
from . import float_ops as _float_ops  # noqa: F401 - registers the float ops
from .bitops import (
    ConvLayer,
    UnitActivation,
    active_isa,
    available_isas,
    bits_layer,
    conv2d_bits,
    conv2d_dots,
    conv2d_float,
    dots_layer,
    float_layer,
    linear_float,
    maxpool2d_bits,
    maxpool2d_float,
    maxpool2d_float_nchw,
    nchw_to_nhwc,
    nhwc_to_nchw,
    pack_nchw,
    pack_nhwc,
    pack_weight,
    unit_layer,
    unpack_nhwc,
    use_isa,
    words_for,
)
from .compiler import compile  # noqa: A004 - the package's verb, as in kernels.compile(model)
from .errors import PackedModelError, UnsupportedLayerError
from .graph import Bits, Op, register_op
from .packed_model import LayerInfo, PackedModel
from .profiling import LayerProfile, Profile
from .serialize import FORMAT, FORMAT_VERSION, load
from .thresholds import NonMonotonicError, sign_thresholds

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Bits",
    "ConvLayer",
    "LayerInfo",
    "LayerProfile",
    "NonMonotonicError",
    "Op",
    "PackedModel",
    "PackedModelError",
    "Profile",
    "UnitActivation",
    "UnsupportedLayerError",
    "active_isa",
    "available_isas",
    "compile",
    "conv2d_bits",
    "conv2d_dots",
    "conv2d_float",
    "bits_layer",
    "dots_layer",
    "float_layer",
    "linear_float",
    "load",
    "maxpool2d_bits",
    "maxpool2d_float",
    "maxpool2d_float_nchw",
    "nchw_to_nhwc",
    "nhwc_to_nchw",
    "pack_nchw",
    "pack_nhwc",
    "pack_weight",
    "register_op",
    "sign_thresholds",
    "unit_layer",
    "unpack_nhwc",
    "use_isa",
    "words_for",
]
