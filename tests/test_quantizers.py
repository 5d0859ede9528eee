"""Every registered quantizer: forward values (0 -> +1), gradient formula, registry errors."""

import pytest
import torch

from spaces import QUANTIZERS, get_quantizer
from spaces.quantizers import ACTIVATION_QUANTIZERS, WEIGHT_QUANTIZERS

POINTS = torch.tensor([-2.0, -1.25, -1.0, -0.5, -1e-7, 0.0, 1e-7, 0.5, 1.0, 1.25, 2.0])


def grad_of(q, x):
    x = x.clone().requires_grad_(True)
    q(x).sum().backward()
    return x.grad


@pytest.mark.parametrize("name", sorted(ACTIVATION_QUANTIZERS))
def test_activation_forward_is_sign_with_zero_positive(name):
    out = get_quantizer(name)(POINTS)
    assert torch.equal(out, torch.where(POINTS >= 0, 1.0, -1.0))
    assert get_quantizer(name).precision == 1


@pytest.mark.parametrize(
    "name, params, expected",
    [
        ("ste", {}, lambda x: torch.ones_like(x)),
        ("clipped_ste", {}, lambda x: (x.abs() <= 1.0).float()),
        ("clipped_ste", {"clip": 1.25}, lambda x: (x.abs() <= 1.25).float()),
        ("approx_sign", {}, lambda x: torch.clamp(2 - 2 * x.abs(), min=0.0)),
    ],
)
def test_activation_gradient_matches_formula(name, params, expected):
    assert torch.allclose(grad_of(get_quantizer(name, **params), POINTS), expected(POINTS))


def test_approx_sign_gradient_edges():
    g = grad_of(get_quantizer("approx_sign"), torch.tensor([0.0, 1.0, -1.0, 0.5]))
    assert g.tolist() == [2.0, 0.0, 0.0, 1.0]


def test_sign_weight_forward_and_clipped_gradient():
    w = torch.randn(4, 3, 3, 3) * 2
    q = get_quantizer("sign")
    assert set(q(w).unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(grad_of(q, w), (w.abs() <= 1).float())


def test_xnor_weight_scale_is_per_output_channel_mean_abs_and_detached():
    w = torch.randn(5, 3, 3, 3)
    q = get_quantizer("xnor")
    out = q(w)
    scale = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(out, torch.where(w >= 0, 1.0, -1.0) * scale)
    # the gradient flows through the sign only, scaled by the (constant) channel scale
    assert torch.allclose(grad_of(q, w), (w.abs() <= 1).float() * scale.expand_as(w))


def test_registry_covers_both_kinds_and_round_trips():
    assert set(QUANTIZERS) == set(ACTIVATION_QUANTIZERS) | set(WEIGHT_QUANTIZERS)
    for name, cls in QUANTIZERS.items():
        q = get_quantizer(name)
        rebuilt = get_quantizer(name, **q.config())
        assert type(rebuilt) is cls and rebuilt.config() == q.config()


def test_unknown_quantizer_names_the_allowed_values():
    with pytest.raises(ValueError, match="unknown quantizer 'nope'.*allowed: approx_sign"):
        get_quantizer("nope")
    with pytest.raises(ValueError, match="bad parameters"):
        get_quantizer("ste", clip=2.0)
    with pytest.raises(ValueError, match="clip must be > 0"):
        get_quantizer("clipped_ste", clip=0)
