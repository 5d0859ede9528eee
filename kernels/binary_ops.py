"""Packed-bit ops: packing, binary conv blocks and binary linear layers.

Bits stay packed between consecutive binary ops: a block whose consumer takes bits ends in an
integer-threshold epilogue (its BatchNorm and the next sign folded into one compare per
channel); a block feeding a float consumer ends in a folded float affine instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import bitops
from ._ext import ext
from .errors import UnsupportedLayerError
from .graph import (
    Bits,
    Encoding,
    FloatMap,
    Op,
    Signed,
    SignRequest,
    Value,
    pair,
    register_op,
    to_numpy,
)
from .thresholds import NonMonotonicError, sign_thresholds

# -- compile-time checks shared by binary layers ---------------------------------------------

_PROBE = torch.tensor(
    [-float("inf"), -3.0, -1.0, -1e-30, -0.0, 0.0, 1e-30, 0.5, 1.0, 3.0, float("inf"),
     float("nan")]
)


def check_sign_quantizer(path: str, layer: nn.Module, channels: int) -> None:
    """The layer's input quantizer must be exactly sign with sign(0) = +1 (what packing does)."""
    q = layer.input_quantizer
    kind = type(layer).__name__
    if q is None:
        raise UnsupportedLayerError(
            f"{path}: {kind} with input_quantizer=None is not supported "
            "(the packed engine needs binary activations)"
        )
    if getattr(q, "precision", 1) != 1:
        raise UnsupportedLayerError(
            f"{path}: {kind} input quantizer {type(q).__name__} has precision {q.precision}, not 1"
        )
    # Probe every channel (per-channel quantizer parameters broadcast) with the edge values.
    if kind == "BinaryLinear":
        probe = _PROBE.view(-1, 1).expand(-1, channels).contiguous()
    else:
        probe = _PROBE.view(1, 1, -1, 1).expand(1, channels, -1, 1).contiguous()
    expected = torch.where(probe >= 0, 1.0, -1.0)
    with torch.no_grad():
        try:
            got = q(probe)
        except Exception as exc:  # noqa: BLE001 - any failure means "not a plain sign"
            raise UnsupportedLayerError(
                f"{path}: input quantizer {type(q).__name__} failed on a probe: {exc}"
            ) from None
    if got.shape != expected.shape or not torch.equal(got.float(), expected):
        raise UnsupportedLayerError(
            f"{path}: input quantizer {type(q).__name__} is not a plain sign "
            "(+1 where x >= 0, else -1); the packed engine has no op for it yet"
        )


def rsign_alpha(quantizer: nn.Module | None) -> torch.Tensor | None:
    """alpha_c of an RSign-like input quantizer (the sign of `shifted(x)` = x - alpha_c), else
    None."""
    if quantizer is None or not hasattr(quantizer, "shifted"):
        return None
    return quantizer.alpha.detach().to(torch.float32).cpu().flatten()


def block_input_shift(module: nn.Module) -> torch.Tensor | None:
    """A packed-input block's RSign alpha_c (its conv's), applied by whatever packs its input."""
    return rsign_alpha(getattr(getattr(module, "conv", None), "input_quantizer", None))


def binary_weight(path: str, layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(quantized weight, per-output-channel scale); the weight must be +-scale per channel."""
    kind = type(layer).__name__
    if layer.weight_quantizer is None:
        raise UnsupportedLayerError(
            f"{path}: {kind} with weight_quantizer=None is not supported "
            "(the packed engine needs binary weights)"
        )
    with torch.no_grad():
        wq = layer.quantized_weight().detach().to(torch.float32).cpu()
    mag = wq.abs()
    scale = mag.reshape(mag.shape[0], -1).amax(dim=1)
    if not torch.equal(mag, scale.view(-1, *([1] * (mag.dim() - 1))).expand_as(mag)):
        raise UnsupportedLayerError(
            f"{path}: weight quantizer {type(layer.weight_quantizer).__name__} does not produce "
            "+-scale per output channel"
        )
    learned = getattr(layer, "output_scale", None)  # XNOR-Net++ scale on the conv output
    if learned is not None:
        scale = scale * learned.detach().to(torch.float32).cpu().flatten()
    return wq, scale


def _batchnorm2d(path: str, bn: nn.Module) -> nn.Module:
    if type(bn).__name__ != "BatchNorm2d":
        raise UnsupportedLayerError(
            f"{path}: {type(bn).__name__} is not supported here (expected BatchNorm2d)"
        )
    if bn.running_mean is None or bn.running_var is None:
        raise UnsupportedLayerError(
            f"{path}: BatchNorm2d without running statistics is not supported"
        )
    return bn


def _bn_eval(bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The module's eval-mode forward, without touching its state even if it is training."""
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0,
                        bn.eps)


