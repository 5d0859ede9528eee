"""Quantizers: sign functions that own their straight-through gradient.

Each quantizer is a tiny `nn.Module` with a registry name, a `precision` (bits) that summaries
and the packed-bit compiler read, and `config()` so a layer can be saved and rebuilt. Forward
maps 0 to +1 everywhere, so torch and the packed kernels (bit = x < 0) agree on every value.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _sign(x: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1 (torch.sign maps 0 to 0, which is not a binary value)."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class _SignWithGrad(torch.autograd.Function):
    """sign(x) forward; backward multiplies the incoming gradient by a quantizer-given mask."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kind: str, clip: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.kind, ctx.clip = kind, clip
        return _sign(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        if ctx.kind == "ste":
            return grad, None, None
        if ctx.kind == "clipped":
            return grad * (x.abs() <= ctx.clip).to(grad.dtype), None, None
        # approx_sign: d/dx of the piecewise quadratic 2x + x|x| ... = 2 - 2|x| on |x| <= 1.
        return grad * torch.clamp(2.0 - 2.0 * x.abs(), min=0.0), None, None


class Quantizer(nn.Module):
    """Base: a registry name, a bit width and the parameters needed to rebuild it."""

    name: str = ""
    precision: int = 1
    kind: str = "activation"

    def config(self) -> dict[str, Any]:
        return {}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items())


class SteSign(Quantizer):
    """Identity straight-through estimator (BinaryConnect, Courbariaux et al. 2015).

    forward sign(x); backward dL/dx = dL/dy everywhere.
    """

    name = "ste"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SignWithGrad.apply(x, "ste", 0.0)


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SignWithGrad.apply(x, "clipped", self.clip)


class ApproxSign(Quantizer):
    """Bi-Real ApproxSign (Liu et al. 2018): dL/dx = dL/dy * (2 - 2|x|) on |x| <= 1, else 0"""

    name = "approx_sign"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SignWithGrad.apply(x, "approx", 1.0)


class SignWeight(Quantizer):
    """Binary weights sign(W) (BinaryConnect), clipped STE at 1 so latent weights stay useful."""

    name = "sign"
    kind = "weight"

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return _SignWithGrad.apply(w, "clipped", 1.0)


class XnorWeight(Quantizer):
    """XNOR-Net weights (Rastegari et al. 2016): sign(W_c) * mean|W_c| per output channel.

    The scale is detached (as in Larq's and IR-Net's implementations): the gradient flows through
    the clipped-STE sign only.
    """

    name = "xnor"
    kind = "weight"

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale = w.detach().abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)  # (C_out, 1...)
        return _SignWithGrad.apply(w, "clipped", 1.0) * scale


ACTIVATION_QUANTIZERS: dict[str, type[Quantizer]] = {
    q.name: q for q in (SteSign, ClippedSteSign, ApproxSign)
}
WEIGHT_QUANTIZERS: dict[str, type[Quantizer]] = {q.name: q for q in (SignWeight, XnorWeight)}
QUANTIZERS: dict[str, type[Quantizer]] = {**ACTIVATION_QUANTIZERS, **WEIGHT_QUANTIZERS}


def get_quantizer(name: str | Quantizer | None, **params: Any) -> Quantizer | None:
    """Resolve a registry name (or pass through a Quantizer / None = full precision)."""
    if name is None or isinstance(name, Quantizer):
        return name
    if name not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {name!r}; allowed: {', '.join(sorted(QUANTIZERS))}")
    try:
        return QUANTIZERS[name](**params)
    except TypeError as exc:
        raise ValueError(f"quantizer {name!r}: bad parameters {params}: {exc}") from None
