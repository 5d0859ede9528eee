"""The op graph: runtime values, the Op base class and the registry that maps modules to ops.

A packed model is a flat list of ops. Each op class names its serialised `kind`, the torch module
class names it compiles (`handles`), and whether it consumes float tensors or packed bits; adding
a block type means writing one Op subclass decorated with `@register_op`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from .bitops import unpack_nhwc

Encoding = Literal["float", "bits"]


@dataclass(frozen=True)
class Bits:
    """Packed activations: uint64 (N, H, W, C_words) plus the logical channel count."""

    data: np.ndarray
    channels: int

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Logical (N, C, H, W), as the torch tensor it stands for."""
        n, h, w, _ = self.data.shape
        return n, self.channels, h, w

    def to_torch(self) -> torch.Tensor:
        """+-1 float32 NCHW (a view of an NHWC buffer)."""
        return torch.from_numpy(unpack_nhwc(self.data, self.channels)).permute(0, 3, 1, 2)


@dataclass(frozen=True)
class Signed:
    """A float map with the packed signs its consumer's first binary conv takes (that conv's
    RSign shift already subtracted), written by the producer in the same pass as the map, so
    the consumer skips its own pack (see Op.wants_signs)."""

    map: torch.Tensor
    bits: Bits

    @property
    def shape(self) -> torch.Size:
        return self.map.shape


class SignRequest(NamedTuple):
    """The bits a float-input op packs its input into first: sign(x - shift_c), or sign(x)
    where shift is None."""

    shift: np.ndarray | None


Value = torch.Tensor | Bits | Signed


def as_float(value: Value) -> torch.Tensor:
    if isinstance(value, Signed):
        return value.map
    return value.to_torch() if isinstance(value, Bits) else value


def value_shape(value: Value) -> tuple[int, ...]:
    return tuple(int(s) for s in value.shape)


class Op:
    """One compiled layer. Subclasses validate `params`/`tensors` in `__init__` (raise ValueError),
    so a loaded file is checked as thoroughly as a freshly compiled model."""

    kind: ClassVar[str]
    handles: ClassVar[tuple[str, ...]] = ()
    input_encoding: ClassVar[Encoding] = "float"

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        self.name = name
        self.params = params
        self.tensors = tensors

    @classmethod
    def from_module(cls, path: str, module: nn.Module, emit_bits: bool,
                    shift: torch.Tensor | None = None) -> Op:
        """Compile `module` (eval semantics). `emit_bits`: the consumer takes packed bits;
        `shift`: that consumer's input_shift, which emitted bits must subtract before the sign."""
        raise NotImplementedError(f"{cls.__name__} does not compile torch modules")

    @classmethod
    def input_shift(cls, module: nn.Module) -> torch.Tensor | None:
        """Per-channel alpha a bits-input op's RSign subtracts before its sign (None: plain sign).

        Its bits arrive packed, so whatever produces them (a pack or the previous block's
        threshold epilogue) must subtract it, exactly as torch does.
        """
        return None

    @property
    def output_encoding(self) -> Encoding:
        return "float"

    @property
    def label(self) -> str:
        """Short layer kind for profiles and summaries, e.g. 'float:conv3x3', 'bconv3x3'."""
        return self.kind

    def run(self, x: Value, threads: int) -> Value:
        raise NotImplementedError

    def wants_signs(self) -> SignRequest | None:
        """The packed signs this float-input op computes from its input first, which it takes
        ready made from a producer's Signed output; None if it packs nothing."""
        return None

    def emit_signs(self, request: SignRequest) -> bool:
        """Have run() return Signed outputs with the signs `request` describes, when this op
        can write them in its own output pass; True if it will (PackedModel links each op to
        its consumer's request)."""
        return False

    def macs(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, int]:
        """(binary, float) multiply-accumulates for one sample; shapes exclude the batch."""
        return 0, 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.label!r})"

    @property
    def packed_bytes(self) -> int:
        return sum(int(t.nbytes) for t in self.tensors.values())

    # -- validation helpers for subclasses ---------------------------------------------------

    def tensor(self, key: str, dtype: type, ndim: int) -> np.ndarray:
        if key not in self.tensors:
            raise ValueError(f"{self.name}: missing tensor {key!r}")
        t = self.tensors[key]
        if not isinstance(t, np.ndarray) or t.dtype != np.dtype(dtype) or t.ndim != ndim:
            got = f"{t.dtype} {t.shape}" if isinstance(t, np.ndarray) else type(t).__name__
            raise ValueError(
                f"{self.name}: tensor {key!r} must be {np.dtype(dtype)} with {ndim} dims, got {got}"
            )
        return np.ascontiguousarray(t)

    def param(self, key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in self.params:
            raise ValueError(f"{self.name}: missing parameter {key!r}")
        value = self.params[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            raise ValueError(f"{self.name}: parameter {key!r} has invalid value {value!r}")
        return value

    def int_list(self, key: str, length: int, minimum: int = 0) -> tuple[int, ...]:
        value = self.param(key, (list, tuple))
        if len(value) != length or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value
        ):
            raise ValueError(f"{self.name}: parameter {key!r} has invalid value {value!r}")
        return tuple(value)


OPS: dict[str, type[Op]] = {}
MODULE_OPS: dict[str, type[Op]] = {}

# Identity in eval mode, so they compile to nothing.
PASSTHROUGH_MODULES = frozenset({"Identity", "Dropout", "Dropout1d", "Dropout2d", "AlphaDropout"})


def register_op(cls: type[Op]) -> type[Op]:
    """Class decorator: make `cls` loadable by its kind and compilable from its module types."""
    if cls.kind in OPS:
        raise ValueError(f"op kind {cls.kind!r} is registered twice")
    OPS[cls.kind] = cls
    for module_type in cls.handles:
        if module_type in MODULE_OPS:
            raise ValueError(f"module type {module_type!r} already compiles to another op")
        MODULE_OPS[module_type] = cls
    return cls


def to_numpy(t: torch.Tensor, dtype: type = np.float32) -> np.ndarray:
    """A detached, contiguous copy, so the compiled model never aliases the torch model."""
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(dtype, copy=True))


def pair(value: int | tuple[int, ...] | list[int]) -> list[int]:
    return [int(value), int(value)] if isinstance(value, int) else [int(v) for v in value]