def _binary_conv(path: str, conv: nn.Module) -> None:
    if type(conv).__name__ != "BinaryConv2d":
        raise UnsupportedLayerError(
            f"{path}: {type(conv).__name__} is not supported here (expected BinaryConv2d)"
        )
    if conv.groups != 1 or tuple(conv.dilation) != (1, 1) or isinstance(conv.padding, str):
        raise UnsupportedLayerError(
            f"{path}: BinaryConv2d with groups={conv.groups}, dilation={conv.dilation}, "
            f"padding={conv.padding!r} is not supported (groups 1, dilation 1, int padding)"
        )
    if float(conv.pad_value) not in (-1.0, 0.0, 1.0):
        raise UnsupportedLayerError(f"{path}: pad_value {conv.pad_value!r} is not -1, 0 or 1")


def read_conv_fields(op: Op) -> None:
    """Channels, geometry and packed weight of a stored binary conv, validated, plus the weight
    in the microkernels' blocked layout (made once at load, never stored)."""
    op.c_in = op.param("c_in", int)
    op.c_out = op.param("c_out", int)
    op.kernel = op.int_list("kernel", 2, 1)
    op.stride = op.int_list("stride", 2, 1)
    op.padding = op.int_list("padding", 2)
    op.pad_value = op.param("pad_value", int)
    op.weight = op.tensor("weight", np.uint64, 4)
    expected = (op.c_out, *op.kernel, bitops.words_for(op.c_in))
    if op.c_in < 1 or op.c_out < 1 or op.weight.shape != expected:
        raise ValueError(f"{op.name}: weight shape {op.weight.shape} does not match {expected}")
    if op.pad_value not in (-1, 0, 1):
        raise ValueError(f"{op.name}: invalid pad_value {op.pad_value!r}")
    op.blocked = bitops.block_weight(op.weight)


