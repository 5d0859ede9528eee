"""torch BinaryNet -> OpenVINO model, built natively from the torch model's own tensors.

Every binary conv becomes FakeQuantize(levels=2) on its input, in OpenVINO's binarization form
(one threshold per channel, outputs 0/1, which its CPU plugin turns into u1 bits), and a
BinaryConvolution ("xnor-popcount", u1 weights, bit 1 = +1) with the layer's pad value; 0 is
zero padding, which the plugin excludes from the dot exactly as torch's conv does. The threshold
is the largest float below the sign's switch point (0, or RSign's alpha_c), so x >= alpha_c
gives +1 and sign(0) = +1 as in bnnx and torch. Weight scales (XNOR, DoReFa, Libra-PB, learned
XNOR-Net++ scales), the conv bias and a following BatchNorm become one per-channel multiply and
add right behind the conv, then the residual add and the activation: the order OpenVINO fuses
into the binary conv's output pass. BatchNorm after a float conv is folded into its weights.

The float parts are fp32 with OpenVINO's own summation order and the folded BatchNorms, so logits
agree with torch's to float rounding (tests/test_to_openvino.py states the tolerance), not bit
for bit; the signs each binary conv sees are torch's except at exact float ties.

The model is walked with the packed compiler's module walk (`compiler._flatten`), so both
engines accept and name the same layers. OpenVINO's CPU BinaryConvolution runs static shapes
only: the input "input" is (1, C, H, W) float32 raw images (normalisation inside the model) and
every reshape keeps the batch, so `ov_model.reshape([n, C, H, W])` gives batch n.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .binary_ops import _binary_conv, binary_weight, check_sign_quantizer, rsign_alpha
from .compiler import SECTIONS, Entry, _flatten, _input_shape
from .errors import UnsupportedLayerError
from .graph import pair

if TYPE_CHECKING:
    import openvino

INSTALL_HINT = "pip install -e '.[deploy]'"
# OpenVINO 2026.4's CPU BinaryConvolution gives wrong dots when the input channels are not a
# multiple of 8 (measured on 1, 5, 17, 31 and 33; 3 channels do not even compile), so such a conv
# (a binary stem on 1 or 3 channels, say) runs as a float conv on the signs instead.
BYTE_CHANNELS = 8


def to_openvino(model: nn.Module, input_shape: tuple[int, int, int]) -> openvino.Model:
    """The BinaryNet `model` (stem/body/head) for raw images of `input_shape` (C, H, W) as an
    OpenVINO model: input "input" (1, C, H, W) float32, output "logits". Eval semantics (running
    BatchNorm statistics) whatever the model's mode; the model is not modified. Raises
    UnsupportedLayerError naming the first layer it cannot build, ImportError without openvino."""
    ov, ops = _openvino()
    shape = _input_shape(input_shape)
    param = ops.parameter([1, *shape], ov.Type.f32, name="input")
    builder = _Builder(ops, ov, param)
    param.output(0).get_tensor().set_names({"input"})
    x = param.output(0)
    with torch.no_grad():
        for section in SECTIONS:
            part = getattr(model, section, None)
            if not isinstance(part, nn.Module):
                raise UnsupportedLayerError(
                    f"{type(model).__name__} has no '{section}' module; the OpenVINO export "
                    "builds models made of stem, body and head (spaces.BinaryNet)")
            x = builder.chain(list(_flatten(section, part)), x)
    result = ops.result(x)
    result.output(0).get_tensor().set_names({"logits"})
    return ov.Model([result], [param], "bnnx")


def _openvino() -> tuple[Any, Any]:
    """(openvino, its opset14), imported on first use: openvino is an optional extra."""
    try:
        import openvino
        import openvino.opset14 as ops
    except ImportError:
        raise ImportError(f"to_openvino needs the openvino package: {INSTALL_HINT}") from None
    return openvino, ops


def _channels(values: torch.Tensor | np.ndarray, rank: int) -> np.ndarray:
    """Per-channel values shaped to broadcast on axis 1 of a rank-`rank` tensor, float32."""
    v = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values
    return np.ascontiguousarray(v, np.float32).reshape(1, -1, *([1] * (rank - 2)))


def _batchnorm_affine(bn: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """Eval BatchNorm as (alpha_c, beta_c) with BN(y) = alpha_c * y + beta_c, in float64."""
    if bn.running_mean is None or bn.running_var is None:
        raise UnsupportedLayerError(f"{type(bn).__name__} without running statistics "
                                    "(track_running_stats=False) is not supported")
    alpha = 1.0 / np.sqrt(bn.running_var.double().numpy() + bn.eps)
    if bn.weight is not None:
        alpha = alpha * bn.weight.detach().double().numpy()
    beta = -bn.running_mean.double().numpy() * alpha
    if bn.bias is not None:
        beta = beta + bn.bias.detach().double().numpy()
    return alpha, beta


class _Builder:
    """Emits OpenVINO nodes for flattened module entries, chain by chain."""

    def __init__(self, ops: Any, ov: Any, named: Any) -> None:
        self.ops, self.ov = ops, ov
        self.named = {named.get_instance_id()}  # nodes named so far (the input, at first)
        self.emit: dict[str, Callable[[str, nn.Module, Any], Any]] = {
            "Normalize": self.normalize, "BatchNorm1d": self.batchnorm,
            "BatchNorm2d": self.batchnorm, "ReLU": lambda p, m, x: ops.relu(x).output(0),
            "Hardtanh": self.hardtanh, "ReLU6": self.hardtanh, "PReLU": self.prelu,
            "RPReLU": self.rprelu, "MaxPool2d": self.maxpool, "AvgPool2d": self.avgpool,
            "AdaptiveAvgPool2d": self.adaptive_avgpool, "Flatten": self.flatten,
            "Linear": self.linear, "Conv2d": lambda p, m, x: self.conv(p, m, x, None),
            "BinaryConv2d": lambda p, m, x: self.binary_conv(p, m, x, None),
            "BinaryLinear": self.binary_linear, "PlainBlock": self.plain_block,
            "PoolFirstBlock": self.pool_first_block, "ResNetBlock": self.resnet_block,
            "BiRealBlock": self.bireal_block, "ReActBlock": self.reactnet_block,
        }

    # -- walking -----------------------------------------------------------------------------

    def chain(self, entries: Sequence[Entry], x: Any) -> Any:
        """Emit `entries` in turn; a conv (float or binary) followed by BatchNorm2d takes the
        BatchNorm into its own weights or output affine."""
        i = 0
        while i < len(entries):
            path, module, _ = entries[i]
            name = type(module).__name__
            follower = entries[i + 1][1] if i + 1 < len(entries) else None
            bn = follower if type(follower).__name__ == "BatchNorm2d" else None
            if name in ("Conv2d", "BinaryConv2d") and bn is not None:
                fold = self.conv if name == "Conv2d" else self.binary_conv
                x = self.name_nodes(path, fold(path, module, x, self._affine(entries[i + 1][0],
                                                                             bn)))
                i += 2
                continue
            if name not in self.emit:
                raise UnsupportedLayerError(f"{path}: {name} is not supported by the OpenVINO "
                                            f"export (supported: {', '.join(sorted(self.emit))})")
            x = self.name_nodes(path, self.emit[name](path, module, x))
            i += 1
        return x

    def name_nodes(self, path: str, x: Any) -> Any:
        """Name the nodes made for layer `path` (those behind x not named yet) "path/Type_n",
        so OpenVINO's per-node profile can be summed per layer or part."""
        stack = [x.get_node()]
        while stack:
            node = stack.pop()
            if node.get_instance_id() in self.named:
                continue
            self.named.add(node.get_instance_id())
            node.set_friendly_name(f"{path}/{node.get_type_name()}_{len(self.named)}")
            stack.extend(v.get_node() for v in node.input_values())
        return x

    def part(self, path: str, module: nn.Module, name: str, x: Any) -> Any:
        """Emit the block child `name` (an Identity gives x back)."""
        return self.chain(list(_flatten(f"{path}.{name}", self._child(path, module, name))), x)

    def parts(self, path: str, module: nn.Module, names: Sequence[str], x: Any) -> Any:
        """Emit block children `names` as one chain, so a conv folds its BatchNorm."""
        entries = [e for n in names
                   for e in _flatten(f"{path}.{n}", self._child(path, module, n))]
        return self.chain(entries, x)

    @staticmethod
    def _child(path: str, module: nn.Module, name: str) -> nn.Module:
        child = getattr(module, name, None)
        if not isinstance(child, nn.Module):
            raise UnsupportedLayerError(f"{path}: {type(module).__name__} has no {name!r}")
        return child

    @staticmethod
    def _affine(path: str, bn: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        try:
            return _batchnorm_affine(bn)
        except UnsupportedLayerError as exc:
            raise UnsupportedLayerError(f"{path}: {exc}") from None

    # -- small helpers -----------------------------------------------------------------------

    def const(self, values: np.ndarray | Sequence[float] | Sequence[int], dtype: Any = np.float32
              ) -> Any:
        return self.ops.constant(np.asarray(values, dtype)).output(0)

    def rank(self, x: Any) -> int:
        return x.get_partial_shape().rank.get_length()

    def scale_shift(self, x: Any, scale: np.ndarray | None, shift: np.ndarray | None) -> Any:
        """x * scale_c + shift_c on axis 1 (either may be None)."""
        r = self.rank(x)
        if scale is not None:
            x = self.ops.multiply(x, self.const(_channels(scale, r))).output(0)
        if shift is not None:
            x = self.ops.add(x, self.const(_channels(shift, r))).output(0)
        return x

    # -- float layers ------------------------------------------------------------------------

    def normalize(self, path: str, module: nn.Module, x: Any) -> Any:
        x = self.ops.subtract(x, self.const(module.mean.numpy())).output(0)
        return self.ops.divide(x, self.const(module.std.numpy())).output(0)

    def batchnorm(self, path: str, module: nn.Module, x: Any) -> Any:
        return self.scale_shift(x, *self._affine(path, module))

    def hardtanh(self, path: str, module: nn.Module, x: Any) -> Any:
        return self.ops.clamp(x, float(module.min_val), float(module.max_val)).output(0)

    def prelu(self, path: str, module: nn.Module, x: Any) -> Any:
        slope = module.weight.detach().numpy()
        return self.ops.prelu(x, self.const(slope if slope.size == 1
                                            else _channels(slope, self.rank(x)))).output(0)

    def rprelu(self, path: str, module: nn.Module, x: Any) -> Any:
        x = self.scale_shift(x, None, -module.gamma.detach().double().numpy())
        x = self.prelu(path, module.prelu, x)
        return self.scale_shift(x, None, module.zeta.detach().numpy())

    def maxpool(self, path: str, module: nn.Module, x: Any) -> Any:
        if module.return_indices:
            raise UnsupportedLayerError(f"{path}: MaxPool2d with return_indices is not supported")
        stride = module.stride if module.stride is not None else module.kernel_size
        padding = pair(module.padding)
        return self.ops.max_pool(x, pair(stride), pair(module.dilation), padding, padding,
                                 pair(module.kernel_size),
                                 "ceil_torch" if module.ceil_mode else "floor").output(0)

    def avgpool(self, path: str, module: nn.Module, x: Any) -> Any:
        if module.divisor_override is not None:
            raise UnsupportedLayerError(f"{path}: AvgPool2d with divisor_override is not "
                                        "supported")
        stride = module.stride if module.stride is not None else module.kernel_size
        padding = pair(module.padding)
        return self.ops.avg_pool(x, pair(stride), padding, padding, pair(module.kernel_size),
                                 not module.count_include_pad,
                                 "ceil_torch" if module.ceil_mode else "floor").output(0)

    def adaptive_avgpool(self, path: str, module: nn.Module, x: Any) -> Any:
        size = module.output_size
        size = [size, size] if isinstance(size, int) or size is None else list(size)
        dims = x.get_partial_shape()
        size = [dims[2 + i].get_length() if s is None else int(s) for i, s in enumerate(size)]
        if size == [1, 1]:
            return self.ops.reduce_mean(x, self.const([2, 3], np.int64), True).output(0)
        return self.ops.adaptive_avg_pool(x, self.const(size, np.int64)).output(0)

    def flatten(self, path: str, module: nn.Module, x: Any) -> Any:
        dims = [d.get_length() for d in list(x.get_partial_shape())[1:]]
        rank = len(dims) + 1
        start, end = module.start_dim % rank, module.end_dim % rank
        if not 1 <= start <= end:
            raise UnsupportedLayerError(f"{path}: Flatten({module.start_dim}, {module.end_dim}) "
                                        "must keep the batch axis")
        target = [0, *dims[:start - 1], -1, *dims[end:]]  # 0: the batch, kept (special_zero)
        return self.ops.reshape(x, self.const(target, np.int64), True).output(0)

    def linear(self, path: str, module: nn.Module, x: Any) -> Any:
        y = self.ops.matmul(x, self.const(module.weight.detach().numpy()), False, True).output(0)
        return y if module.bias is None else self.ops.add(
            y, self.const(module.bias.detach().numpy().reshape(1, -1))).output(0)

    def conv(self, path: str, module: nn.Module, x: Any,
             bn: tuple[np.ndarray, np.ndarray] | None) -> Any:
        """Conv2d, with a following BatchNorm (alpha_c, beta_c) folded into weight and bias."""
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise UnsupportedLayerError(f"{path}: Conv2d with padding={module.padding!r}, "
                                        f"padding_mode={module.padding_mode!r} is not supported "
                                        "(int padding, zeros)")
        weight = module.weight.detach().double().numpy()
        bias = (module.bias.detach().double().numpy() if module.bias is not None
                else np.zeros(weight.shape[0]))
        if bn is not None:
            weight = weight * bn[0].reshape(-1, 1, 1, 1)
            bias = bias * bn[0] + bn[1]
        padding, stride, dilation = pair(module.padding), pair(module.stride), pair(
            module.dilation)
        if module.groups == 1:
            y = self.ops.convolution(x, self.const(weight), stride, padding, padding, dilation)
        else:
            g = module.groups
            grouped = weight.reshape(g, weight.shape[0] // g, *weight.shape[1:])
            y = self.ops.group_convolution(x, self.const(grouped), stride, padding, padding,
                                           dilation)
        return self.scale_shift(y.output(0), None,
                                bias if module.bias is not None or bn is not None else None)

    # -- binary layers -----------------------------------------------------------------------

    @staticmethod
    def switch(alpha: torch.Tensor | None) -> np.ndarray:
        """Where the sign switches to +1, per channel: alpha_c of an RSign, else 0."""
        return np.zeros((1, 1, 1, 1), np.float32) if alpha is None else _channels(alpha, 4)

    def binarize(self, x: Any, alpha: torch.Tensor | None) -> Any:
        """FakeQuantize(levels=2) in OpenVINO's binarization form (thresholds, 0/1 out), which
        its CPU plugin packs into u1 bits: 1 (+1) where x >= alpha_c, the threshold being the
        largest float below the switch (x <= threshold gives 0)."""
        below = self.const(np.nextafter(self.switch(alpha), np.float32(-np.inf)))
        return self.ops.fake_quantize(x, below, below, self.const(np.zeros((1, 1, 1, 1))),
                                      self.const(np.ones((1, 1, 1, 1))), 2).output(0)

    def signed_conv(self, x: Any, alpha: torch.Tensor | None, signs: np.ndarray,
                    stride: list[int], padding: list[int], pad_value: float) -> Any:
        """The same dots as a float Convolution of the +-1 signs with +-1 weights (sums of
        small integers: exact in fp32), padded with `pad_value`. The signs come from a compare
        and select, not a FakeQuantize, which OpenVINO would turn back into a binary conv."""
        x = self.ops.select(self.ops.greater_equal(x, self.const(self.switch(alpha))),
                            self.const(1.0), self.const(-1.0)).output(0)
        if pad_value != 0.0 and any(padding):
            pads = [0, 0, *padding]
            x = self.ops.pad(x, self.const(pads, np.int64), self.const(pads, np.int64),
                             "constant", self.const(pad_value)).output(0)
            padding = [0, 0]
        return self.ops.convolution(x, self.const(np.where(signs, 1.0, -1.0)), stride,
                                    padding, padding, [1, 1]).output(0)

    def binary_conv(self, path: str, module: nn.Module, x: Any,
                    bn: tuple[np.ndarray, np.ndarray] | None) -> Any:
        """FakeQuantize -> BinaryConvolution -> dot * scale_c + bias_c, with a following
        BatchNorm (alpha_c, beta_c) folded into that one affine."""
        _binary_conv(path, module)
        return self._binary(path, module, x, pair(module.stride), pair(module.padding),
                            float(module.pad_value), bn)

    def binary_linear(self, path: str, module: nn.Module, x: Any) -> Any:
        """BinaryLinear as a 1x1 BinaryConvolution on (N, F, 1, 1) rows."""
        rows = self.ops.reshape(x, self.const([0, -1, 1, 1], np.int64), True).output(0)
        y = self._binary(path, module, rows, [1, 1], [0, 0], 1.0, None)
        return self.ops.reshape(y, self.const([0, -1], np.int64), True).output(0)

    def _binary(self, path: str, module: nn.Module, x: Any, stride: list[int],
                padding: list[int], pad_value: float,
                bn: tuple[np.ndarray, np.ndarray] | None) -> Any:
        alpha = rsign_alpha(module.input_quantizer)
        channels = module.weight.shape[1]
        if alpha is None:
            check_sign_quantizer(path, module, channels)
        wq, scale = binary_weight(path, module)
        if wq.dim() == 2:  # a BinaryLinear's (out, in): a 1x1 conv's weight
            wq = wq.reshape(*wq.shape, 1, 1)
        signs = (wq > 0).numpy()
        if channels % BYTE_CHANNELS:
            dots = self.signed_conv(x, alpha, signs, stride, padding, pad_value)
        else:
            weight = self.ov.Tensor(self.ov.Type.u1, self.ov.Shape(list(signs.shape)))
            weight.data[:] = np.packbits(signs.ravel(), bitorder="little")
            dots = self.ops.binary_convolution(self.binarize(x, alpha),
                                               self.ops.constant(weight), stride, padding,
                                               padding, [1, 1], "xnor-popcount",
                                               pad_value).output(0)
        # torch: (dot * weight_scale + bias) * learned_scale; binary_weight's scale has both.
        learned = getattr(module, "output_scale", None)
        scale, shift = scale.double().numpy(), None
        if module.bias is not None:
            shift = module.bias.detach().double().numpy()
            if learned is not None:
                shift = shift * learned.detach().double().numpy().ravel()
        if bn is not None:
            scale, shift = scale * bn[0], (0.0 if shift is None else shift) * bn[0] + bn[1]
        return self.scale_shift(dots, scale, shift)

    # -- blocks (spaces/blocks.py: the same wiring as each forward) ---------------------------

    def plain_block(self, path: str, module: nn.Module, x: Any) -> Any:
        return self.parts(path, module, ("conv", "bn", "pool"), x)

    def pool_first_block(self, path: str, module: nn.Module, x: Any) -> Any:
        return self.parts(path, module, ("conv", "pool", "bn"), x)

    def residual(self, path: str, module: nn.Module, main: Any, shortcut: Any,
                 act: str) -> Any:
        return self.part(path, module, act, self.ops.add(main, shortcut).output(0))

    def resnet_block(self, path: str, module: nn.Module, x: Any) -> Any:
        y = self.parts(path, module, ("conv1", "bn1", "act1"), x)
        y = self.parts(path, module, ("conv2", "bn2"), y)
        return self.residual(path, module, y, self.part(path, module, "shortcut", x), "act2")

    def bireal_block(self, path: str, module: nn.Module, x: Any) -> Any:
        y = self.parts(path, module, ("conv", "bn"), x)
        return self.residual(path, module, y, self.part(path, module, "shortcut", x), "act")

    def reactnet_block(self, path: str, module: nn.Module, x: Any) -> Any:
        y = self.parts(path, module, ("conv1", "bn1"), x)
        y = self.residual(path, module, y, self.part(path, module, "shortcut", x), "act1")
        z = self.parts(path, module, ("conv2", "bn2"), y)
        widths = (z.get_partial_shape()[1].get_length(), y.get_partial_shape()[1].get_length())
        shortcut = y if widths[0] == widths[1] else self.ops.concat([y, y], 1).output(0)
        return self.residual(path, module, z, shortcut, "act2")
