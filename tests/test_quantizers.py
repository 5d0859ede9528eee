"""Every registered quantizer: forward values (0 -> +1), gradient formula incl. the edge points
0 and +-1, config round trip, precision/kind, registry errors and the learned layer scale."""

import pytest
import torch
import torch.nn.functional as F

from spaces import QUANTIZERS, BinaryConv2d, get_quantizer, set_training_progress
from spaces.quantizers import ACTIVATION_QUANTIZERS, WEIGHT_QUANTIZERS

POINTS = torch.tensor([-2.0, -1.25, -1.0, -0.5, -1e-7, 0.0, 1e-7, 0.5, 1.0, 1.25, 2.0])
X = POINTS.view(1, -1)  # one sample, a channel per point (per-channel quantizers broadcast)
DEFAULTS = {"rsign": {"channels": X.shape[1]}}


def make(name, **params):
    return get_quantizer(name, **{**DEFAULTS.get(name, {}), **params})


def grad_of(q, x):
    x = x.clone().requires_grad_(True)
    q(x).sum().backward()
    return x.grad


def surrogate_grad(fn, x):
    """d fn / dx by autograd: the reference each closed-form derivative must equal."""
    x = x.clone().requires_grad_(True)
    fn(x).sum().backward()
    return x.grad


def sign(x):
    return torch.where(x >= 0, 1.0, -1.0)


@pytest.mark.parametrize("name", sorted(ACTIVATION_QUANTIZERS))
def test_activation_forward_is_sign_with_zero_positive(name):
    q = make(name)
    assert torch.equal(q(X), sign(X))
    assert q.precision == 1 and q.kind == "activation"


@pytest.mark.parametrize("name", sorted(WEIGHT_QUANTIZERS))
def test_weight_forward_is_plus_minus_scale_per_channel(name):
    w = torch.randn(6, 3, 3, 3)
    w[0, 0, 0, 0] = 0.0
    q = make(name)
    out = q(w)
    scale = out.abs().amax(dim=(1, 2, 3), keepdim=True)
    assert torch.equal(out.abs(), scale.expand_as(out)) and bool((scale > 0).all())
    assert q.precision == 1 and q.kind == "weight"


def _ede_t(progress):
    return 0.1 * (10.0 / 0.1) ** progress


@pytest.mark.parametrize(
    "name, params, expected",
    [
        ("ste", {}, lambda x: torch.ones_like(x)),
        ("clipped_ste", {}, lambda x: (x.abs() <= 1.0).float()),
        ("clipped_ste", {"clip": 1.25}, lambda x: (x.abs() <= 1.25).float()),
        ("approx_sign", {}, lambda x: torch.clamp(2 - 2 * x.abs(), min=0.0)),
        ("rsign", {}, lambda x: torch.clamp(2 - 2 * x.abs(), min=0.0)),
    ],
)
def test_activation_gradient_matches_formula(name, params, expected):
    assert torch.allclose(grad_of(make(name, **params), X), expected(X))


@pytest.mark.parametrize("beta", [5.0, 2.0])
def test_swish_sign_gradient_is_the_derivative_of_signswish(beta):
    def signswish(x):
        s = torch.sigmoid(beta * x)
        return 2 * s * (1 + beta * x * (1 - s)) - 1

    q = make("swish_sign", beta=beta)
    assert torch.allclose(grad_of(q, X), surrogate_grad(signswish, X), atol=1e-5)
    at = grad_of(q, torch.tensor([[0.0, 1.0, -1.0]]))
    assert at[0, 0] == pytest.approx(beta)  # b at 0; symmetric at +-1
    assert at[0, 1] == pytest.approx(float(at[0, 2]))


@pytest.mark.parametrize("progress", [0.0, 0.3, 1.0])
def test_ede_gradient_is_k_t_dtanh_with_annealed_t(progress):
    t = _ede_t(progress)
    k = max(1 / t, 1.0)
    q = make("ede")
    q.set_progress(progress)
    assert torch.allclose(grad_of(q, X), surrogate_grad(lambda x: k * torch.tanh(t * x), X),
                          atol=1e-5)
    assert grad_of(q, torch.tensor([[0.0]])).item() == pytest.approx(k * t)


def test_progress_reaches_every_annealed_quantizer_and_is_checked():
    conv = BinaryConv2d(2, 3, 3, input_quantizer="ede", weight_quantizer="libra_pb")
    set_training_progress(torch.nn.Sequential(conv), 0.75)
    assert conv.input_quantizer.progress == conv.weight_quantizer.progress == 0.75
    with pytest.raises(ValueError, match=r"progress must be in \[0, 1\]"):
        conv.input_quantizer.set_progress(1.5)


