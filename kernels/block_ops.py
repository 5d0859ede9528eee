"""Ops for the residual families (ResNet, Bi-Real, ReActNet), the pool-first plain block, the
binary units the compiler fuses from bare layers, binary convs with RSign thresholds, and RPReLU.

A block op is a composite: named chains of existing ops (binary convs here, BatchNorm, pooling,
1x1 shortcut convs and activations from float_ops) that its `forward` wires exactly as the torch
block's forward does. The float parts call the same torch functions on the same values, and the
binary convs produce exact dots, so bits and logits match torch (see tests/test_kernels_*). The
one exception, a residual unit's tail (BatchNorm, shortcut add, PReLU, RPReLU or hardtanh) fused
into its binary conv's output pass, is used only where its BatchNorm was checked at load to give
torch's values on every output the conv can make; the add and the activation are torch's own
per-value float steps, done in the same order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import bitops
from .binary_ops import (
    PackOp,
    PlainBlockOp,
    _binary_conv,
    binary_weight,
    block_input_shift,
    check_sign_quantizer,
    conv_output,
    read_conv_fields,
    rsign_alpha,
)
from .compiler import _flatten
from .errors import UnsupportedLayerError
from .float_ops import (
    AvgPool2dOp,
    BatchNormOp,
    Conv2dOp,
    FloatOp,
    HardtanhOp,
    PReLUOp,
    nhwc,
)
from .graph import (
    OPS,
    Bits,
    Encoding,
    Op,
    Signed,
    SignRequest,
    Value,
    as_float,
    output_shapes,
    pair,
    register_op,
    to_numpy,
    value_shape,
)

# A unit's shortcut map, given the unit conv's output channels (ReActNet duplicates its input
# when the 1x1 conv doubles the width): a float map, or a Signed one whose NHWC array a fused
# unit reads as its residual without a conversion.
Shortcut = Callable[[int], torch.Tensor | Signed]


@register_op
class BinaryConvOp(Op):
    """A BinaryConv2d: (shift by RSign's alpha) -> pack -> binary conv -> scale * dot + bias.

    RSign's sign(x - alpha_c) packs the tensor x - alpha_c, computed as torch computes it, so
    bit = x < alpha_c exactly. Packed input is used as is: its producer already subtracted
    alpha_c (the compiler hands every packed-input op's shift to the op that packs for it).
    """

    kind = "binary_conv"
    handles = ("BinaryConv2d",)

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        read_conv_fields(self)
        self.scale = self._vector("scale", self.c_out)
        self.bias = self._vector("bias", self.c_out)
        shifted = self.param("shifted", bool)
        self.packer = PackOp(f"{name}.pack", {},
                             {"shift": self._vector("shift", self.c_in)} if shifted else {})
        self._unit_layers: dict[tuple[int, int], tuple[Unit, np.ndarray | None,
                                                        bitops.ConvLayer]] = {}

    def _vector(self, key: str, size: int) -> np.ndarray:
        t = self.tensor(key, np.float32, 1)
        if t.shape != (size,):
            raise ValueError(f"{self.name}: tensor {key!r} has shape {t.shape}, expected ({size},)")
        return t

    @classmethod
    def from_module(cls, path: str, module: nn.Module, emit_bits: bool,
                    shift: torch.Tensor | None = None) -> Op:
        _binary_conv(path, module)
        alpha = rsign_alpha(module.input_quantizer)
        if alpha is None:
            check_sign_quantizer(path, module, module.in_channels)
        if module.bias is not None and module.output_scale is not None:
            raise UnsupportedLayerError(f"{path}: BinaryConv2d with both a bias and a learned "
                                        "scale is not supported")
        wq, scale = binary_weight(path, module)
        bias = (to_numpy(module.bias) if module.bias is not None
                else np.zeros(module.out_channels, np.float32))
        tensors = {"weight": bitops.pack_weight(wq.numpy()), "scale": to_numpy(scale), "bias": bias}
        if alpha is not None:
            tensors["shift"] = to_numpy(alpha)
        return cls(path, {
            "c_in": int(module.in_channels), "c_out": int(module.out_channels),
            "kernel": list(module.kernel_size), "stride": pair(module.stride),
            "padding": pair(module.padding), "pad_value": int(module.pad_value),
            "shifted": alpha is not None,
        }, tensors)

    @property
    def label(self) -> str:
        kh, kw = self.kernel
        return f"bconv{kh}x{kw}" + ("" if self.stride == (1, 1) else f"s{self.stride[0]}")

    def pack(self, x: torch.Tensor, threads: int = 1) -> Bits:
        """The binary input: bit = (x - alpha_c) < 0, i.e. torch's sign of the conv's input."""
        return self.packer.run(x, threads)

    def sign_request(self) -> SignRequest:
        """What this conv packs a float input into: the sign of x minus its RSign shift."""
        return SignRequest(self.packer.tensors.get("shift"))

    def _bits(self, x: Value, threads: int) -> np.ndarray:
        bits = (x.bits if isinstance(x, Signed) else x if isinstance(x, Bits)
                else self.pack(x, threads))
        if bits.channels != self.c_in:
            raise ValueError(f"{self.name}: expects {self.c_in} channels, got {bits.channels}")
        return bits.data

    @functools.cached_property
    def layer(self) -> bitops.ConvLayer:
        """This conv with float output (an unfused unit's), prepared on first use."""
        return bitops.float_layer(self.weight, self.c_in, self.scale, self.bias, self.stride,
                                  self.padding, self.pad_value, self.blocked)

    def unit_layer(self, unit: Unit, shift: np.ndarray | None) -> bitops.ConvLayer:
        """This conv with `unit`'s tail (signs minus `shift`), prepared on first use: a block
        asks for the same few (unit, shift) pairs on every forward."""
        key = (id(unit), id(shift))
        hit = self._unit_layers.get(key)
        if hit is None or hit[0] is not unit or hit[1] is not shift:  # ids of live objects only
            layer = bitops.unit_layer(
                self.weight, self.c_in, self.scale, self.bias, self.stride, self.padding,
                self.pad_value, self.blocked, batchnorm=unit.batchnorm,
                activation=unit.activation, sign_shift=shift)
            hit = self._unit_layers[key] = (unit, shift, layer)
        return hit[2]

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return conv_output(self, shape)

    def run(self, x: Value, threads: int) -> torch.Tensor:
        y = self.layer(self._bits(x, threads), threads)
        return torch.from_numpy(y).permute(0, 3, 1, 2)  # NCHW view of the NHWC result

    def run_unit(self, x: Value, unit: Unit, residual: torch.Tensor | Signed | None,
                 threads: int, signs: SignRequest | None = None) -> torch.Tensor | Signed:
        """A residual unit's tail in one kernel pass: act(fma(run(x), alpha_c, beta_c)
        [+ residual]), `residual` of the output's shape, or of half its channels (a multiple of
        16) added to both halves (ReActNet's [y, y]), NCHW or a Signed map read as its NHWC
        array (see fuse_unit); with `signs`, a Signed map carrying the packed signs the next
        conv takes, from the same pass."""
        layer = self.unit_layer(unit, None if signs is None else signs.shift)
        if residual is not None:
            residual = residual.nhwc if isinstance(residual, Signed) else nhwc(residual, threads)
        y, bits = layer(self._bits(x, threads), threads, residual, signs is not None)
        if bits is None:
            return torch.from_numpy(y).permute(0, 3, 1, 2)  # NCHW view of the NHWC result
        return Signed(y, Bits(bits, self.c_out))

    def fused_batchnorm(self, bn: BatchNormOp) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-channel (alpha, beta) with fma(y, alpha_c, beta_c) equal, bit for bit, to torch's
        eval BatchNorm `bn` of every value y this conv can output; None if there are none.

        alpha and beta are torch's own, probed (BatchNormOp.linear_terms); then fma is checked
        on every output scale * d + bias (every reachable dot d in [-K, K], rounded as the
        kernel rounds it), so exactness never rests on the probe.
        """
        fan_in = self.c_in * self.kernel[0] * self.kernel[1]
        alpha, beta = bn.linear_terms()
        # A dot sums C_in * (taps inside the map) terms of +-1, or all K with +-1 padding: its
        # parity is K's whenever C_in is even or no tap is zero, so only every other d occurs.
        step = 2 if self.c_in % 2 == 0 or self.pad_value != 0 else 1
        dots = torch.arange(-fan_in, fan_in + 1, step, dtype=torch.float32).view(-1, 1)
        y = dots * torch.from_numpy(self.scale) + torch.from_numpy(
            self.bias)  # (2K + 1, C) outputs, the kernel's multiply then add
        got = bitops.fma_channels(y.numpy(), alpha, beta)
        if not np.array_equal(got.view(np.int32), bn.on_rows(y).numpy().view(np.int32)):
            return None
        return alpha, beta

    def macs(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, int]:
        return _prod(out_shape) * self.c_in * self.kernel[0] * self.kernel[1], 0


def _prod(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape)) if shape else 1


class Unit(NamedTuple):
    """What a binary conv's output pass does after scale * dot + bias in a fused residual unit:
    BatchNorm as fma(y, alpha_c, beta_c), then (shortcut add and) the activation, if any."""

    batchnorm: tuple[np.ndarray, np.ndarray]
    activation: bitops.UnitActivation | None


@register_op
class RPReLUOp(FloatOp):
    """ReActNet RPReLU: PReLU(x - gamma_c) + zeta_c, the module's own arithmetic."""

    kind = "rprelu"
    handles = ("RPReLU",)

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        self.gamma = self.torch_tensor("gamma", 1)
        self.weight = self.torch_tensor("weight", 1)
        self.zeta = self.torch_tensor("zeta", 1)
        if not self.gamma.shape == self.weight.shape == self.zeta.shape:
            raise ValueError(f"{name}: gamma, weight and zeta must have one shape")

    @classmethod
    def from_module(cls, path: str, module: nn.Module, emit_bits: bool,
                    shift: torch.Tensor | None = None) -> Op:
        return cls(path, {}, {"gamma": to_numpy(module.gamma), "weight": to_numpy(
            module.prelu.weight), "zeta": to_numpy(module.zeta)})

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        self.per_channel(self.map_input(shape)[0], "gamma", "weight", "zeta", broadcast=True)
        return shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.prelu(x - self.gamma.view(1, -1, 1, 1), self.weight) + self.zeta.view(1, -1, 1, 1)


def fuse_unit(conv: list[Op], bn: list[Op], act: list[Op]) -> Unit | None:
    """The fused tail of the chains conv -> bn [-> + shortcut] -> act: one binary conv, one
    BatchNorm the conv's output pass reproduces exactly (fused_batchnorm) and no activation,
    a PReLU, an RPReLU or a hardtanh. None otherwise (those chains run as torch's)."""
    if not (len(conv) == len(bn) == 1 and len(act) <= 1 and isinstance(conv[0], BinaryConvOp)
            and isinstance(bn[0], BatchNormOp)):
        return None
    activation = _unit_activation(act[0], conv[0].c_out) if act else None
    if act and activation is None:
        return None
    batchnorm = conv[0].fused_batchnorm(bn[0])
    return None if batchnorm is None else Unit(batchnorm, activation)


def _unit_activation(op: Op, channels: int) -> bitops.UnitActivation | None:
    """A hardtanh, PReLU (one slope or one per channel) or RPReLU op as kernel parameters."""
    def per_channel(t: torch.Tensor) -> np.ndarray | None:
        v = t.detach().to(torch.float32).numpy()
        if v.shape == (1,):
            return np.full(channels, v[0], np.float32)
        return np.ascontiguousarray(v) if v.shape == (channels,) else None

    if isinstance(op, HardtanhOp):
        return bitops.UnitActivation("hardtanh", bounds=(op.min_val, op.max_val))
    if isinstance(op, PReLUOp):
        slope = per_channel(op.weight)
        return None if slope is None else bitops.UnitActivation("prelu", slope)
    if isinstance(op, RPReLUOp):
        slope, gamma, zeta = (per_channel(t) for t in (op.weight, op.gamma, op.zeta))
        if slope is None or gamma is None or zeta is None:
            return None
        return bitops.UnitActivation("rprelu", slope, gamma, zeta)
    return None


# -- composite blocks ------------------------------------------------------------------------


class BlockOp(Op):
    """A block compiled to named chains of sub-ops; subclasses name the chains (`parts`, the
    torch block's child names) and wire them in `forward` as the torch block does.

    Serialised as params {"chains": {part: [{"kind", "params"}, ...]}} and tensors
    "<part>.<index>.<key>", so a loaded block is rebuilt and validated by its sub-ops.
    """

    parts: ClassVar[tuple[str, ...]] = ()
    units_of: ClassVar[tuple[str, ...]] = ()  # suffixes n of conv{n} -> bn{n} -> act{n} units

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        chains = self.param("chains", dict)
        if sorted(chains) != sorted(self.parts):
            raise ValueError(f"{name}: chains {sorted(chains)} do not match {sorted(self.parts)}")
        self.threads = 1  # set by each run, read by the chains
        self.chains: dict[str, list[Op]] = {}
        self._shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        for part, entries in chains.items():
            if not isinstance(entries, list):
                raise ValueError(f"{name}: chain {part!r} must be a list")
            self.chains[part] = [self._sub_op(part, i, e) for i, e in enumerate(entries)]
            for pool, conv in zip(self.chains[part], self.chains[part][1:], strict=False):
                if isinstance(pool, AvgPool2dOp) and type(conv) is Conv2dOp:
                    # torch's conv takes NCHW: the pool writes it; the direct kernel's 1x1 conv
                    # (where it gives torch's bits) reads the channels-last map
                    pool.nchw_out = not conv.directs
        # Residual units ("" for conv/bn/act, "1" for conv1/bn1/act1, ...) fused where exact.
        self.units: dict[str, Unit | None] = {
            n: fuse_unit(*(self.chains[f"{p}{n}"] for p in ("conv", "bn", "act")))
            for n in self.units_of}
        # Each unit's output is the next unit's conv input: the signs that conv packs.
        self._next_signs: dict[str, SignRequest | None] = {
            n: self._packs_input(later)
            for n, later in zip(self.units_of, self.units_of[1:], strict=False)}
        self.signs_out: SignRequest | None = None  # the consumer's input bits (emit_signs)

    def _sub_op(self, part: str, index: int, entry: Any) -> Op:
        if not isinstance(entry, dict) or entry.get("kind") not in OPS:
            raise ValueError(f"{self.name}: {part}[{index}] is not a known op: {entry!r}")
        prefix = f"{part}.{index}."
        sub = {k[len(prefix):]: v for k, v in self.tensors.items() if k.startswith(prefix)}
        return OPS[entry["kind"]](f"{self.name}.{part}", entry.get("params", {}), sub)

    @classmethod
    def from_module(cls, path: str, module: nn.Module, emit_bits: bool,
                    shift: torch.Tensor | None = None) -> Op:
        chains: dict[str, list[dict[str, Any]]] = {}
        tensors: dict[str, np.ndarray] = {}
        for part in cls.parts:
            child = getattr(module, part, None)
            if not isinstance(child, nn.Module):
                raise UnsupportedLayerError(f"{path}: {type(module).__name__} has no {part!r}")
            chains[part] = []
            for i, (sub_path, sub, op_cls) in enumerate(_flatten(f"{path}.{part}", child)):
                if op_cls.input_encoding != "float":
                    raise UnsupportedLayerError(f"{sub_path}: {type(sub).__name__} is not "
                                                "supported inside a block")
                op = op_cls.from_module(sub_path, sub, False)
                chains[part].append({"kind": op.kind, "params": op.params})
                tensors.update({f"{part}.{i}.{k}": v for k, v in op.tensors.items()})
        return cls(path, {**cls.extra_params(path, module, emit_bits), "chains": chains},
                   {**tensors, **cls.extra_tensors(emit_bits, shift)})

    @classmethod
    def extra_params(cls, path: str, module: nn.Module, emit_bits: bool) -> dict[str, Any]:
        return {}

    @classmethod
    def extra_tensors(cls, emit_bits: bool, shift: torch.Tensor | None) -> dict[str, np.ndarray]:
        """Block-level tensors besides the chains' (named without a chain prefix)."""
        return {}

    def chains_shape(self, shape: tuple[int, ...], *parts: str) -> tuple[int, ...]:
        """The output shape of the chains `parts` run in turn on `shape` (see output_shapes)."""
        for part in parts:
            shape = ([shape] + output_shapes(self.chains[part], shape))[-1]
        return shape

    def residual(self, main: tuple[int, ...], shortcut: tuple[int, ...]) -> None:
        """A residual add takes two maps of one shape (never a broadcast)."""
        if main != shortcut:
            raise ValueError(f"{self.name}: the shortcut gives shape {shortcut}, the main path "
                             f"{main}; a residual add needs one shape")

    def chain(self, part: str, x: Value) -> Value:
        """Run one chain (an empty chain, e.g. an identity shortcut, returns x)."""
        before = x
        for op in self.chains[part]:
            x = op.run(x, self.threads)
        if part not in self._shapes:  # per-sample shapes: the same on every run
            self._shapes[part] = (value_shape(before)[1:], value_shape(x)[1:])
        return x

    def shortcut(self, part: str, x: Value) -> torch.Tensor | Signed:
        """Chain `part` on the block input x; an empty chain (an identity shortcut) hands a
        Signed x over as it is, so a fused unit reads its NHWC array, and so does a chain of
        float ops (each takes the float map of a Signed; a direct 1x1 conv reads its NHWC
        array). A binary op in the chain gets the float map: the signs were packed for the
        unit's conv, with its shift."""
        chain = self.chains[part]
        if isinstance(x, Signed) and (not chain or all(isinstance(op, FloatOp) for op in chain)):
            return self.chain(part, x) if chain else x
        return self.chain(part, as_float(x))

    def _packs_input(self, n: str) -> SignRequest | None:
        """What unit n's conv packs its float input into, when that conv is one binary conv."""
        chain = self.chains[f"conv{n}"]
        return (chain[0].sign_request() if len(chain) == 1 and isinstance(chain[0], BinaryConvOp)
                else None)

    def wants_signs(self) -> SignRequest | None:
        """The first unit's binary conv packs the block's input: a producer may hand it over."""
        return self._packs_input(self.units_of[0]) if self.units_of else None

    def emit_signs(self, request: SignRequest) -> bool:
        """The last unit's fused pass can write its consumer's input bits too."""
        if not self.units_of or self.units[self.units_of[-1]] is None:
            return False
        self.signs_out = request
        return True

    def unit(self, n: str, x: Value, shortcut: Shortcut | None,
             block_input: Value | None) -> torch.Tensor | Signed:
        """act{n}(bn{n}(conv{n}(x)) [+ shortcut(C_out)]): one fused pass where self.units[n]
        holds a Unit (fuse_unit), else the chains as the torch block runs them. A fused unit
        also packs its consumer's input: the next unit's conv, or after the last unit the
        next op's when it asked (emit_signs). `block_input`: the map a shortcut reads (None
        without a shortcut)."""
        conv = f"conv{n}"
        fused = self.units.get(n)
        if fused is None:
            y = self.chain(f"bn{n}", self.chain(conv, x))
            if shortcut is not None:
                y = _residual(y, as_float(shortcut(y.shape[1])), as_float(block_input))
            return self.chain(f"act{n}", y)
        op = self.chains[conv][0]
        assert isinstance(op, BinaryConvOp)  # fuse_unit's guarantee
        signs = self._next_signs.get(n, self.signs_out)
        y = op.run_unit(x, fused, None if shortcut is None else shortcut(op.c_out), self.threads,
                        signs)
        if conv not in self._shapes:
            self._shapes[conv] = (value_shape(x)[1:], value_shape(y)[1:])
        return y

    def run(self, x: Value, threads: int) -> Value:
        self.threads = threads
        return self.forward(x)

    def forward(self, x: Value) -> Value:
        raise NotImplementedError

    def macs(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, int]:
        binary = flt = 0
        for part, ops in self.chains.items():
            shape_in, shape_out = self._shapes.get(part, (in_shape, out_shape))
            for op in ops:  # chains hold one shape-changing op at most (conv or pool)
                b, f = op.macs(shape_in, shape_out)
                binary, flt = binary + b, flt + f
        return binary, flt


def _residual(y: torch.Tensor, shortcut: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y + shortcut, in place into y when y is the block's own intermediate (no view of its
    input x): a fresh output map costs as much again as the add. Same float adds either way."""
    if y.shape == shortcut.shape and (y.untyped_storage().data_ptr()
                                      != x.untyped_storage().data_ptr()):
        return y.add_(shortcut)
    return y + shortcut


@register_op
class ResNetBlockOp(BlockOp):
    """ResNetBlock: act2(bn2(conv2(act1(bn1(conv1(x))))) + shortcut(x))."""

    kind = "resnet_block"
    handles = ("ResNetBlock",)
    parts = ("conv1", "bn1", "act1", "conv2", "bn2", "shortcut", "act2")
    units_of = ("1", "2")

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        y = self.chains_shape(shape, "conv1", "bn1", "act1", "conv2", "bn2")
        self.residual(y, self.chains_shape(shape, "shortcut"))
        return self.chains_shape(y, "act2")

    def forward(self, x: Value) -> Value:
        y = self.unit("1", x, None, x)
        return self.unit("2", y, lambda _: self.shortcut("shortcut", x), x)


@register_op
class BiRealBlockOp(BlockOp):
    """BiRealBlock: act(bn(conv(x)) + shortcut(x)), one fused pass where `units` allows."""

    kind = "bireal_block"
    handles = ("BiRealBlock",)
    parts = ("conv", "bn", "shortcut", "act")
    units_of = ("",)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        y = self.chains_shape(shape, "conv", "bn")
        self.residual(y, self.chains_shape(shape, "shortcut"))
        return self.chains_shape(y, "act")

    def forward(self, x: Value) -> Value:
        return self.unit("", x, lambda _: self.shortcut("shortcut", x), x)


@register_op
class ReActBlockOp(BlockOp):
    """ReActBlock: y = act1(bn1(conv1(x)) + shortcut(x)); act2(bn2(conv2(y)) + y or [y, y])."""

    kind = "reactnet_block"
    handles = ("ReActBlock",)
    parts = ("conv1", "bn1", "shortcut", "act1", "conv2", "bn2", "act2")
    units_of = ("1", "2")

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        y = self.chains_shape(shape, "conv1", "bn1")
        self.residual(y, self.chains_shape(shape, "shortcut"))
        y = self.chains_shape(y, "act1")
        z = self.chains_shape(y, "conv2", "bn2")
        self.residual(z, y if z[0] == y[0] else (2 * y[0], *y[1:]))  # y, or [y, y] widened
        return self.chains_shape(z, "act2")

    def forward(self, x: Value) -> Value:
        y = self.unit("1", x, lambda _: self.shortcut("shortcut", x), x)

        def shortcut(c: int) -> torch.Tensor | Signed:
            """y, or [y, y] where conv2 widens: y itself when the fused pass adds it to both
            halves (widths a multiple of 16), no concatenated copy."""
            if c == y.shape[1] or self.units["2"] is not None and y.shape[1] % 16 == 0:
                return y
            return torch.cat([as_float(y)] * 2, 1)

        return self.unit("2", y, shortcut, y)


class PackedInputBlockOp(BlockOp):
    """A block on packed input, emitting bits (torch's sign of its result, packed) for a binary
    consumer or the float map otherwise.

    The float chains are torch's own arithmetic, so bits for a consumer with an RSign pack the
    result minus its alpha_c (optional tensor "shift"), as torch does. The block's own RSign is
    applied by whatever packs its input.
    """

    input_encoding = "bits"

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        self.output = self.param("output", str)
        if self.output not in ("bits", "float"):
            raise ValueError(f"{name}: invalid output {self.output!r}")
        self.packer = PackOp(f"{name}.pack", {},
                             {"shift": tensors["shift"]} if "shift" in tensors else {})

    @classmethod
    def input_shift(cls, module: nn.Module) -> torch.Tensor | None:
        return block_input_shift(module)

    @classmethod
    def extra_params(cls, path: str, module: nn.Module, emit_bits: bool) -> dict[str, Any]:
        return {"output": "bits" if emit_bits else "float"}

    @classmethod
    def extra_tensors(cls, emit_bits: bool, shift: torch.Tensor | None) -> dict[str, np.ndarray]:
        return {"shift": to_numpy(shift)} if emit_bits and shift is not None else {}

    @property
    def output_encoding(self) -> Encoding:
        return "bits" if self.output == "bits" else "float"

    def wants_signs(self) -> SignRequest | None:
        return None  # its input arrives packed

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        y = self.chains_shape(shape, *self.parts)
        return self.packer.output_shape(y) if self.output == "bits" else y

    def result(self, y: Value) -> Value:
        """The block's output from its float result `y`: packed for a binary consumer."""
        return self.packer.run(y, self.threads) if self.output == "bits" else y


@register_op
class PoolFirstBlockOp(PackedInputBlockOp):
    """PoolFirstBlock: bn(pool(conv(x))) on packed input (see PackedInputBlockOp)."""

    kind = "pool_first_block"
    handles = ("PoolFirstBlock",)
    parts = ("conv", "pool", "bn")

    def forward(self, x: Value) -> Value:
        return self.result(self.chain("bn", self.chain("pool", self.chain("conv", x))))


@register_op
class BinaryUnitOp(PackedInputBlockOp):
    """pool(act(bn(conv(x)))) on packed input, at most one of act and pool: a binary conv and
    the layers after it wherever the graph has them (the compiler's pattern fusion), not only
    inside a block.

    Compiles to PlainBlockOp's integer thresholds where its consumer takes bits and no
    activation follows the BatchNorm. Otherwise conv, BatchNorm and activation run in one
    output pass where the BatchNorm's fma is exact (fuse_unit), which also writes the bits a
    binary consumer takes; else torch's chains, as the model runs them.
    """

    kind = "binary_unit"
    parts = ("conv", "bn", "act", "pool")
    units_of = ("",)

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        if self.chains["act"] and self.chains["pool"]:
            raise ValueError(f"{name}: a binary unit takes an activation or a pool, not both")
        if self.output == "bits" and self.units[""] is not None and not self.chains["pool"]:
            self.signs_out = SignRequest(self.packer.tensors.get("shift"))

    @classmethod
    def from_module(cls, path: str, module: nn.Module, emit_bits: bool,
                    shift: torch.Tensor | None = None) -> Op:
        if emit_bits and isinstance(getattr(module, "act", None), nn.Identity):
            return PlainBlockOp.from_module(path, module, emit_bits, shift)
        return super().from_module(path, module, emit_bits, shift)

    @property
    def label(self) -> str:
        tail = [op.kind for part in ("act", "pool") for op in self.chains[part]]
        return "+".join([self.chains["conv"][0].label, "bn", *tail])

    def emit_signs(self, request: SignRequest) -> bool:
        return not self.chains["pool"] and super().emit_signs(request)

    def forward(self, x: Value) -> Value:
        y = self.chain("pool", self.unit("", x, None, None))
        if isinstance(y, Signed):  # the fused pass wrote the consumer's bits beside the map
            return y.bits if self.output == "bits" else y
        return self.result(y)
