"""Quantizers: sign functions that own their straight-through gradient.

Each quantizer is a tiny `nn.Module` with a registry name, a `kind` ("activation" or "weight"),
a `precision` (bits) that summaries and the packed-bit compiler read, and `config()` so a layer
can be saved and rebuilt. Forward maps 0 to +1 everywhere, so torch and the packed kernels
(bit = x < 0) agree on every value. Backward multiplies the incoming gradient by the quantizer's
`derivative(x)`: the derivative of the smooth function its paper uses in place of sign.

The name "none" (FULL_PRECISION) stands for no quantizer at all: `get_quantizer("none")` is None.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

FULL_PRECISION = "none"
EDE_T_MIN, EDE_T_MAX = 0.1, 10.0  # IR-Net's range for EDE's t


def _sign(x: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1 (torch.sign maps 0 to 0, which is not a binary value)."""
    # In place on the fresh 0/1 tensor: half the time of `* 2 - 1` (two more full tensors), and
    # ~10x faster than torch.where with two full tensors.
    return (x >= 0).to(x.dtype).mul_(2).sub_(1)


class _Sign(torch.autograd.Function):
    """sign(x) forward; backward multiplies the incoming gradient by `quantizer.derivative(x)`."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, quantizer: Quantizer) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.quantizer = quantizer
        return _sign(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad * ctx.quantizer.derivative(x).to(grad.dtype), None


def _clipped(x: torch.Tensor, clip: float) -> torch.Tensor:
    return (x.abs() <= clip).to(x.dtype)


def _approx_sign(x: torch.Tensor) -> torch.Tensor:
    """Bi-Real ApproxSign derivative: 2 - 2|x| on |x| <= 1, else 0."""
    return torch.clamp(2.0 - 2.0 * x.abs(), min=0.0)


class Quantizer(nn.Module):
    """Base: a registry name, a kind, a bit width and the parameters needed to rebuild it."""

    name: str = ""
    precision: int = 1
    kind: str = "activation"
    per_channel: bool = False  # the constructor takes `channels` (the layer supplies it)

    def config(self) -> dict[str, Any]:
        return {}

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """d(surrogate)/dx at x, the factor backward applies to the incoming gradient."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Sign.apply(x, self)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items())


class _Progressive:
    """Mixin for quantizers whose gradient anneals with training progress p in [0, 1]."""

    progress: float = 0.0

    def set_progress(self, progress: float) -> None:
        if not 0.0 <= float(progress) <= 1.0:
            raise ValueError(f"{self.name}: progress must be in [0, 1], got {progress!r}")
        self.progress = float(progress)


def _ede(x: torch.Tensor, progress: float, t_min: float, t_max: float) -> torch.Tensor:
    """IR-Net EDE derivative k t (1 - tanh^2(t x)), t = T_min 10^(p log10(T_max / T_min)),
    k = max(1 / t, 1)."""
    t = t_min * 10 ** (progress * math.log10(t_max / t_min))
    k = max(1.0 / t, 1.0)
    return k * t * (1.0 - torch.tanh(t * x) ** 2)


# -- activations -------------------------------------------------------------------------------


class SteSign(Quantizer):
    """Identity straight-through estimator (BinaryConnect, Courbariaux et al. 2015).

    forward sign(x); backward dL/dx = dL/dy everywhere.
    """

    name = "ste"

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x)


class ClippedSteSign(Quantizer):
    """Clipped STE (BNN, Hubara et al. 2016): dL/dx = dL/dy * 1{|x| <= clip}.

    Larq Zoo uses clip 1.25 (Bi-Real) and 1.3 (QuickNet); the BNN paper uses 1.
    """

    name = "clipped_ste"

    def __init__(self, clip: float = 1.0) -> None:
        super().__init__()
        if not clip > 0:
            raise ValueError(f"clipped_ste: clip must be > 0, got {clip!r}")
        self.clip = float(clip)

    def config(self) -> dict[str, Any]:
        return {"clip": self.clip}

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return _clipped(x, self.clip)


class ApproxSign(Quantizer):
    """Bi-Real ApproxSign (Liu et al. 2018): the derivative of the piecewise quadratic
    2x + x|x| (|x| <= 1), i.e. dL/dx = dL/dy * (2 - 2|x|) on |x| <= 1, else 0."""

    name = "approx_sign"

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return _approx_sign(x)


class SwishSign(Quantizer):
    """BNN+ SignSwish (Darabi et al. 2018): the surrogate SS_b(x) = 2 s(bx)[1 + bx(1 - s(bx))] - 1
    with s the logistic sigmoid; its derivative, used backward, is
    b (2 - bx tanh(bx / 2)) (1 - tanh^2(bx / 2)) / 2 (= b at 0, negative past |x| ~ 2.4 / b)."""

    name = "swish_sign"

    def __init__(self, beta: float = 5.0) -> None:
        super().__init__()
        if not beta > 0:
            raise ValueError(f"swish_sign: beta must be > 0, got {beta!r}")
        self.beta = float(beta)

    def config(self) -> dict[str, Any]:
        return {"beta": self.beta}

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        bx = self.beta * x
        th = torch.tanh(bx / 2)
        return self.beta * (2 - bx * th) * (1 - th**2) / 2


