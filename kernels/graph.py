"""The op graph: runtime values, the Op base class and the registry that maps modules to ops.

A packed model is a flat list of ops. Each op class names its serialised `kind`, the torch module
class names it compiles (`handles`), and whether it consumes float tensors or packed bits; adding
a block type means writing one Op subclass decorated with `@register_op`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import reprlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from .bitops import unpack_nhwc

Encoding = Literal["float", "bits"]

# The most elements (per sample) any map, or a padded conv or pool input, may have: 2^26 float32
# is 256 MiB, far beyond the networks bnnx trains, so only a damaged or hostile file's geometry
# reaches it. It also bounds every size parameter, so none overflows a kernel's int.
MAX_MAP_ELEMENTS = 1 << 26


@dataclass(slots=True)
class Bits:
    """Packed activations: uint64 (N, H, W, C_words) plus the logical channel count. (Not
    frozen, nor is Signed: both are made per op and call, and a frozen dataclass's __init__
    costs twice a plain one's, 320 ns against 140.)"""

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


@dataclass
class Signed:
    """A float map with the packed signs its consumer's first binary conv takes (that conv's
    RSign shift already subtracted), written by the producer in the same pass as the map, so
    the consumer skips its own pack (see Op.wants_signs).

    The map is held as the producer wrote it, a C-contiguous float32 NHWC array (`nhwc`): a
    fused unit reads its residual from there, and the NCHW torch view (`map`) is only made for
    an op that asks for it. A producer whose consumer reads only the bits (SignRequest.floats
    False) writes no map: `made` is None and `remake` makes it on first use (activations(), a
    profile's reader, a test), the same floats the producer's pass rounds."""

    made: np.ndarray | None
    bits: Bits
    remake: Callable[[], np.ndarray] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if (self.made is None) == (self.remake is None):
            raise ValueError("Signed needs exactly one of a made map and a remake function")

    @functools.cached_property
    def nhwc(self) -> np.ndarray:
        return self.made if self.made is not None else self.remake()

    @functools.cached_property
    def map(self) -> torch.Tensor:
        return torch.from_numpy(self.nhwc).permute(0, 3, 1, 2)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self.bits.shape


@dataclass
class FloatMap:
    """Floats as a packed kernel wrote them, a C-contiguous float32 array: an NHWC map (N, H, W,
    C) or rows (N, F) (`array`), for a consumer that reads them so (Op.reads_nhwc: the narrow
    head; PackedModel's logits), which skips torch's view and its way back to numpy (~1 us a
    call); `map` that view (NCHW for a map), for as_float."""

    array: np.ndarray

    @functools.cached_property
    def map(self) -> torch.Tensor:
        t = torch.from_numpy(self.array)
        return t.permute(0, 3, 1, 2) if t.dim() == 4 else t

    @property
    def shape(self) -> tuple[int, ...]:
        if self.array.ndim != 4:
            return self.array.shape
        n, h, w, c = self.array.shape
        return n, c, h, w


class SignRequest(NamedTuple):
    """The bits a float-input op packs its input into first: sign(x - shift_c), or sign(x)
    where shift is None. `floats`: whether that op also reads the float map (a residual unit's
    shortcut does; a pack before a plain body does not, so its producer may skip the map)."""

    shift: np.ndarray | None
    floats: bool = True


Value = torch.Tensor | Bits | Signed | FloatMap


def as_float(value: Value) -> torch.Tensor:
    if isinstance(value, (Signed, FloatMap)):
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

    def reads_nhwc(self) -> bool:
        """Whether run() takes a FloatMap input (a float map left NHWC) as it comes."""
        return False

    def emit_nhwc(self) -> bool:
        """Have run() return its float output as a FloatMap, for a consumer that reads_nhwc();
        True if it will (PackedModel links each op to its consumer's)."""
        return False

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The per-sample output shape for an input of per-sample `shape`, from params and tensors
        alone; ValueError naming the field that does not fit. PackedModel checks every op with it
        before its dry run allocates anything. This default is an elementwise op's."""
        return shape

    def macs(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, int]:
        """(binary, float) multiply-accumulates for one sample; shapes exclude the batch.

        Only convolutions and linear layers count (Larq's convention, and spaces.summary's):
        elementwise work such as BatchNorm depends on what the engine fused, not on the model.
        """
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
            kinds = kind if isinstance(kind, tuple) else (kind,)
            raise ValueError(f"{self.name}: parameter {key!r} must be "
                             f"{' or '.join(k.__name__ for k in kinds)}, got {reprlib.repr(value)}")
        return value

    def real(self, key: str) -> float:
        """A float parameter (a JSON int or float)."""
        value = self.param(key, (int, float))
        if not isinstance(value, bool):
            with contextlib.suppress(OverflowError):  # an int beyond float range
                return float(value)
        raise ValueError(f"{self.name}: parameter {key!r} must be a float, got "
                         f"{reprlib.repr(value)}")

    def int_list(self, key: str, length: int, minimum: int = 0) -> tuple[int, ...]:
        value = self.param(key, (list, tuple))
        if len(value) != length or not all(
            isinstance(v, int) and not isinstance(v, bool) and minimum <= v <= MAX_MAP_ELEMENTS
            for v in value
        ):
            raise ValueError(f"{self.name}: parameter {key!r} must be {length} ints in "
                             f"[{minimum}, {MAX_MAP_ELEMENTS}], got {reprlib.repr(value)}")
        return tuple(value)

    # -- shape checks for output_shape -------------------------------------------------------

    def map_input(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """`shape` as (C, H, W); ValueError unless the input is a map."""
        if len(shape) != 3:
            raise ValueError(f"{self.name}: expects a (C, H, W) map, got shape {shape}")
        return shape[0], shape[1], shape[2]

    def per_channel(self, channels: int, *keys: str, broadcast: bool = False) -> None:
        """The 1-D tensors `keys` (those present) hold one value per input channel (or, with
        `broadcast`, may hold a single value)."""
        for key in keys:
            size = self.tensors[key].size if key in self.tensors else channels
            if size != channels and not (broadcast and size == 1):
                raise ValueError(f"{self.name}: tensor {key!r} has {size} values, the input has "
                                 f"{channels} channels")

    def window(self, shape: tuple[int, ...], kernel: Sequence[int], stride: Sequence[int],
               padding: Sequence[int], *, kernel_key: str, pool: bool = False,
               dilation: Sequence[int] = (1, 1), ceil_mode: bool = False) -> tuple[int, int, int]:
        """(C, OH, OW) of a conv or pool window on a (C, H, W) map, torch's arithmetic. Padding
        is at most half the kernel for a pool (torch's rule) and under the window for a conv
        (more would only add outputs of padding alone); the window must fit the padded map, and
        the padded map MAX_MAP_ELEMENTS."""
        c, h, w = self.map_input(shape)
        spans = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
        limits = [k // 2 for k in kernel] if pool else [s - 1 for s in spans]
        if any(p > limit for p, limit in zip(padding, limits, strict=True)):
            raise ValueError(f"{self.name}: padding {list(padding)} exceeds "
                             f"{'half the kernel' if pool else 'the window'} (at most {limits})")
        padded = [n + 2 * p for n, p in zip((h, w), padding, strict=True)]
        if c * padded[0] * padded[1] > MAX_MAP_ELEMENTS:
            raise ValueError(f"{self.name}: padding {list(padding)} makes a {c}x{padded[0]}x"
                             f"{padded[1]} map, over {MAX_MAP_ELEMENTS} elements")
        if any(span > n for span, n in zip(spans, padded, strict=True)):
            dilated = "" if tuple(dilation) == (1, 1) else f" (dilation {list(dilation)})"
            raise ValueError(f"{self.name}: {kernel_key} {list(kernel)}{dilated} does not fit the "
                             f"padded {padded[0]}x{padded[1]} input")
        out = []
        for n, span, s, p in zip((h, w), spans, stride, padding, strict=True):
            size = (n + 2 * p - span + (s - 1 if ceil_mode else 0)) // s + 1
            if ceil_mode and (size - 1) * s >= n + p:  # the last window must start inside
                size -= 1
            out.append(size)
        return c, out[0], out[1]


def output_shapes(ops: Sequence[Op], shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Each op's per-sample output shape when `ops` run in turn on `shape` (Op.output_shape),
    every map within MAX_MAP_ELEMENTS; nothing is allocated or run."""
    if math.prod(shape) > MAX_MAP_ELEMENTS:
        raise ValueError(f"input shape {shape} has over {MAX_MAP_ELEMENTS} elements")
    out = []
    for op in ops:
        shape = op.output_shape(shape)
        if math.prod(shape) > MAX_MAP_ELEMENTS:
            raise ValueError(f"{op.name}: output shape {shape} has over {MAX_MAP_ELEMENTS} "
                             "elements")
        out.append(shape)
    return out


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
