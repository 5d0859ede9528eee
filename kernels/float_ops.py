"""Full-precision ops for the stem and head, run with torch.nn.functional on stored tensors.

They call the very functions the torch modules call, with the same tensors, so the float parts
of a packed model reproduce the torch model bit for bit (BatchNorm is kept, not folded, for that
reason: the first binary layer's signs depend on the stem's exact floats). The one exception,
FoldedConv2dOp, exists only where compile(exact_float=False) asks for folding.

Maps may arrive channels-last (an NHWC buffer seen as NCHW: the packed kernels' layout, kept to
spare a transpose per layer). Elementwise ops, BatchNorm, max- and avg-pooling give torch's NCHW
values on it; ops whose summation order follows the layout (conv, adaptive average pooling) are
handed the NCHW copy the torch model sees. Normalisation, eval BatchNorm and a shortcut's average
pool run on bnnx's threaded kernels where those give torch's bits (the same operations in the
same order, each correctly rounded; checked against torch before use, see probe_values).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import bitops
from .errors import UnsupportedLayerError
from .graph import (
    Bits,
    FloatMap,
    Op,
    Signed,
    SignRequest,
    Value,
    as_float,
    pair,
    register_op,
    to_numpy,
)


def _prod(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape))


def nchw(x: torch.Tensor, threads: int = 1) -> torch.Tensor:
    """x as a C-contiguous NCHW tensor, the model's own layout; a channels-last float32 map (the
    kernels' NHWC seen as NCHW) is moved by bnnx's register transpose, several times faster than
    torch's strided copy, on up to `threads` threads."""
    if x.is_contiguous():
        return x
    if x.dim() == 4 and x.dtype == torch.float32 and x.permute(0, 2, 3, 1).is_contiguous():
        return torch.from_numpy(bitops.nhwc_to_nchw(x.permute(0, 2, 3, 1).numpy(), threads))
    return x.contiguous()


def nhwc(x: torch.Tensor, threads: int = 1) -> np.ndarray:
    """The C-contiguous float32 NHWC array of an NCHW map (no copy for a channels-last one);
    moved on up to `threads` threads."""
    x = x.to(torch.float32)
    if x.is_contiguous():
        return bitops.nchw_to_nhwc(x.numpy(), threads)
    return np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 1))


# Values an elementwise kernel must give torch's bits on, in every channel, besides random
# ones of every magnitude: signed zeros, infinities, NaN, subnormals, the float range's ends.
SPECIALS = (0.0, -0.0, math.inf, -math.inf, math.nan, 1e-40, -1e-40, 1e-45, 3e38, -3e38, 1.0,
            -1.0)


def probe_values(channels: int, centre: np.ndarray) -> np.ndarray:
    """float32 (L, channels) probe values for an elementwise kernel's check against torch: the
    SPECIALS, random values from 2^-30 to 2^30 in size, and `centre` (per channel: a mean,
    where the op's result cancels to zero) and its neighbours."""
    rng = np.random.default_rng(0)
    magnitudes = np.exp2(rng.integers(-30, 31, (256, channels))).astype(np.float32)
    centre = np.asarray(centre, np.float32).reshape(1, channels)
    return np.concatenate([np.tile(np.float32(SPECIALS)[:, None], (1, channels)),
                           rng.standard_normal((256, channels), np.float32) * magnitudes,
                           centre, np.nextafter(centre, np.float32(np.inf)),
                           np.nextafter(centre, np.float32(-np.inf))])