def conv_output(op: Op, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C_out, OH, OW) of a stored binary conv (read_conv_fields) on a per-sample input map."""
    channels = op.map_input(shape)[0]
    if channels != op.c_in:
        raise ValueError(f"{op.name}: parameter 'c_in' is {op.c_in}, the input has {channels} "
                         "channels")
    _, oh, ow = op.window(shape, op.kernel, op.stride, op.padding, kernel_key="kernel")
    return op.c_out, oh, ow


def _maxpool_params(path: str, pool: nn.Module) -> dict[str, list[int]] | None:
    name = type(pool).__name__
    if name == "Identity":
        return None
    if name != "MaxPool2d":
        raise UnsupportedLayerError(f"{path}: {name} is not supported here (MaxPool2d or Identity)")
    kernel, padding = pair(pool.kernel_size), pair(pool.padding)
    stride = pair(pool.stride if pool.stride is not None else pool.kernel_size)
    if pair(pool.dilation) != [1, 1] or pool.ceil_mode or pool.return_indices:
        raise UnsupportedLayerError(
            f"{path}: MaxPool2d with dilation != 1, ceil_mode or return_indices is not supported"
        )
    if any(2 * p > k for p, k in zip(padding, kernel, strict=True)):
        raise UnsupportedLayerError(f"{path}: MaxPool2d padding must be at most kernel_size / 2")
    return {"kernel_size": kernel, "stride": stride, "padding": padding}


# -- ops ---------------------------------------------------------------------------------------


@register_op
class PackOp(Op):
    """Float (N, C, H, W) or (N, F) -> packed bits; inserted before the first binary op.

    With an optional "shift" tensor (a consumer's RSign alpha_c) it packs x - alpha_c, computed
    as torch's RSign computes it, so bit = torch's sign of x - alpha_c exactly.
    """

    kind = "pack"

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        self.shift = self.tensor("shift", np.float32, 1) if "shift" in tensors else None

    @classmethod
    def subtracting(cls, name: str, shift: torch.Tensor | None) -> PackOp:
        """A pack of x - shift_c (a plain pack when shift is None)."""
        return cls(name, {}, {} if shift is None else {"shift": to_numpy(shift)})

    @property
    def output_encoding(self) -> Encoding:
        return "bits"

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) == 1:  # rows pack as (F, 1, 1) maps
            shape = (shape[0], 1, 1)
        self.per_channel(self.map_input(shape)[0], "shift")
        return shape

    def wants_signs(self) -> SignRequest | None:
        """Its bits, ready made by a producer that packs in its own output pass (a stem); it
        reads nothing else of a Signed input, so the producer need not write the map."""
        return SignRequest(self.shift, floats=False)

    def run(self, x: Value, threads: int) -> Value:
        if isinstance(x, Bits):
            return x
        if isinstance(x, Signed):
            return x.bits
        x = x.to(torch.float32)
        if x.dim() == 2:
            n, f = x.shape
            rows = x.contiguous().reshape(n, 1, 1, f).numpy()
            return Bits(bitops.pack_nhwc(rows, threads, self.shift), f)
        if x.dim() != 4:
            raise ValueError(f"{self.name}: cannot pack a {x.dim()}-D tensor")
        nhwc = x.permute(0, 2, 3, 1)
        if nhwc.is_contiguous():  # an NHWC buffer seen as NCHW: no transpose needed
            return Bits(bitops.pack_nhwc(nhwc.numpy(), threads, self.shift), x.shape[1])
        return Bits(bitops.pack_nchw(x.contiguous().numpy(), self.shift), x.shape[1])


@register_op
class PlainBlockOp(Op):
    """PlainBlock: sign -> binary conv -> BatchNorm -> optional max-pool, one fused kernel call
    (plus a packed max-pool), emitting bits for a binary consumer or float NHWC otherwise."""

    kind = "plain_block"
    handles = ("PlainBlock",)
    input_encoding = "bits"

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        read_conv_fields(self)
        self.output = self.param("output", str)
        if self.output not in ("bits", "float"):
            raise ValueError(f"{name}: invalid output {self.output!r}")
        geometry = (self.stride, self.padding, self.pad_value, self.blocked)
        if self.output == "bits":
            self.threshold = self._vector("threshold", np.int32)
            self.direction = self._vector("direction", np.int8)
            if not np.isin(self.direction, (-1, 1)).all():
                raise ValueError(f"{name}: direction must hold only +1 / -1")
            self.layer = bitops.bits_layer(self.weight, self.c_in, self.threshold,
                                           self.direction, *geometry)
        else:
            self.scale = self._vector("scale", np.float32)
            self.bias = self._vector("bias", np.float32)
            self.layer = bitops.float_layer(self.weight, self.c_in, self.scale, self.bias,
                                            *geometry)
        pool = self.params.get("pool")
        self.pool: tuple[tuple[int, ...], ...] | None = None
        if pool is not None:
            if not isinstance(pool, dict):
                raise ValueError(f"{name}: parameter 'pool' has invalid value {pool!r}")
            sub = Op(f"{name}.pool", pool, {})
            self.pool = (sub.int_list("kernel_size", 2, 1), sub.int_list("stride", 2, 1),
                         sub.int_list("padding", 2))
        self.nhwc_out = False  # float output as a FloatMap (emit_nhwc)

    def emit_nhwc(self) -> bool:
        self.nhwc_out = self.output == "float"
        return self.nhwc_out

    def _vector(self, key: str, dtype: type) -> np.ndarray:
        t = self.tensor(key, dtype, 1)
        if t.shape != (self.c_out,):
            raise ValueError(f"{self.name}: tensor {key!r} has shape {t.shape}, "
                             f"expected ({self.c_out},)")
        return t

    @classmethod
    def from_module(cls, path: str, module: nn.Module, emit_bits: bool,
                    shift: torch.Tensor | None = None) -> Op:
        conv, bn, pool = (getattr(module, a, None) for a in ("conv", "bn", "pool"))
        if conv is None or bn is None or pool is None:
            raise UnsupportedLayerError(f"{path}: PlainBlock without conv/bn/pool children")
        _binary_conv(f"{path}.conv", conv)
        if rsign_alpha(conv.input_quantizer) is None:  # an RSign is applied by the producer
            check_sign_quantizer(f"{path}.conv", conv, conv.in_channels)
        _batchnorm2d(f"{path}.bn", bn)
        wq, scale = binary_weight(f"{path}.conv", conv)
        kh, kw = conv.kernel_size
        c_out = conv.out_channels
        params: dict[str, Any] = {
            "c_in": int(conv.in_channels), "c_out": int(c_out), "kernel": [kh, kw],
            "stride": pair(conv.stride), "padding": pair(conv.padding),
            "pad_value": int(conv.pad_value), "output": "bits" if emit_bits else "float",
            "pool": _maxpool_params(f"{path}.pool", pool),
        }
        tensors = {"weight": bitops.pack_weight(wq.numpy())}
        conv_bias = (conv.bias.detach().float() if conv.bias is not None
                     else torch.zeros(c_out))
        with torch.no_grad():
            if emit_bits:
                tensors.update(cls._thresholds(path, bn, scale, conv_bias,
                                               conv.in_channels * kh * kw, shift))
            else:
                tensors.update(cls._affine(bn, scale, conv_bias))
        return cls(path, params, tensors)

    @classmethod
    def input_shift(cls, module: nn.Module) -> torch.Tensor | None:
        return block_input_shift(module)

    @staticmethod
    def _thresholds(path: str, bn: nn.Module, scale: torch.Tensor, bias: torch.Tensor,
                    k: int, shift: torch.Tensor | None) -> dict[str, np.ndarray]:
        # torch's conv output is scale * dot (+ bias); the next sign sees BN of it (minus its
        # RSign alpha_c). Evaluate that on every possible dot, laid out as a (1, C, 2K + 1, 1)
        # image like real activations. A max-pool after BN commutes with both (x - alpha_c is
        # monotone in float too), so the packed max-pool of these bits is still exact.
        dots = torch.arange(-k, k + 1, dtype=torch.float32).view(1, 1, -1, 1)
        pre = dots * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
        post = _bn_eval(bn, pre)
        if shift is not None:
            post = post - shift.view(1, -1, 1, 1)
        negative = (~(post >= 0)).squeeze(3).squeeze(0).T.numpy()  # (2K + 1, C)
        try:
            threshold, direction = sign_thresholds(negative)
        except NonMonotonicError as exc:
            raise UnsupportedLayerError(f"{path}: no sign threshold exists: {exc}") from None
        return {"threshold": threshold, "direction": direction}

    @staticmethod
    def _affine(bn: nn.Module, scale: torch.Tensor, bias: torch.Tensor) -> dict[str, np.ndarray]:
        var = bn.running_var.detach().double()
        alpha = torch.rsqrt(var + bn.eps)
        if bn.weight is not None:
            alpha = alpha * bn.weight.detach().double()
        shift = -bn.running_mean.detach().double() * alpha
        if bn.bias is not None:
            shift = shift + bn.bias.detach().double()
        return {"scale": to_numpy(alpha * scale.double()),
                "bias": to_numpy(alpha * bias.double() + shift)}

    @property
    def output_encoding(self) -> Encoding:
        return "bits" if self.output == "bits" else "float"

    @property
    def label(self) -> str:
        kh, kw = self.kernel
        s = "" if self.stride == (1, 1) else f"s{self.stride[0]}"
        return f"bconv{kh}x{kw}{s}" + ("+maxpool" if self.pool else "")

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        c, oh, ow = conv_output(self, shape)
        if self.pool:
            kernel, stride, padding = self.pool
            _, oh, ow = self.window((c, oh, ow), kernel, stride, padding,
                                   kernel_key="pool kernel_size", pool=True)
        return c, oh, ow

    def run(self, x: Value, threads: int) -> Value:
        if not isinstance(x, Bits) or x.channels != self.c_in:
            got = x.channels if isinstance(x, Bits) else f"a float {tuple(x.shape)} tensor"
            raise ValueError(f"{self.name}: expects packed bits with {self.c_in} channels, got "
                             f"{got}")
        # Pooled in the layer's call; (x, threads, residual, signs, pool) by position, ~0.15 us
        # a call less than by keyword.
        pool = self.pool or None
        if self.output == "bits":
            return Bits(self.layer(x.data, threads, None, False, pool), self.c_out)
        y = self.layer(x.data, threads, None, False, pool)
        if self.nhwc_out:
            return FloatMap(y)
        return torch.from_numpy(y).permute(0, 3, 1, 2)  # NCHW view of the NHWC result

    def macs(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, int]:
        _, h, w = in_shape
        oh = (h + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1
        return oh * ow * self.c_out * self.c_in * self.kernel[0] * self.kernel[1], 0


@register_op
class BinaryLinearOp(Op):
    """BinaryLinear on packed (N, F) rows -> float logits scale * dot + bias."""

    kind = "binary_linear"
    handles = ("BinaryLinear",)
    input_encoding = "bits"

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        self.c_in = self.param("c_in", int)
        self.c_out = self.param("c_out", int)
        self.weight = self.tensor("weight", np.uint64, 2)
        if self.c_in < 1 or self.weight.shape != (self.c_out, bitops.words_for(self.c_in)):
            raise ValueError(f"{name}: weight shape {self.weight.shape} does not match "
                             f"c_in={self.c_in}, c_out={self.c_out}")
        self.blocked = bitops.block_weight(self.weight)  # the microkernels' layout, made once
        self.scale = self.tensor("scale", np.float32, 1)
        self.bias = self.tensor("bias", np.float32, 1)
        if self.scale.shape != (self.c_out,) or self.bias.shape != (self.c_out,):
            raise ValueError(f"{name}: scale/bias must have shape ({self.c_out},)")

    @classmethod
    def from_module(cls, path: str, module: nn.Module, emit_bits: bool,
                    shift: torch.Tensor | None = None) -> Op:
        check_sign_quantizer(path, module, module.in_features)
        wq, scale = binary_weight(path, module)
        bias = (to_numpy(module.bias) if module.bias is not None
                else np.zeros(module.out_features, np.float32))
        weight = bitops.pack_nhwc(np.ascontiguousarray(wq.numpy()[:, None, None, :]))[:, 0, 0]
        return cls(path, {"c_in": int(module.in_features), "c_out": int(module.out_features)},
                   {"weight": np.ascontiguousarray(weight), "scale": to_numpy(scale),
                    "bias": bias})

    @property
    def label(self) -> str:
        return "blinear"

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if shape != (self.c_in, 1, 1):
            raise ValueError(f"{self.name}: expects packed ({self.c_in},) rows, got shape {shape}")
        return (self.c_out,)

    def run(self, x: Value, threads: int) -> Value:
        if not isinstance(x, Bits) or x.channels != self.c_in or x.data.shape[1:3] != (1, 1):
            raise ValueError(f"{self.name}: expects packed (N, {self.c_in}) rows")
        rows = x.data.reshape(x.data.shape[0], -1)
        return torch.from_numpy(
            ext.linear_float(rows, self.weight, self.c_in, self.scale, self.bias, threads,
                             self.blocked)
        )

    def macs(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, int]:
        return self.c_in * self.c_out, 0
