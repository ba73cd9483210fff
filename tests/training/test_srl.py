"""The stochastic residual layer: noise variance, quantization, ablation, gradients."""

from __future__ import annotations

import pytest
import torch

from training.activations import ActivationKind
from training.models import ResidualMLP
from training.srl import SRLConfig, SRLMode, StochasticResidualLayer, bind_generator


def _layer(config, seed=0):
    layer = StochasticResidualLayer(5, config=config, generator=torch.Generator().manual_seed(seed)).double()
    return layer


def test_srl_noise_has_variance_beta_abs_wh():
    beta = 0.3
    layer = _layer(SRLConfig(beta=beta, bits=None))
    layer.train()
    h = torch.rand(1, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).expand(40000, 5)
    wh = h[:1] @ layer.linear.weight.T
    eps = layer.preactivation(h) - (wh + layer.linear.bias)
    torch.testing.assert_close(eps.mean(0), torch.zeros(5, dtype=torch.float64), atol=0.02, rtol=0)
    torch.testing.assert_close(eps.var(0), (beta * wh.abs()).reshape(-1), rtol=0.05, atol=1e-6)


def test_srl_output_is_phi_of_quantized_preactivation_plus_identity():
    cfg = SRLConfig(beta=0.0, bits=3, preact_max=1.5)  # Q levels k * 0.5, k = -3..3
    layer = _layer(cfg)
    h = torch.rand(4, 5, dtype=torch.float64)
    z = h @ layer.linear.weight.T + layer.linear.bias
    zq = torch.clamp(torch.round(z / 0.5), -3, 3) * 0.5
    out, pre = layer.forward_trace(h)
    torch.testing.assert_close(pre, zq)
    torch.testing.assert_close(out, torch.sigmoid(zq) + h)


def test_vanilla_ablation_is_a_plain_residual_block():
    layer = _layer(SRLConfig(beta=5.0, bits=2, mode=SRLMode.VANILLA))
    layer.train()
    h = torch.rand(3, 5, dtype=torch.float64)
    expected = torch.sigmoid(h @ layer.linear.weight.T + layer.linear.bias) + h
    torch.testing.assert_close(layer(h), expected)
    torch.testing.assert_close(layer(h), layer(h))  # deterministic: no noise


@pytest.mark.parametrize("noise_in_eval", [False, True], ids=["clean-eval", "noisy-eval"])
def test_noise_in_eval_switch(noise_in_eval):
    layer = _layer(SRLConfig(beta=1.0, bits=None, noise_in_eval=noise_in_eval))
    layer.eval()
    h = torch.rand(3, 5, dtype=torch.float64)
    assert torch.equal(layer(h), layer(h)) is (not noise_in_eval)


def test_gradient_is_finite_where_wh_is_zero_and_reaches_w_through_the_noise():
    layer = _layer(SRLConfig(beta=0.5, bits=None))
    layer.train()
    h = torch.zeros(2, 5, dtype=torch.float64, requires_grad=True)
    layer(h).sum().backward()
    assert torch.isfinite(h.grad).all() and torch.isfinite(layer.linear.weight.grad).all()
    # With W h != 0 the noise amplitude sqrt(beta |W h|) depends on W: the gradient differs from beta = 0.
    x = torch.rand(2, 5, dtype=torch.float64)
    grads = []
    for beta in (0.0, 0.5):
        lay = _layer(SRLConfig(beta=beta, bits=None), seed=0)
        bind_generator(lay, torch.Generator().manual_seed(9))
        lay.train()
        lay(x).sum().backward()
        grads.append(lay.linear.weight.grad)
    assert not torch.allclose(grads[0], grads[1])


def test_residual_mlp_trace_and_generator_binding():
    model = ResidualMLP(in_features=6, width=4, n_blocks=2, n_classes=3,
                        srl=SRLConfig(beta=0.2), generator=torch.Generator().manual_seed(0))
    x = torch.rand(7, 6)
    model.train()
    bind_generator(model, torch.Generator().manual_seed(3))
    a = model(x)
    bind_generator(model, torch.Generator().manual_seed(3))
    b = model(x)
    assert torch.equal(a, b)
    trace = model.trace(x)
    assert trace.logits.shape == (7, 3) and len(trace.noisy_preactivations) == 2
    assert model.downstream_layers() == [model.blocks[0].linear, model.blocks[1].linear, model.output]


@pytest.mark.parametrize(
    "kwargs, field",
    [({"beta": -1.0}, "beta"), ({"bits": 1}, "bits"), ({"preact_max": 0.0}, "preact_max"), ({"mode": "x"}, "mode")],
    ids=["beta", "bits", "preact_max", "mode"],
)
def test_srl_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=rf"SRLConfig\.{field} = "):
        SRLConfig(**kwargs)


def test_activation_kind_is_used():
    layer = StochasticResidualLayer(3, config=SRLConfig(beta=0.0, bits=None), activation=ActivationKind.TANH)
    h = torch.rand(2, 3)
    torch.testing.assert_close(layer(h), torch.tanh(layer.linear(h)) + h)