class FloatOp(Op):
    """Float in, float out; tensors are exposed to torch once, at construction."""

    def torch_tensor(self, key: str, ndim: int) -> torch.Tensor:
        return torch.from_numpy(self.tensor(key, np.float32, ndim))

    def optional_tensor(self, key: str, ndim: int) -> torch.Tensor | None:
        return self.torch_tensor(key, ndim) if self.param(key, bool) else None

    @property
    def label(self) -> str:
        return f"float:{self.kind}"

    def run(self, x: Value, threads: int) -> torch.Tensor:
        return self.forward(as_float(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _optional(module: nn.Module, attr: str, tensors: dict[str, np.ndarray],
              params: dict[str, Any]) -> None:
    t = getattr(module, attr, None)
    params[attr] = t is not None
    if t is not None:
        tensors[attr] = to_numpy(t)


def check_bias(op: FloatOp, outputs: int) -> None:
    """An optional bias holds one value per output."""
    if op.bias is not None and tuple(op.bias.shape) != (outputs,):
        raise ValueError(f"{op.name}: tensor 'bias' has shape {tuple(op.bias.shape)}, expected "
                         f"({outputs},)")


@register_op
class NormalizeOp(FloatOp):
    kind = "normalize"
    handles = ("Normalize",)

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        self.mean = self.torch_tensor("mean", 3)
        self.std = self.torch_tensor("std", 3)

    @classmethod
    def from_module(cls, path: str, module: nn.Module, emit_bits: bool,
                    shift: torch.Tensor | None = None) -> Op:
        return cls(path, {}, {"mean": to_numpy(module.mean), "std": to_numpy(module.std)})

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        self.map_input(shape)
        for key, t in (("mean", self.mean), ("std", self.std)):
            if any(n not in (1, m) for n, m in zip(t.shape, shape, strict=True)):
                raise ValueError(f"{self.name}: tensor {key!r} of shape {tuple(t.shape)} does not "
                                 f"broadcast to the input {shape}")
        return shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    @functools.cached_property
    def kernel_channels(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-channel (mean, std) vectors with which bnnx's threaded kernel
        (bitops.normalize_float) gives torch's bits, where both tensors are per channel or
        one value; checked on probe values (see BatchNormOp.kernel_terms), else None."""
        if any(t.shape[1:] != (1, 1) for t in (self.mean, self.std)):
            return None
        c = max(self.mean.shape[0], self.std.shape[0])
        mean, std = (t.reshape(-1).expand(c).contiguous().numpy() for t in (self.mean, self.std))
        values = probe_values(c, mean)
        got = bitops.normalize_float(values.T.reshape(1, c, -1, 1).copy(), mean, std)
        want = self.forward(torch.from_numpy(values.T.reshape(1, c, -1, 1).copy())).numpy()
        return (mean, std) if np.array_equal(got.view(np.int32), want.view(np.int32)) else None

    def run(self, x: Value, threads: int) -> torch.Tensor:
        """On an NCHW float32 map with per-channel statistics, bnnx's kernel on `threads`
        threads (torch's values); else torch's."""
        x = as_float(x)
        channels = self.kernel_channels
        if (channels is None or x.dim() != 4 or x.dtype != torch.float32
                or not x.is_contiguous() or channels[0].shape[0] not in (1, x.shape[1])):
            return self.forward(x)
        mean, std = (np.broadcast_to(t, x.shape[1:2]).copy() for t in channels)
        return torch.from_numpy(bitops.normalize_float(x.numpy(), mean, std, threads))


@register_op
class Conv2dOp(FloatOp):
    kind = "conv2d"
    handles = ("Conv2d",)
    CHECKED_BATCH = 64  # the largest batch the direct kernel is checked and run on (torchs_bits)

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        self.weight = self.torch_tensor("weight", 4)
        self.bias = self.optional_tensor("bias", 1)
        self.stride = self.int_list("stride", 2, 1)
        self.dilation = self.int_list("dilation", 2, 1)
        self.groups = self.param("groups", int)
        padding = self.param("padding", (list, str))
        self.padding = padding if isinstance(padding, str) else self.int_list("padding", 2)
        allowed = ("valid", "same") if self.stride == (1, 1) else ("valid",)
        if isinstance(padding, str) and padding not in allowed:
            raise ValueError(f"{name}: parameter 'padding' must be 'valid', 'same' (stride 1) or "
                             f"two ints, got {padding!r}")
        check_bias(self, self.weight.shape[0])
        self._verdicts: dict[tuple, bitops.DirectConvLayer | None] = {}  # torchs_bits' checks

    @classmethod
    def from_module(cls, path: str, module: nn.Module, emit_bits: bool,
                    shift: torch.Tensor | None = None) -> Op:
        if module.padding_mode != "zeros":
            raise UnsupportedLayerError(
                f"{path}: Conv2d with padding_mode={module.padding_mode!r} is not supported"
            )
        padding = module.padding if isinstance(module.padding, str) else pair(module.padding)
        params: dict[str, Any] = {
            "stride": pair(module.stride), "padding": padding,
            "dilation": pair(module.dilation), "groups": int(module.groups),
        }
        tensors = {"weight": to_numpy(module.weight)}
        _optional(module, "bias", tensors, params)
        return cls(path, params, tensors)

    @property
    def label(self) -> str:
        kh, kw = self.weight.shape[2:]
        return f"float:conv{kh}x{kw}"

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = self.map_input(shape)
        out, per_group, kh, kw = self.weight.shape
        if self.groups < 1 or out % self.groups or c != per_group * self.groups:
            raise ValueError(f"{self.name}: weight {tuple(self.weight.shape)} with groups "
                             f"{self.groups} does not take {c} input channels")
        kernel, geometry = (kh, kw), {"kernel_key": "weight kernel", "dilation": self.dilation}
        if self.padding == "same":  # torch pads by dilation * (k - 1) in all, stride 1
            th, tw = (d * (k - 1) for d, k in zip(self.dilation, kernel, strict=True))
            _, oh, ow = self.window((c, h + th, w + tw), kernel, (1, 1), (0, 0), **geometry)
        else:
            padding = (0, 0) if self.padding == "valid" else self.padding
            _, oh, ow = self.window(shape, kernel, self.stride, padding, **geometry)
        return out, oh, ow

    def run(self, x: Value, threads: int) -> torch.Tensor:
        x = as_float(x)
        layer = self.torchs_bits(x)
        if layer is None:
            return self.conv(nchw(x, threads))
        y = self.direct_conv(layer, x, threads)
        return torch.from_numpy(y).permute(0, 3, 1, 2)  # NCHW view of the NHWC result

    def direct_conv(self, layer: bitops.DirectConvLayer, x: torch.Tensor,
                    threads: int) -> np.ndarray:
        """`layer`'s NHWC output: a 1x1 conv reads x's NHWC pixels (no copy from a
        channels-last map), a windowed one its NCHW planes."""
        if DirectConv2dOp.pointwise(self):
            return layer.pointwise(nhwc(x, threads), threads)
        return layer(nchw(x, threads).numpy(), threads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(nchw(x))

    def conv(self, x: torch.Tensor) -> torch.Tensor:
        """torch's conv on the model's NCHW x (on channels-last input it may sum in another
        order)."""
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)

    @functools.cached_property
    def directs(self) -> tuple[bitops.DirectConvLayer, ...]:
        """This conv on bnnx's direct kernel in each tap order it has (no folding, no Winograd;
        torch's oneDNN kernels sum a 7x7 stem's taps row, column, channel, a 3x3 stem's
        channel, row, column, a 1x1 conv's channel by channel), for a stem over few channels or
        a 1x1 conv (a shortcut's) where the kernel is native; none elsewhere."""
        if (type(self) is not Conv2dOp or bitops.active_isa() not in DIRECT_CONV_ISAS
                or not DirectConv2dOp.takes(self)):
            return ()
        out, c_in = self.weight.shape[:2]
        bias = np.zeros(out, np.float32) if self.bias is None else self.bias.numpy()
        orders = (False,) if DirectConv2dOp.pointwise(self) else (False, True)
        return tuple(bitops.direct_conv_layer(
            self.weight.numpy(), bias, np.zeros(c_in, np.float32), self.stride, self.padding,
            winograd=False, channels_outer=order) for order in orders)

    def torchs_bits(self, x: torch.Tensor) -> bitops.DirectConvLayer | None:
        """The direct layer (of `directs`) that gives torch's conv's bits on maps of x's shape,
        if one does: which algorithm torch runs, and so its summation order, depends on the
        shape, its thread count and the CPU, so each (shape, torch threads, ISA) is checked
        once, each order on a random map of that shape against torch's conv; where every one
        differs in some bit, torch's conv runs (None). So does a batch of more than
        CHECKED_BATCH maps: its check would cost a whole extra conv of that batch's size."""
        if not self.directs or x.dtype != torch.float32 or x.shape[0] > self.CHECKED_BATCH:
            return None
        key = (tuple(x.shape), torch.get_num_threads(), bitops.active_isa())
        if key not in self._verdicts:
            probe = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
            want = self.conv(probe).permute(0, 2, 3, 1).contiguous().numpy().view(np.int32)
            self._verdicts[key] = next(
                (layer for layer in self.directs
                 if np.array_equal(self.direct_conv(layer, probe, 1).view(np.int32), want)),
                None)
        return self._verdicts[key]

    def macs(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, int]:
        return 0, _prod(out_shape) * _prod(tuple(self.weight.shape[1:]))


@register_op
class FoldedConv2dOp(Conv2dOp):
    """A Conv2d with the BatchNorm after it folded into its weight and bias, run on
    channels-last maps by oneDNN (no NCHW copies in or out). Folding rounds differently from
    torch's conv then BatchNorm, so only compile(exact_float=False) makes it (see folding.py)."""

    kind = "conv2d_folded"
    handles = ()

    @property
    def label(self) -> str:
        return super().label + "+bn"

    def run(self, x: Value, threads: int) -> torch.Tensor:
        return self.forward(as_float(x))  # channels-last in: no NCHW copy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        if isinstance(self.padding, str) or not torch.backends.mkldnn.is_available():
            return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                            self.groups)
        # torch's own conv picks a slower GEMM for 1x1 kernels on one thread; oneDNN's direct
        # call keeps channels-last output, which the packed kernels read as NHWC.
        return torch.mkldnn_convolution(x, self.weight, self.bias, self.padding, self.stride,
                                        self.dilation, self.groups)


@register_op
class DirectConv2dOp(FoldedConv2dOp):
    """A folded conv on bnnx's direct kernel, NHWC out: a conv over few input channels (a stem,
    NCHW in) or a 1x1 conv (a downsampling shortcut's, NHWC in, all pixels one GEMM). With an
    input normalisation folded in too, its weight and bias take (x - mean) / std and the padded
    taps read "pad_value" = mean, which the normalisation maps to the zeros torch pads with.
    With the param "pool" (a MaxPool2dOp's params; its "lower" tensor, if any, here) a stem's
    max-pool runs in the conv's pass, which then keeps only the rows of the current window; with
    "avg_pool" (a plain_average AvgPool2dOp's params) a 1x1 conv's input is average-pooled
    first, in the same call (a shortcut's AvgPool2d).
    Made where the active ISA has the native kernel (DIRECT_CONV_ISAS), which beats oneDNN on
    these shapes; the portable one runs it anywhere else a saved model is loaded. Built there, a
    7x7 stride-2 or 3x3 stride-1 stem over 2-4 channels runs by Winograd's
    algorithm (`algorithm`), with a quarter of the multiply-adds (`algorithm_macs`) and float
    rounding of its own."""

    kind = "conv2d_direct"
    MAX_INPUTS = 4  # input channels the windowed kernel is made for (few taps per weight vector)

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        pad_value = self.tensor("pad_value", np.float32, 1)
        if not self.direct_shape(self):
            raise ValueError(f"{name}: the direct conv needs groups 1, dilation 1 and numeric "
                             f"padding, got groups {self.groups}, dilation {self.dilation}, "
                             f"padding {self.padding!r}")
        pool = self.params.get("pool")
        self.pool = None
        if pool is not None:
            lower = {"lower": tensors["lower"]} if "lower" in tensors else {}
            self.pool = MaxPool2dOp(name, pool if isinstance(pool, dict) else {}, lower)
            if not self.pool.on_bnnx_kernel or self.pointwise(self):
                raise ValueError(f"{name}: a fused pool needs a windowed conv, dilation 1 and "
                                 "no ceil_mode")
        avg = self.params.get("avg_pool")
        self.avg_pool = None if avg is None else AvgPool2dOp(
            name, avg if isinstance(avg, dict) else {}, {})
        if self.avg_pool is not None and not (self.pointwise(self)
                                              and self.plain_average(self.avg_pool)):
            raise ValueError(f"{name}: a fused average pool needs a 1x1 conv, stride = kernel, "
                             "no padding and no divisor_override")
        self.layer = bitops.direct_conv_layer(
            self.weight.numpy(), self.bias.numpy(), pad_value, self.stride, self.padding,
            winograd=None if bitops.active_isa() in DIRECT_CONV_ISAS else False)
        self.signs: SignRequest | None = None  # the consumer's input bits (emit_signs)
        # Read by every run: made once (the weight's shape through torch costs ~0.3 us a call).
        self.is_pointwise = self.pointwise(self)
        self.c_out = int(self.weight.shape[0])

    @staticmethod
    def plain_average(pool: Op) -> bool:
        """An AvgPool2dOp averaging the taps of disjoint windows inside the map (stride =
        kernel, no padding; with ceil_mode the last ones clipped)."""
        return (isinstance(pool, AvgPool2dOp) and pool.stride == pool.kernel_size
                and pool.padding == (0, 0) and pool.divisor_override is None)

    def with_pool(self, pool: MaxPool2dOp) -> DirectConv2dOp:
        """This conv with `pool` on its output in the same pass, named as the pool (its output
        is the pool's)."""
        lower = {} if pool.lower is None else {"lower": pool.lower}
        return DirectConv2dOp(pool.name, {**self.params, "pool": pool.params},
                              {**self.tensors, **lower})

    @property
    def algorithm(self) -> str:
        """How the conv runs: "winograd" or "direct" (chosen when the op is made)."""
        return self.layer.algorithm

    @property
    def label(self) -> str:
        label = super().label
        if self.algorithm == "winograd":
            conv = "conv{}x{}".format(*self.weight.shape[2:])
            label = label.replace(conv, conv + "(winograd)", 1)
        return label + ("+maxpool" if self.pool is not None else "")

    def algorithm_macs(self, in_shape: tuple[int, ...]) -> int:
        """Multiply-adds the conv's algorithm does per sample on an `in_shape` (C, H, W) input,
        as macs() counts the nominal ones: the same for the direct kernel, its GEMMs' for
        Winograd (the transforms' additions aside)."""
        if self.algorithm == "direct":
            return self.macs(in_shape, self.output_shape(in_shape))[1]
        return self.layer.macs(1, *in_shape[-2:])

    def conv_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The conv's output on a `shape` input (after the average pool, before the max-pool)."""
        if self.avg_pool is not None:
            shape = self.avg_pool.output_shape(shape)
        return super().output_shape(shape)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        conv = self.conv_shape(shape)
        return conv if self.pool is None else self.pool.output_shape(conv)

    def macs(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, int]:
        return super().macs(in_shape, self.conv_shape(in_shape))

    @staticmethod
    def direct_shape(conv: Conv2dOp) -> bool:
        """The geometry the direct kernel takes (any input channel count)."""
        return (conv.groups == 1 and conv.dilation == (1, 1)
                and not isinstance(conv.padding, str))

    @staticmethod
    def pointwise(conv: Conv2dOp) -> bool:
        """A 1x1 conv, stride 1, no padding: one GEMM over the NHWC pixels."""
        return (tuple(conv.weight.shape[2:]) == (1, 1) and conv.stride == (1, 1)
                and conv.padding == (0, 0))

    @classmethod
    def takes(cls, conv: Conv2dOp) -> bool:
        """The convs made direct (where the kernel is native)."""
        return cls.direct_shape(conv) and (conv.weight.shape[1] <= cls.MAX_INPUTS
                                           or cls.pointwise(conv))

    def emit_signs(self, request: SignRequest) -> bool:
        """A windowed conv (a stem) packs its consumer's input too, each row by the thread
        that wrote it (the consumer's own pack would read the map again, on both threads);
        without a max-pool, for a consumer that reads no float (request.floats False), the
        signs alone (see run)."""
        if self.is_pointwise:
            return False
        self.signs = request
        return True

    def run(self, x: Value, threads: int) -> torch.Tensor | Signed:
        if self.is_pointwise:
            avg = () if self.avg_pool is None else (self.avg_pool.kernel_size,
                                                    self.avg_pool.ceil_mode)
            pixels = x.nhwc if isinstance(x, Signed) else nhwc(as_float(x), threads)
            y = self.layer.pointwise(pixels, threads, *avg)
            return torch.from_numpy(y).permute(0, 3, 1, 2)  # NCHW view of the NHWC result
        x = as_float(x)
        p = self.pool
        pool = () if p is None else (p.kernel_size, p.stride, p.padding, p.lower)
        if self.signs is None:
            y = self.layer(nchw(x, threads).numpy(), threads, *pool)
            return torch.from_numpy(y).permute(0, 3, 1, 2)
        x = nchw(x, threads).numpy()
        shift = self.signs.shift
        if self.signs.floats or p is not None:
            y, bits = self.layer(x, threads, *pool, signs=True, sign_shift=shift)
            return Signed(y, Bits(bits, y.shape[3]))
        # Signs only: no map written. Whoever asks for the floats gets them made then, by the
        # same kernel, so they are the floats these signs are of.
        bits = self.layer(x, threads, signs=True, sign_shift=shift, floats=False)
        return Signed(None, Bits(bits, self.c_out), remake=functools.partial(self.layer, x, 1))


# Tables whose direct conv is native (not the portable loop, which oneDNN beats).
DIRECT_CONV_ISAS = ("avx512vpopcnt",)


@register_op
class BatchNormOp(FloatOp):
    """BatchNorm1d/2d with running statistics (eval semantics, whatever the module's mode)."""

    kind = "batchnorm"
    handles = ("BatchNorm1d", "BatchNorm2d")

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        self.running_mean = self.torch_tensor("running_mean", 1)
        self.running_var = self.torch_tensor("running_var", 1)
        self.weight = self.optional_tensor("weight", 1)
        self.bias = self.optional_tensor("bias", 1)
        self.eps = self.real("eps")

    @classmethod
    def from_module(cls, path: str, module: nn.Module, emit_bits: bool,
                    shift: torch.Tensor | None = None) -> Op:
        if module.running_mean is None or module.running_var is None:
            raise UnsupportedLayerError(
                f"{path}: {type(module).__name__} without running statistics "
                "(track_running_stats=False) is not supported"
            )
        params: dict[str, Any] = {"eps": float(module.eps)}
        tensors = {"running_mean": to_numpy(module.running_mean),
                   "running_var": to_numpy(module.running_var)}
        _optional(module, "weight", tensors, params)
        _optional(module, "bias", tensors, params)
        return cls(path, params, tensors)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) not in (1, 3):
            raise ValueError(f"{self.name}: expects a (C, H, W) map or (F,) rows, got {shape}")
        self.per_channel(shape[0], "running_mean", "running_var", "weight", "bias")
        return shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            False, 0.0, self.eps)

    def on_rows(self, values: torch.Tensor) -> torch.Tensor:
        """forward on (L, C) values seen as an (1, C, L, 1) channels-last map (the layout maps
        have at run time): (L, C) out, all contiguous, no transposes."""
        c = self.running_mean.shape[0]
        out = self.forward(values.reshape(-1, c).view(1, -1, 1, c).permute(0, 3, 1, 2))
        return out.permute(0, 2, 3, 1).reshape(-1, c)

    def linear_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """torch's own per-channel (alpha, beta) of its eval BatchNorm, y = x * alpha + beta
        rounded as one multiply-add (alpha = weight * invstd, beta = bias - mean * alpha, in
        its rounding). Rather than re-derive them, probe: beta = BN(0), and
        BN(2^k) - beta = 2^k * alpha exactly once |beta| is under half an ulp of 2^k * alpha."""
        c = self.running_mean.shape[0]
        beta = self.on_rows(torch.zeros(c))[0]
        weight = self.weight if self.weight is not None else torch.ones(c)
        estimate = (weight.double() * torch.rsqrt(self.running_var.double() + self.eps)).abs()
        # 2^k |alpha| >= 2^27 |beta| puts beta under half an ulp of 2^k alpha.
        k = torch.ceil(torch.log2(beta.double().abs() / estimate)) + 27
        power = torch.pow(2.0, torch.nan_to_num(k, nan=0.0, posinf=126.0).clamp(0, 126)).float()
        alpha = (self.on_rows(power)[0] - beta) / power
        return alpha.numpy(), beta.numpy()

    @functools.cached_property
    def kernel_terms(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(alpha, beta) with which bnnx's threaded kernel (bitops.batchnorm_float) gives
        torch's bits, or None (then torch runs it): checked on probe values of every channel,
        so it never rests on how this torch build rounds (FMA or not)."""
        alpha, beta = self.linear_terms()
        c = alpha.shape[0]
        values = probe_values(c, self.running_mean.numpy())
        got = bitops.batchnorm_float(values.reshape(1, -1, 1, c), alpha, beta).reshape(-1, c)
        want = self.on_rows(torch.from_numpy(values)).numpy()
        return (alpha, beta) if np.array_equal(got.view(np.int32), want.view(np.int32)) else None

    def run(self, x: Value, threads: int) -> torch.Tensor:
        """On an NCHW or channels-last float32 map, bnnx's kernel on `threads` threads (torch's
        values, written NHWC: an NCHW map is moved in the same pass); else torch's."""
        x = as_float(x)
        terms = self.kernel_terms if x.dim() == 4 and x.dtype == torch.float32 else None
        if terms is None:
            return self.forward(x)
        if x.is_contiguous():
            y = bitops.batchnorm_float(x.numpy(), *terms, nchw=True, threads=threads)
        elif x.permute(0, 2, 3, 1).is_contiguous():
            y = bitops.batchnorm_float(x.permute(0, 2, 3, 1).numpy(), *terms, threads=threads)
        else:
            return self.forward(x)
        return torch.from_numpy(y).permute(0, 3, 1, 2)  # NCHW view of the NHWC result


@register_op
class ReLUOp(FloatOp):
    kind = "relu"
    handles = ("ReLU",)

    @classmethod
    def from_module(cls, path: str, module: nn.Module, emit_bits: bool,
                    shift: torch.Tensor | None = None) -> Op:
        return cls(path, {}, {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)


@register_op
class HardtanhOp(FloatOp):
    kind = "hardtanh"
    handles = ("Hardtanh", "ReLU6")

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        self.min_val = self.real("min_val")
        self.max_val = self.real("max_val")

    @classmethod
    def from_module(cls, path: str, module: nn.Module, emit_bits: bool,
                    shift: torch.Tensor | None = None) -> Op:
        return cls(path, {"min_val": float(module.min_val), "max_val": float(module.max_val)}, {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardtanh(x, self.min_val, self.max_val)


@register_op
class PReLUOp(FloatOp):
    kind = "prelu"
    handles = ("PReLU",)

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        self.weight = self.torch_tensor("weight", 1)

    @classmethod
    def from_module(cls, path: str, module: nn.Module, emit_bits: bool,
                    shift: torch.Tensor | None = None) -> Op:
        return cls(path, {}, {"weight": to_numpy(module.weight)})

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        self.per_channel(shape[0], "weight", broadcast=True)
        return shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.prelu(x, self.weight)


@register_op
class MaxPool2dOp(FloatOp):
    """torch's MaxPool2d; with the optional uint8 tensor "lower", the channels it marks take the
    minimum instead (a pool moved before a BatchNorm whose gamma is negative there)."""

    kind = "maxpool2d"
    handles = ("MaxPool2d",)

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        self.kernel_size = self.int_list("kernel_size", 2, 1)
        self.stride = self.int_list("stride", 2, 1)
        self.padding = self.int_list("padding", 2)
        self.dilation = self.int_list("dilation", 2, 1)
        self.ceil_mode = self.param("ceil_mode", bool)
        self.lower = self.tensor("lower", np.uint8, 1) if "lower" in tensors else None
        if self.lower is not None and not self.on_bnnx_kernel:
            raise ValueError(f"{name}: min-pooled channels need dilation 1 and no ceil_mode")

    @property
    def on_bnnx_kernel(self) -> bool:
        """bnnx's pool runs it (else torch's channels-last one)."""
        return self.dilation == (1, 1) and not self.ceil_mode

    def with_lower(self, lower: np.ndarray) -> MaxPool2dOp:
        """This pool with the channels where `lower` is set taking the minimum."""
        return MaxPool2dOp(self.name, self.params, {"lower": lower.astype(np.uint8)})

    @classmethod
    def from_module(cls, path: str, module: nn.Module, emit_bits: bool,
                    shift: torch.Tensor | None = None) -> Op:
        if module.return_indices:
            raise UnsupportedLayerError(f"{path}: MaxPool2d with return_indices is not supported")
        stride = module.stride if module.stride is not None else module.kernel_size
        return cls(path, {
            "kernel_size": pair(module.kernel_size), "stride": pair(stride),
            "padding": pair(module.padding), "dilation": pair(module.dilation),
            "ceil_mode": bool(module.ceil_mode),
        }, {})

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        self.per_channel(self.map_input(shape)[0], "lower")
        return self.window(shape, self.kernel_size, self.stride, self.padding,
                           kernel_key="kernel_size", pool=True, dilation=self.dilation,
                           ceil_mode=self.ceil_mode)

    def run(self, x: Value, threads: int) -> torch.Tensor:
        x = as_float(x)
        if not self.on_bnnx_kernel:
            # torch's channels-last pool is vectorised, its NCHW one scalar; same values.
            x = x.contiguous(memory_format=torch.channels_last)
            return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                                self.ceil_mode)
        # bnnx's pool gives torch's values (same +-0 ties, same NaNs) and writes NHWC straight
        # from NCHW input, without torch's transpose of the larger map; on `threads` threads.
        nhwc = x.permute(0, 2, 3, 1)
        if nhwc.is_contiguous():
            y = bitops.maxpool2d_float(nhwc.numpy(), self.kernel_size, self.stride, self.padding,
                                       self.lower, threads)
        else:
            y = bitops.maxpool2d_float_nchw(x.contiguous().numpy(), self.kernel_size,
                                            self.stride, self.padding, self.lower, threads)
        return torch.from_numpy(y).permute(0, 3, 1, 2)  # NCHW view of the NHWC result


@register_op
class AvgPool2dOp(FloatOp):
    kind = "avgpool2d"
    handles = ("AvgPool2d",)

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        self.kernel_size = self.int_list("kernel_size", 2, 1)
        self.stride = self.int_list("stride", 2, 1)
        self.padding = self.int_list("padding", 2)
        self.ceil_mode = self.param("ceil_mode", bool)
        self.count_include_pad = self.param("count_include_pad", bool)
        divisor = self.params.get("divisor_override")
        if divisor is not None and (not isinstance(divisor, int) or divisor < 1):
            raise ValueError(f"{name}: parameter 'divisor_override' has invalid value {divisor!r}")
        self.divisor_override = divisor
        self.nchw_out = False  # set where torch's NCHW conv reads the output (a shortcut's)

    @classmethod
    def from_module(cls, path: str, module: nn.Module, emit_bits: bool,
                    shift: torch.Tensor | None = None) -> Op:
        stride = module.stride if module.stride is not None else module.kernel_size
        return cls(path, {
            "kernel_size": pair(module.kernel_size), "stride": pair(stride),
            "padding": pair(module.padding), "ceil_mode": bool(module.ceil_mode),
            "count_include_pad": bool(module.count_include_pad),
            "divisor_override": module.divisor_override,
        }, {})

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.window(shape, self.kernel_size, self.stride, self.padding,
                           kernel_key="kernel_size", pool=True, ceil_mode=self.ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def run(self, x: Value, threads: int) -> torch.Tensor:
        """A channels-last float32 map is pooled by bnnx's kernel on `threads` threads (torch's
        values, as its kernel sums them; a NaN where torch's is NaN, though not always the same
        NaN: which one a NaN plus inf - inf gives follows the operand order the compiler
        picked), written channels-last as torch's pool writes it (a ReActNet shortcut's: torch
        took 10 us for 128@32 -> 16) or, with nchw_out, NCHW, the copy the conv would make
        otherwise; any other input by torch's pool."""
        x = as_float(x)
        if not (x.dim() == 4 and x.dtype == torch.float32
                and x.permute(0, 2, 3, 1).is_contiguous()):
            return self.forward(x)
        y = torch.from_numpy(bitops.avgpool2d_float(
            x.permute(0, 2, 3, 1).numpy(), self.kernel_size, self.stride, self.padding,
            self.ceil_mode, self.count_include_pad, self.divisor_override, threads,
            self.nchw_out))
        return y if self.nchw_out else y.permute(0, 3, 1, 2)


@register_op
class AdaptiveAvgPool2dOp(FloatOp):
    kind = "adaptive_avgpool2d"
    handles = ("AdaptiveAvgPool2d",)

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        size = self.param("output_size", list)
        if len(size) != 2 or not all(s is None or isinstance(s, int) and s >= 1 for s in size):
            raise ValueError(f"{name}: parameter 'output_size' has invalid value {size!r}")
        self.output_size = tuple(size)

    @classmethod
    def from_module(cls, path: str, module: nn.Module, emit_bits: bool,
                    shift: torch.Tensor | None = None) -> Op:
        size = module.output_size
        size = [size, size] if isinstance(size, int) or size is None else list(size)
        return cls(path, {"output_size": size}, {})

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = self.map_input(shape)
        return c, *(n if s is None else s for s, n in zip(self.output_size, (h, w), strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Its channels-last kernel sums in another order (last-bit differences): NCHW as in torch.
        x = nchw(x)
        if self.output_size == (1, 1):  # what torch's adaptive pool runs then, minus a dispatch
            return torch.mean(x, (2, 3), keepdim=True)
        return F.adaptive_avg_pool2d(x, self.output_size)


@register_op
class FlattenOp(FloatOp):
    kind = "flatten"
    handles = ("Flatten",)

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        self.start_dim = self.param("start_dim", int)
        self.end_dim = self.param("end_dim", int)

    @classmethod
    def from_module(cls, path: str, module: nn.Module, emit_bits: bool,
                    shift: torch.Tensor | None = None) -> Op:
        return cls(path, {"start_dim": int(module.start_dim), "end_dim": int(module.end_dim)}, {})

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        dims = len(shape) + 1  # the batch axis too
        start, end = self.start_dim, self.end_dim
        if not (-dims <= start < dims and -dims <= end < dims and 1 <= start % dims <= end % dims):
            raise ValueError(f"{self.name}: parameters 'start_dim' {start} and 'end_dim' {end} "
                             f"must pick axes 1 to {dims - 1} of the {dims}-D batch, start first")
        a, b = start % dims - 1, end % dims  # the per-sample axes [a, b) that merge
        return (*shape[:a], _prod(shape[a:b]), *shape[b:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # On the NCHW view of an NHWC buffer this copies in NCHW order, matching torch's flatten.
        return torch.flatten(x, self.start_dim, self.end_dim)


@register_op
class LinearOp(FloatOp):
    kind = "linear"
    handles = ("Linear",)

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        self.weight = self.torch_tensor("weight", 2)
        self.bias = self.optional_tensor("bias", 1)
        check_bias(self, self.weight.shape[0])

    @classmethod
    def from_module(cls, path: str, module: nn.Module, emit_bits: bool,
                    shift: torch.Tensor | None = None) -> Op:
        params: dict[str, Any] = {}
        tensors = {"weight": to_numpy(module.weight)}
        _optional(module, "bias", tensors, params)
        return cls(path, params, tensors)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        out, features = self.weight.shape
        if shape[-1] != features:
            raise ValueError(f"{self.name}: weight {tuple(self.weight.shape)} takes {features} "
                             f"features, the input has shape {shape}")
        return (*shape[:-1], out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def macs(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, int]:
        return 0, _prod(out_shape[:-1]) * _prod(tuple(self.weight.shape))


@register_op
class MapLinearOp(LinearOp):
    """A head's linear layer reading the map in the layout it arrives in (the packed kernels'
    NHWC seen as NCHW), with the global average pool ("global_pool") or the flatten before it
    taken in: one GEMM (bnnx's narrow or direct kernel, see run) and no NCHW copy. The
    pool's sum runs over pixels, the 1 / (H * W) in the GEMM's alpha (the direct kernel takes
    the pool's mean); without the pool, the weight's columns are reordered once per map shape
    to NHWC order. Neither sums as torch's mean or NCHW flatten + linear does, so only
    compile(exact_float=False) makes it (see folding.py)."""

    kind = "map_linear"
    handles = ()
    # From this many outputs on, MKL's GEMV reads an (in, out) contiguous weight faster than an
    # (out, in) one (512 -> 1000: 25.6 vs 29.6 us); with fewer, slower (8192 -> 10: 9.4 vs 5.8).
    WIDE = 64
    # Up to this many outputs the narrow kernel (bitops.narrow_linear) runs the head, on any ISA:
    # 8192 -> 10 took 2.4 us there, 5.3 in torch's addmm, 12.7 on the direct kernel (one chain
    # of dependent multiply-adds per row).
    NARROW = 16

    def __init__(self, name: str, params: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(name, params, tensors)
        self.global_pool = self.param("global_pool", bool)
        self._columns: dict[tuple[int, ...], torch.Tensor] = {(): self.stored(self.weight.t())}
        self._direct: dict[tuple[int, ...], bitops.DirectConvLayer] = {}
        self._narrow: dict[tuple[int, ...], np.ndarray] = {}
        self._bias_array = None if self.bias is None else self.bias.numpy()

    def stored(self, columns: torch.Tensor) -> torch.Tensor:
        """The (features, out) weight `columns` in the memory order its GEMV reads fastest."""
        wide = columns.shape[1] >= self.WIDE
        return columns.contiguous() if wide else columns.t().contiguous().t()

    @property
    def label(self) -> str:
        return "float:" + ("avgpool+linear" if self.global_pool else "flatten+linear")

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.global_pool:
            return super().output_shape(self.map_input(shape)[:1])
        return super().output_shape((_prod(shape),))

    def columns(self, shape: tuple[int, ...]) -> torch.Tensor:
        """The (features, out) weight for an input of per-sample `shape`: a (C, H, W) map is
        read in NHWC order (the flatten's NCHW columns moved there once per shape)."""
        key = shape if len(shape) == 3 and not self.global_pool else ()
        if key not in self._columns:
            c, h, w = key
            weight = self.weight.view(-1, c, h, w).permute(2, 3, 1, 0)
            self._columns[key] = self.stored(weight.reshape(h * w * c, -1))
        return self._columns[key]

    def gemm_input(self, x: torch.Tensor) -> tuple[torch.Tensor, float, tuple[int, ...]]:
        """The GEMM's rows, its alpha and the key of its weight (see columns) for map x: the
        pool's sums, or on a map the NHWC rows, a view of the packed kernels' buffer."""
        if self.global_pool:
            return x.sum((2, 3)), 1.0 / (x.shape[2] * x.shape[3]), ()
        rows = (x.permute(0, 2, 3, 1) if x.dim() == 4 else x).reshape(x.shape[0], -1)
        return rows, 1.0, tuple(x.shape[1:]) if x.dim() == 4 else ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, alpha, key = self.gemm_input(x)
        weight = self.columns(key)
        if self.bias is None:
            return torch.mm(rows, weight).mul_(alpha)
        return torch.addmm(self.bias, rows, weight, alpha=alpha)

    def run(self, x: Value, threads: int) -> torch.Tensor:
        """A head of at most NARROW outputs runs on the narrow kernel. Wider ones, where the
        active ISA has bnnx's native direct kernel, run there as a 1x1 conv over the batch's
        rows: on several threads each reads its share of the weights (MKL's GEMV of one row
        ran on one thread however many it was given), the global pool (the map's mean) made by
        each thread in the same call. Elsewhere torch's GEMM (forward)."""
        if self.weight.shape[0] <= self.NARROW:
            rows, alpha, key = self.narrow_rows(x)
            return FloatMap(bitops.narrow_linear(rows, self.narrow_weight(key),
                                                 self._bias_array, alpha, threads))
        if bitops.active_isa() not in DIRECT_CONV_ISAS:
            return self.forward(as_float(x))
        if self.global_pool:
            pixels = x.nhwc if isinstance(x, Signed) else nhwc(as_float(x), threads)
            y = self.direct_layer(()).pointwise(pixels, threads, pixels.shape[1:3])
        else:
            rows, _, key = self.gemm_input(as_float(x))
            y = self.direct_layer(key).pointwise(rows.contiguous().numpy()[:, None, None, :],
                                                 threads)
        return torch.from_numpy(y).view(y.shape[0], -1)

    def reads_nhwc(self) -> bool:
        return self.weight.shape[0] <= self.NARROW  # narrow_rows takes the NHWC array

    def narrow_rows(self, x: Value) -> tuple[np.ndarray, float, tuple[int, ...]]:
        """gemm_input(x) as a C-contiguous float32 array; a map's taken in numpy (its NHWC rows
        a view of the packed kernels' buffer), where torch's permute, reshape and sum cost
        microseconds a call."""
        if isinstance(x, (Signed, FloatMap)):
            pixels = x.nhwc if isinstance(x, Signed) else x.array
        else:
            value = as_float(x)
            if value.dim() != 4:
                rows, alpha, key = self.gemm_input(value)
                return rows.contiguous().numpy(), alpha, key
            pixels = value.numpy().transpose(0, 2, 3, 1)
        n, h, w, c = pixels.shape
        if self.global_pool:
            return pixels.sum((1, 2)), 1.0 / (h * w), ()
        return pixels.reshape(n, -1), 1.0, (c, h, w)  # C order: a copy only where not NHWC

    def narrow_weight(self, key: tuple[int, ...]) -> np.ndarray:
        """The weight `columns(key)` in the narrow kernel's layout, made once per key."""
        if key not in self._narrow:
            self._narrow[key] = bitops.narrow_weight(self.columns(key).t().numpy())
        return self._narrow[key]

    def direct_layer(self, key: tuple[int, ...]) -> bitops.DirectConvLayer:
        """The direct kernel's 1x1 layer of the weight `columns(key)`, made once per key."""
        if key not in self._direct:
            weight = self.columns(key).t().contiguous()  # (out, features)
            out, features = weight.shape
            bias = self.bias if self.bias is not None else torch.zeros(out)
            self._direct[key] = bitops.direct_conv_layer(
                weight.view(out, features, 1, 1).numpy(), bias.numpy(),
                np.zeros(features, np.float32))
        return self._direct[key]