class EdeSign(_Progressive, Quantizer):
    """IR-Net error decay estimator (Qin et al. 2020): backward through k tanh(t x), with t
    growing from T_min to T_max over training (`set_progress(p)`), so early steps update every
    weight (k = 1/t keeps the slope 1) and late steps approach the true sign."""

    name = "ede"

    def __init__(self, t_min: float = EDE_T_MIN, t_max: float = EDE_T_MAX) -> None:
        super().__init__()
        if not 0 < t_min <= t_max:
            raise ValueError(f"ede: need 0 < t_min <= t_max, got {t_min!r}, {t_max!r}")
        self.t_min, self.t_max = float(t_min), float(t_max)

    def config(self) -> dict[str, Any]:
        return {"t_min": self.t_min, "t_max": self.t_max}

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return _ede(x, self.progress, self.t_min, self.t_max)


class RSign(Quantizer):
    """ReActNet RSign (Liu et al. 2020): sign(x - alpha_c) with a learnable threshold per
    channel (channels on dim 1). Backward is ApproxSign of x - alpha_c for x, and its negative,
    summed over the channel, for alpha_c (autograd through the subtraction)."""

    name = "rsign"
    per_channel = True

    def __init__(self, channels: int) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"rsign: channels must be a positive int, got {channels!r}")
        self.alpha = nn.Parameter(torch.zeros(channels))

    def config(self) -> dict[str, Any]:
        return {"channels": self.alpha.numel()}

    def shifted(self, x: torch.Tensor) -> torch.Tensor:
        """x - alpha_c, the value whose sign is taken (the packed engine packs this tensor)."""
        return x - self.alpha.view(1, -1, *([1] * (x.dim() - 2)))

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return _approx_sign(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Sign.apply(self.shifted(x), self)


# -- weights -----------------------------------------------------------------------------------


def _channel_dims(w: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(1, w.dim()))


class SignWeight(Quantizer):
    """Binary weights sign(W) (BinaryConnect), clipped STE at 1 so latent weights stay useful."""

    name = "sign"
    kind = "weight"

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return _clipped(x, 1.0)


class XnorWeight(SignWeight):
    """XNOR-Net weights (Rastegari et al. 2016): sign(W_c) * mean|W_c| per output channel.

    The scale is detached (as in Larq's and IR-Net's implementations): the gradient flows through
    the clipped-STE sign only, times the constant scale.
    """

    name = "xnor"

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale = w.detach().abs().mean(dim=_channel_dims(w), keepdim=True)  # (C_out, 1...)
        return _Sign.apply(w, self) * scale


class _Scaled(torch.autograd.Function):
    """sign(w) * scale forward, identity backward (DoReFa's straight-through for weights)."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return _sign(w) * scale

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class DorefaWeight(Quantizer):
    """DoReFa-Net 1-bit weights (Zhou et al. 2016): sign(W) * E(|W|), one mean over the whole
    layer, detached; backward is their plain straight-through estimator dL/dW = dL/dW_b."""

    name = "dorefa"
    kind = "weight"

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return _Scaled.apply(w, w.detach().abs().mean())


LIBRA_EPS = 1e-12  # below any real weight spread; only guards 0/0


class LibraPbWeight(_Progressive, Quantizer):
    """IR-Net Libra-PB weights (Qin et al. 2020): per output channel, balance and standardise
    W_std = (W - mean(W)) / std(W) (maximising the binary weights' entropy), then
    Q(W) = sign(W_std) * 2^s with s = round(log2(||W_std||_1 / n)), a bit-shift scale, detached.
    As in IR-Net, the gradient flows through the standardisation and EDE for the sign.
    Degenerate channels (one weight, or all equal) standardise to 0 instead of 0/0 = NaN and get
    the smallest normal scale, so they stay finite and compilable (the paper leaves them open)."""

    name = "libra_pb"
    kind = "weight"

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return _ede(x, self.progress, EDE_T_MIN, EDE_T_MAX)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        dims = _channel_dims(w)
        n = w[0].numel()
        std = w.std(dim=dims, keepdim=True, correction=1 if n > 1 else 0)
        standard = (w - w.mean(dim=dims, keepdim=True)) / std.clamp_min(LIBRA_EPS)
        spread = standard.detach().abs().mean(dim=dims, keepdim=True)
        scale = torch.exp2(torch.round(torch.log2(spread.clamp_min(torch.finfo(w.dtype).tiny))))
        return _Sign.apply(standard, self) * scale


ACTIVATION_QUANTIZERS: dict[str, type[Quantizer]] = {
    q.name: q for q in (SteSign, ClippedSteSign, ApproxSign, SwishSign, EdeSign, RSign)
}
WEIGHT_QUANTIZERS: dict[str, type[Quantizer]] = {
    q.name: q for q in (SignWeight, XnorWeight, DorefaWeight, LibraPbWeight)
}
QUANTIZERS: dict[str, type[Quantizer]] = {**ACTIVATION_QUANTIZERS, **WEIGHT_QUANTIZERS}


def get_quantizer(name: str | Quantizer | None, **params: Any) -> Quantizer | None:
    """Resolve a registry name (or pass through a Quantizer; None or "none" = full precision)."""
    if name == FULL_PRECISION:
        return None
    if name is None or isinstance(name, Quantizer):
        return name
    if name not in QUANTIZERS:
        allowed = ", ".join(sorted(QUANTIZERS))
        raise ValueError(f"unknown quantizer {name!r}; allowed: {allowed} (or {FULL_PRECISION!r})")
    try:
        return QUANTIZERS[name](**params)
    except TypeError as exc:
        raise ValueError(f"quantizer {name!r}: bad parameters {params}: {exc}") from None


def set_training_progress(model: nn.Module, progress: float) -> None:
    """Tell every progress-dependent quantizer (EDE, Libra-PB) how far training is, p in [0, 1];
    call it once per step or epoch from the training loop."""
    for module in model.modules():
        if isinstance(module, _Progressive):
            module.set_progress(progress)
