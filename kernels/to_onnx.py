"""torch BinaryNet -> ONNX: a float simulation any ONNX runtime runs.

The model's own forward is exported (torch.onnx, dynamo), from an inference twin whose
quantizers are replaced by what they compute at inference: an activation sign becomes
GreaterOrEqual + Where (bnnx's sign(0) = +1), a weight quantizer becomes its ±1 weights and the
scale it applies: a Mul on the conv output where the layer has no bias, else a product the
exporter folds into the weights (the binary head). Surrogate gradients, EDE progress and the
other training-only details vanish with the quantizers' backward.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn

from spaces.layers import BinaryConv2d
from spaces.quantizers import ACTIVATION_QUANTIZERS, WEIGHT_QUANTIZERS, Quantizer, RSign

from .errors import UnsupportedLayerError

if TYPE_CHECKING:
    import onnx

OPSET = 21  # onnxruntime >= 1.18 and OpenVINO's ONNX reader run it
INPUT_NAME, OUTPUT_NAME = "input", "logits"
DEPLOY_HINT = "the deploy extra: pip install -e '.[deploy]'"


class ExportSign(nn.Module):
    """sign(x) with sign(0) = +1 as GreaterOrEqual + Where; an RSign subtracts its alpha first."""

    def __init__(self, quantizer: Quantizer) -> None:
        super().__init__()
        self.shift = quantizer if isinstance(quantizer, RSign) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shift is not None:
            x = self.shift.shifted(x)
        return torch.where(x >= 0, 1.0, -1.0)


class WeightScale(nn.Module):
    """A weight quantizer's scale as a constant: forward(±1 weight) = the quantized weight."""

    def __init__(self, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.scale


def inference_twin(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode whose quantizers compute only their inference forward.

    Raises UnsupportedLayerError naming a quantizer that is not one of bnnx's (its inference
    function is unknown)."""
    twin = copy.deepcopy(model).eval()
    with torch.no_grad():
        for path, module in list(twin.named_modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, Quantizer):
                    _check_known(f"{path}.{name}" if path else name, child)
            act = getattr(module, "input_quantizer", None)
            if isinstance(act, Quantizer):
                module.input_quantizer = ExportSign(act)
            if isinstance(getattr(module, "weight_quantizer", None), Quantizer):
                _binarise_weight(module)
    return twin


def _check_known(path: str, quantizer: Quantizer) -> None:
    known = {**ACTIVATION_QUANTIZERS, **WEIGHT_QUANTIZERS}
    if known.get(quantizer.name) is not type(quantizer):
        raise UnsupportedLayerError(
            f"{path}: {type(quantizer).__name__} is not a bnnx quantizer, so its inference "
            f"function is unknown to the ONNX export (supported: {', '.join(sorted(known))})"
        )


def _binarise_weight(layer: nn.Module) -> None:
    """weight <- sign(Q(w)) (±1) and Q's scale |Q(w)| kept apart: on the output of a bias-free
    conv (Conv on ±1 weights, then Mul), else on the weight. Q(w) = ±scale, one per output
    channel (xnor, libra_pb) or per layer (dorefa) or 1 (sign)."""
    quantized = layer.weight_quantizer(layer.weight)
    signs = torch.where(quantized >= 0, 1.0, -1.0)
    dims = tuple(range(1, quantized.dim()))
    scale = quantized.abs().amax(dim=dims, keepdim=True)
    layer.weight = nn.Parameter(signs, requires_grad=False)
    layer.weight_quantizer = None
    if torch.all(scale == 1):
        return
    if isinstance(layer, BinaryConv2d) and layer.bias is None:
        output_scale = scale.view(-1, 1, 1)
        if layer.output_scale is not None:
            output_scale = output_scale * layer.output_scale
        layer.output_scale = nn.Parameter(output_scale, requires_grad=False)
    else:
        layer.weight_quantizer = WeightScale(scale)


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Without the exporter's notes (torchvision missing) and torch's own LeafSpec deprecation,
    which say nothing about the model."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*LeafSpec.*", FutureWarning)
            yield
    finally:
        log.setLevel(level)


def to_onnx(model: nn.Module, input_shape: tuple[int, int, int]) -> onnx.ModelProto:
    """The model as an ONNX graph (opset OPSET): input "input", raw images float32 (N, C, H, W)
    with a dynamic batch N, output "logits" (N, classes); the normalisation is inside.

    Raises ImportError naming the `deploy` extra when onnx or onnxscript is missing, and
    UnsupportedLayerError naming a layer it cannot represent."""
    try:
        import onnx  # noqa: F401 - the result's type; onnxscript is the exporter's
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"the ONNX export needs {exc.name}, {DEPLOY_HINT}") from None
    twin = inference_twin(model)
    example = torch.zeros(2, *input_shape)
    batch = torch.export.Dim("batch", min=1)
    with _quiet_exporter():
        try:
            program = torch.onnx.export(
                twin, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},), opset_version=OPSET, verbose=False,
            )
        except Exception as exc:  # the exporter's errors are many; each names the op it met
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UnsupportedLayerError(f"the ONNX exporter cannot represent this model: {first}") \
                from exc
    return program.model_proto