def test_rsign_is_a_per_channel_shifted_sign_with_alpha_gradient():
    q = make("rsign", channels=3)
    with torch.no_grad():
        q.alpha.copy_(torch.tensor([0.5, -1.0, 0.0]))
    x = torch.tensor([[[0.5, 0.4]], [[-1.0, -1.1]], [[0.0, -0.1]]]).view(1, 3, 1, 2)
    x.requires_grad_(True)
    out = q(x)
    assert out.view(3, 2).tolist() == [[1, -1], [1, -1], [1, -1]]  # x == alpha gives +1
    out.sum().backward()
    expected = torch.clamp(2 - 2 * (x.detach() - q.alpha.detach().view(1, 3, 1, 1)).abs(), min=0)
    assert torch.allclose(x.grad, expected)
    assert torch.allclose(q.alpha.grad, -expected.sum(dim=(0, 2, 3)))


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
    assert torch.allclose(out, sign(w) * scale)
    # the gradient flows through the sign only, scaled by the (constant) channel scale
    assert torch.allclose(grad_of(q, w), (w.abs() <= 1).float() * scale.expand_as(w))


def test_dorefa_weight_is_layer_mean_scale_with_identity_gradient():
    w = torch.randn(5, 3, 3, 3) * 2
    q = get_quantizer("dorefa")
    assert torch.allclose(q(w), sign(w) * w.abs().mean())
    assert torch.equal(grad_of(q, w), torch.ones_like(w))


@pytest.mark.parametrize("progress", [0.0, 1.0])
def test_libra_pb_standardises_per_channel_with_power_of_two_scale(progress):
    w = torch.randn(4, 3, 3, 3) * 0.3 + torch.arange(4.0).view(4, 1, 1, 1)
    q = get_quantizer("libra_pb")
    q.set_progress(progress)
    standard = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / w.std(dim=(1, 2, 3), keepdim=True)
    s = torch.round(torch.log2(standard.abs().mean(dim=(1, 2, 3), keepdim=True)))
    out = q(w)
    assert torch.equal(out, sign(standard) * 2**s)
    log2 = torch.log2(out.abs())
    assert torch.equal(log2, log2.round())  # a bit shift, never an arbitrary float
    t = _ede_t(progress)
    k = max(1 / t, 1.0)

    def reference(v):  # IR-Net: EDE through sign, autograd through the standardisation
        std = (v - v.mean(dim=(1, 2, 3), keepdim=True)) / v.std(dim=(1, 2, 3), keepdim=True)
        return k * torch.tanh(t * std) * 2**s

    assert torch.allclose(grad_of(q, w), surrogate_grad(reference, w), atol=1e-5)


@pytest.mark.parametrize("w", [torch.ones(3, 2, 3, 3), torch.randn(4, 1, 1, 1)],
                         ids=["zero-spread channels", "one weight per channel"])
def test_libra_pb_degenerate_channels_stay_finite(w):
    q = get_quantizer("libra_pb")
    out = q(w.requires_grad_())
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(w.grad).all()
    assert (out.abs() > 0).all()  # a tiny positive scale: no zero/NaN reaches the kernels
    conv = BinaryConv2d(w.shape[1], w.shape[0], w.shape[2], input_quantizer="ste",
                        weight_quantizer="libra_pb").eval()
    with torch.no_grad():
        conv.weight.copy_(w)
    assert torch.isfinite(conv(torch.randn(2, w.shape[1], 5, 5))).all()


def test_learned_scale_multiplies_the_conv_output_per_channel():
    conv = BinaryConv2d(3, 4, 3, padding=1, learned_scale=True)
    with torch.no_grad():
        conv.output_scale.copy_(torch.tensor([0.5, -2.0, 1.0, 3.0]).view(4, 1, 1))
    x = torch.randn(2, 3, 5, 5)
    plain = F.conv2d(F.pad(sign(x), (1, 1, 1, 1)), sign(conv.weight))
    assert torch.allclose(conv(x), plain * conv.output_scale)
    conv(x).sum().backward()
    assert conv.output_scale.grad.shape == (4, 1, 1)


def test_none_is_full_precision_for_both_quantizers():
    assert get_quantizer("none") is None
    conv = BinaryConv2d(3, 4, 3, padding=1, input_quantizer="none", weight_quantizer="none")
    x = torch.randn(2, 3, 5, 5)
    assert conv.precision == 32
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight, padding=1))


def test_registry_covers_both_kinds_and_round_trips():
    assert set(QUANTIZERS) == set(ACTIVATION_QUANTIZERS) | set(WEIGHT_QUANTIZERS)
    for name, cls in QUANTIZERS.items():
        q = make(name)
        rebuilt = get_quantizer(name, **q.config())
        assert type(rebuilt) is cls and rebuilt.config() == q.config()


def test_unknown_quantizer_names_the_allowed_values():
    with pytest.raises(ValueError, match="unknown quantizer 'nope'.*allowed: approx_sign"):
        get_quantizer("nope")
    with pytest.raises(ValueError, match="bad parameters"):
        get_quantizer("ste", clip=2.0)
    with pytest.raises(ValueError, match="clip must be > 0"):
        get_quantizer("clipped_ste", clip=0)
    with pytest.raises(ValueError, match="bad parameters"):
        get_quantizer("rsign")
    with pytest.raises(ValueError, match="beta must be > 0"):
        get_quantizer("swish_sign", beta=0)
